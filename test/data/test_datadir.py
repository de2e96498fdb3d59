"""Kaldi data directories: round trips, and every error naming its file and line."""
from pathlib import Path

import pytest
import torch

from audiossl.bin import validate_data_dir as validate_cli
from audiossl.data.datadir import (
    DataDir,
    DataDirError,
    Segment,
    labels_to_multi_hot,
    load_data_dir,
    read_kv,
    read_labels,
    validate_data_dir,
    write_data_dir,
    write_kv,
    write_labels,
)


def make_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


GOOD = {
    "wav.scp": "a1 /x/a1.wav\nb2 sox /x/b2.flac -t wav - |\n",
    "utt2label": "a1 dog\nb2 cat dog\n",
    "utt2dur": "a1 1.5\nb2 2.0\n",
    "labels.txt": "0 cat Domestic cat\n1 dog\n",
}


def test_write_kv_sorts_in_c_order_and_round_trips(tmp_path):
    data = {"b": "2", "B": "1", "_x": ["l1", "l2"], "a-b": 3.5, "a": "cmd with spaces |"}
    write_kv(tmp_path / "f", data)
    keys = [line.split()[0] for line in (tmp_path / "f").read_text().splitlines()]
    assert keys == ["B", "_x", "a", "a-b", "b"]  # byte order: upper case < '_' < lower case
    back = read_kv(tmp_path / "f")
    assert back == {"b": "2", "B": "1", "_x": "l1 l2", "a-b": "3.5", "a": "cmd with spaces |"}
    assert not list(tmp_path.glob(".*tmp")), "the temporary file of the atomic write was left behind"


def test_labels_round_trip(tmp_path):
    write_labels(tmp_path / "labels.txt", ["cat", "dog", "Speech"], ["Domestic cat", "dog", "Human speech"])
    assert (tmp_path / "labels.txt").read_text() == "0 cat Domestic cat\n1 dog\n2 Speech Human speech\n"
    labels, names = read_labels(tmp_path / "labels.txt")
    assert labels == ["cat", "dog", "Speech"]
    assert names == ["Domestic cat", "dog", "Human speech"]


def test_data_dir_round_trip_with_segments(tmp_path):
    data = DataDir(
        path=tmp_path / "src",
        wav_scp={"rec1": "/x/rec1.wav", "rec2": "cat /x/rec2.wav |"},
        segments={"rec1-0": Segment("rec1", 0.0, 1.25), "rec1-1": Segment("rec1", 1.25, 3.0),
                  "rec2-0": Segment("rec2", 3600.125, 3601.0)},
        utt2label={"rec1-0": ["cat"], "rec1-1": ["cat", "dog"], "rec2-0": ["dog"]},
        utt2dur={"rec1-0": 1.25, "rec1-1": 1.75, "rec2-0": 0.875},
        labels=["cat", "dog"],
        label_names=["Cat", "Dog"],
    )
    out = write_data_dir(data, tmp_path / "out")
    back = load_data_dir(out)
    assert back.wav_scp == data.wav_scp
    assert back.segments == data.segments
    assert back.utt2label == data.utt2label
    assert back.utt2dur == data.utt2dur
    assert (back.labels, back.label_names) == (data.labels, data.label_names)
    assert back.utt_ids == ["rec1-0", "rec1-1", "rec2-0"]
    assert back.audio_spec("rec2-0") == ("cat /x/rec2.wav |", 3600.125, 3601.0)
    assert (out / "segments").read_text().splitlines()[2] == "rec2-0 rec2 3600.125 3601"
    assert back.multi_hot("rec1-1").tolist() == [1.0, 1.0]


def test_load_good_dir_and_cli_ok(tmp_path, capsys):
    d = make_dir(tmp_path / "d", GOOD)
    data = load_data_dir(d)
    assert data.wav_scp["b2"] == "sox /x/b2.flac -t wav - |"
    assert data.utt2label == {"a1": ["dog"], "b2": ["cat", "dog"]}
    assert data.utt2dur == {"a1": 1.5, "b2": 2.0}
    assert data.label_names == ["Domestic cat", "dog"]
    assert validate_data_dir(d) == []
    assert validate_cli.main([str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"{d}: OK (2 utterances, 2 classes)"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a x\nb y\nb z\n", 3, "duplicate key 'b'"),
        ("a x\nc y\nb z\n", 3, "LC_ALL=C"),
        ("a x\nb\n", 2, "malformed line"),
        ("a x\n\nb y\n", 2, "empty line"),
    ],
    ids=["duplicate", "unsorted", "no-value", "empty-line"],
)
def test_read_kv_errors_name_file_and_line(tmp_path, text, line, words):
    (tmp_path / "wav.scp").write_text(text)
    with pytest.raises(DataDirError) as e:
        read_kv(tmp_path / "wav.scp")
    assert f"{tmp_path / 'wav.scp'}:{line}:" in str(e.value)
    assert words in str(e.value)


def test_unknown_label_names_file_and_line(tmp_path, capsys):
    d = make_dir(tmp_path / "d", {**GOOD, "utt2label": "a1 dog\nb2 cat bird\n"})
    problems = validate_data_dir(d, strict=False)
    assert problems == [f"{d / 'utt2label'}:2: label 'bird' of 'b2' is not in {d / 'labels.txt'}"]
    with pytest.raises(DataDirError, match="label 'bird'"):
        validate_data_dir(d)
    assert validate_cli.main([str(d)]) == 1
    assert f"{d / 'utt2label'}:2:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "segments, line, words",
    [
        ("s1 r1 0 1\ns2 r1 2.5 2.0\n", 2, "start < end"),
        ("s1 r1 0 1\ns2 r9 0 1\n", 2, "recording 'r9'"),
        ("s1 r1 0\n", 1, "malformed"),
        ("s1 r1 zero 1\n", 1, "not numbers"),
    ],
    ids=["end-before-start", "unknown-recording", "missing-field", "not-a-number"],
)
def test_bad_segments_name_file_and_line(tmp_path, segments, line, words):
    d = make_dir(tmp_path / "d", {"wav.scp": "r1 /x/r1.wav\n", "segments": segments})
    problems = validate_data_dir(d, labels=False, durations=False, strict=False)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{d / 'segments'}:{line}:")
    assert words in problems[0]


def test_labels_txt_index_errors(tmp_path):
    d = make_dir(tmp_path / "d", {**GOOD, "labels.txt": "0 cat\n2 dog\n"})
    with pytest.raises(DataDirError, match=r"labels\.txt:2: index '2' where 1 was expected"):
        read_labels(d / "labels.txt")
    problems = validate_data_dir(d, strict=False)
    assert len(problems) == 1 and f"{d / 'labels.txt'}:2:" in problems[0]


def test_key_mismatch_and_missing_files(tmp_path):
    d = make_dir(tmp_path / "d", {**GOOD, "utt2dur": "a1 1.5\nc3 2.0\n"})
    problems = validate_data_dir(d, strict=False)
    assert f"{d / 'utt2dur'}:2: utterance 'c3' is not in wav.scp" in problems
    assert any(p.startswith(f"{d / 'utt2dur'}: 1 utterances of wav.scp are missing: b2") for p in problems)

    bare = make_dir(tmp_path / "bare", {"wav.scp": GOOD["wav.scp"]})
    assert validate_data_dir(bare, labels=False, durations=False) == []
    problems = validate_data_dir(bare, strict=False)
    assert f"{bare / 'utt2label'}: no such file" in problems
    assert f"{bare / 'utt2dur'}: no such file" in problems


def test_bad_duration(tmp_path):
    d = make_dir(tmp_path / "d", {**GOOD, "utt2dur": "a1 1.5\nb2 -1\n"})
    assert validate_data_dir(d, strict=False) == [f"{d / 'utt2dur'}:2: duration '-1' of 'b2' is not a positive number"]


def test_labels_to_multi_hot():
    target = labels_to_multi_hot(["dog", "cat"], ["cat", "bird", "dog"])
    assert target.dtype == torch.float32
    assert target.tolist() == [1.0, 0.0, 1.0]
    assert labels_to_multi_hot([], {"a": 0, "b": 1}).tolist() == [0.0, 0.0]
    with pytest.raises(KeyError, match="'fish'"):
        labels_to_multi_hot(["fish"], ["cat"])


def test_non_utf8_file(tmp_path):
    (tmp_path / "wav.scp").write_bytes(b"a /x/\xff.wav\n")
    with pytest.raises(DataDirError, match=r"wav\.scp: not UTF-8 text"):
        read_kv(tmp_path / "wav.scp")
