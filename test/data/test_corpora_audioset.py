"""AudioSet data preparation on a tiny corpus in the official layout, written into tmp_path."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.bin import prepare_audioset as prepare_audioset_cli
from audiossl.data.corpora.audioset import clip_ytid, prepare_audioset, read_class_labels, read_segments
from audiossl.data.datadir import read_kv, read_labels, validate_data_dir

CLASSES_CSV = """index,mid,display_name
0,/m/09x0r,"Speech"
1,/m/05zppz,"Male speech, man speaking"
2,/m/0jbk,"Animal"
3,/t/dd00088,"Gush, splash, spurt"
"""
# YouTube ids are 11 characters; some start with "-" or "Y", as real ones do.
BAL = ["--PJHxphWEs", "-0SdAVK79lg", "Yxd8SC2-Ncw", "abcdefghij1"]  # abcdefghij1 has no audio
UNBAL = ["u0000000001", "u0000000002"]
EVAL = ["e0000000001"]
# (YTID, seconds of audio written); lengths differ so that utt2dur is checked, not assumed.
AUDIO = {"--PJHxphWEs": 1.0, "-0SdAVK79lg": 0.5, "Yxd8SC2-Ncw": 0.25, "u0000000001": 0.75,
         "u0000000002": 0.5, "e0000000001": 0.3}
SR = 16000


def write_segments(path: Path, rows: list[str]) -> None:
    header = [
        "# Segments csv created Sun Mar  5 10:54:31 2017",
        "# num_ytids=4, num_segs=4, num_unique_labels=4, num_positive_labels=6",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    path.write_text("\n".join(header + rows) + "\n")


def write_wav(path: Path, seconds: float, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    soundfile.write(path, 0.1 * rng.standard_normal(round(seconds * sr)), sr)


@pytest.fixture
def audioset_root(tmp_path: Path) -> Path:
    root = tmp_path / "audioset"
    root.mkdir()
    (root / "class_labels_indices.csv").write_text(CLASSES_CSV)
    write_segments(root / "balanced_train_segments.csv", [
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"',   # line 4: two labels
        '-0SdAVK79lg, 0.000, 10.000, "/m/05zppz"',              # line 5
        'Yxd8SC2-Ncw, 10.000, 20.000, "/m/0jbk,/m/09x0r,/m/05zppz"',  # line 6: three labels
        'abcdefghij1, 0.000, 10.000, "/m/0jbk"',                # line 7: no audio anywhere
        'badrow00001, 0.000, "/m/0jbk"',                        # line 8: a field short
        'badrow00002, ten, 20.000, "/m/0jbk"',                  # line 9: start not a number
    ])
    write_segments(root / "unbalanced_train_segments.csv", [
        'u0000000001, 5.000, 15.000, "/m/0jbk"',
        'u0000000002, 0.000, 10.000, "/t/dd00088,/m/09x0r"',
    ])
    write_segments(root / "eval_segments.csv", ['e0000000001, 0.000, 10.000, "/m/09x0r"'])
    audio = root / "audio"
    # Every naming the module docstring promises, spread over nested folders and formats.
    write_wav(audio / "a" / "Y--PJHxphWEs_30.000_40.000.wav", AUDIO["--PJHxphWEs"])
    write_wav(audio / "-0SdAVK79lg.wav", AUDIO["-0SdAVK79lg"])
    write_wav(audio / "b" / "c" / "YYxd8SC2-Ncw.flac", AUDIO["Yxd8SC2-Ncw"])
    write_wav(audio / "unbal" / "u0000000001_5_15.wav", AUDIO["u0000000001"])
    write_wav(audio / "unbal" / "Yu0000000002.wav", AUDIO["u0000000002"])
    write_wav(audio / "eval" / "Ye0000000001_0.000_10.000.wav", AUDIO["e0000000001"])
    (audio / "notes.txt").write_text("not audio")
    return root


def c_sorted(path: Path) -> bool:
    """Whether a file's lines are sorted as `LC_ALL=C sort -c` wants them (the tool itself decides)."""
    return subprocess.run(["sort", "-c", "-k1,1", str(path)], env={**os.environ, "LC_ALL": "C"}).returncode == 0


def test_class_labels_keep_quoted_names_with_commas(audioset_root: Path) -> None:
    classes = read_class_labels(audioset_root / "class_labels_indices.csv")
    assert [(c.index, c.mid) for c in classes] == [(0, "/m/09x0r"), (1, "/m/05zppz"), (2, "/m/0jbk"), (3, "/t/dd00088")]
    assert classes[1].display_name == "Male speech, man speaking"
    assert classes[3].display_name == "Gush, splash, spurt"


def test_class_labels_out_of_order_index_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "class_labels_indices.csv"
    path.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n2,/m/0jbk,"Animal"\n')
    with pytest.raises(ValueError, match=rf"{path}:3: index '2'"):
        read_class_labels(path)


@pytest.mark.parametrize(
    "name, ytid",
    [
        ("Y--PJHxphWEs_30.000_40.000.wav", "--PJHxphWEs"),
        ("--PJHxphWEs_30_40.flac", "--PJHxphWEs"),
        ("Y--PJHxphWEs.wav", "--PJHxphWEs"),
        ("--PJHxphWEs.wav", "--PJHxphWEs"),
        ("Yxd8SC2-Ncwa.wav", "xd8SC2-Ncwa"),  # 12 characters: "Y" + id
        ("Yxd8SC2-Ncw.wav", "Yxd8SC2-Ncw"),  # 11 characters: the id itself, "Y" included
        ("short.wav", None),
        ("--PJHxphWEs_30.000.wav", None),
    ],
)
def test_clip_names_map_to_youtube_ids(name: str, ytid: str | None) -> None:
    assert clip_ytid(Path("x") / name) == ytid


def test_prepare_writes_sorted_valid_sets_with_missing_and_bad_rows(audioset_root: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        report = prepare_audioset(audioset_root, out, sets=["balanced_train", "eval"], nj=2)
    bal = out / "balanced_train"
    csv = audioset_root / "balanced_train_segments.csv"

    # The two bad rows are skipped and reported with file:line, and counted.
    assert report.segments.num_bad_rows == 2
    assert report.segments.bad_rows[0].startswith(f"{csv}:8: ")
    assert report.segments.bad_rows[1].startswith(f"{csv}:9: ")
    assert f"{csv}:8" in caplog.text and f"{csv}:9" in caplog.text

    # The clip without audio is counted and listed (with its times), not fatal.
    assert report.sets["balanced_train"].num_missing == 1
    assert (bal / "missing.txt").read_text() == "abcdefghij1 0.000 10.000\n"
    assert not (out / "eval" / "missing.txt").exists()

    # Multi-label rows keep every label; utterance ids are Y<YTID>.
    assert read_kv(bal / "utt2label") == {
        "Y--PJHxphWEs": "/m/09x0r /t/dd00088",
        "Y-0SdAVK79lg": "/m/05zppz",
        "YYxd8SC2-Ncw": "/m/0jbk /m/09x0r /m/05zppz",
    }
    wav = read_kv(bal / "wav.scp")
    assert wav["YYxd8SC2-Ncw"] == str(audioset_root / "audio" / "b" / "c" / "YYxd8SC2-Ncw.flac")
    assert all(Path(p).is_absolute() for p in wav.values())
    durs = read_kv(bal / "utt2dur")
    for utt, seconds in durs.items():
        assert float(seconds) == pytest.approx(AUDIO[utt[1:]], abs=1e-3)

    # labels.txt: mids in class order with display names (commas and all), in each set and at the top.
    for labels_txt in (out / "labels.txt", bal / "labels.txt", out / "eval" / "labels.txt"):
        mids, names = read_labels(labels_txt)
        assert mids == ["/m/09x0r", "/m/05zppz", "/m/0jbk", "/t/dd00088"]
        assert names[1] == "Male speech, man speaking"

    for d in (bal, out / "eval"):
        assert validate_data_dir(d) == []
        for name in ("wav.scp", "utt2label", "utt2dur"):
            assert c_sorted(d / name), f"{d / name} is not LC_ALL=C sorted"
    assert read_kv(out / "eval" / "utt2label") == {"Ye0000000001": "/m/09x0r"}
    assert not (out / "train_as2m").exists()


def test_train_as2m_is_balanced_plus_unbalanced(audioset_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_audioset(audioset_root, out, sets=["balanced_train", "unbalanced_train", "train_as2m"], nj=1)
    keys = {name: set(read_kv(out / name / "wav.scp")) for name in report.sets}
    assert keys["balanced_train"] == {"Y--PJHxphWEs", "Y-0SdAVK79lg", "YYxd8SC2-Ncw"}
    assert keys["unbalanced_train"] == {"Yu0000000001", "Yu0000000002"}
    assert keys["train_as2m"] == keys["balanced_train"] | keys["unbalanced_train"]
    assert (out / "train_as2m" / "missing.txt").read_text() == "abcdefghij1 0.000 10.000\n"
    assert validate_data_dir(out / "train_as2m") == []


def test_unknown_mid_is_an_error_naming_the_line_or_is_skipped_and_counted(audioset_root: Path, tmp_path: Path) -> None:
    eval_csv = audioset_root / "eval_segments.csv"
    write_segments(eval_csv, [
        'e0000000001, 0.000, 10.000, "/m/09x0r,/m/unknown1"',
        'e0000000002, 0.000, 10.000, "/m/unknown2"',
    ])
    with pytest.raises(ValueError, match=rf"{eval_csv}:4: labels \['/m/unknown1'\]"):
        prepare_audioset(audioset_root, tmp_path / "data", sets=["eval"])
    assert not (tmp_path / "data").exists()

    known = {c.mid for c in read_class_labels(audioset_root / "class_labels_indices.csv")}
    segments = read_segments(eval_csv, known, unknown_mids="skip")
    assert [(s.ytid, s.mids) for s in segments] == [("e0000000001", ("/m/09x0r",))]
    report = prepare_audioset(audioset_root, tmp_path / "data", sets=["eval"], unknown_mids="skip")
    assert report.segments.num_unknown_mids == 2
    assert report.segments.num_rows_without_known_mid == 1
    assert read_kv(tmp_path / "data" / "eval" / "utt2label") == {"Ye0000000001": "/m/09x0r"}


def test_corrupt_clip_is_indexed_not_fatal(audioset_root: Path, tmp_path: Path) -> None:
    corrupt = audioset_root / "audio" / "eval" / "Ye0000000001_0.000_10.000.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage, not a wav header at all")
    out = tmp_path / "data"
    report = prepare_audioset(audioset_root, out, sets=["eval"])
    assert report.sets["eval"].num_unreadable == 1
    assert read_kv(out / "eval" / "wav.scp") == {"Ye0000000001": str(corrupt)}
    # Its utt2dur falls back to the segment's length from the CSV; the reason is listed.
    assert float(read_kv(out / "eval" / "utt2dur")["Ye0000000001"]) == 10.0
    assert (out / "eval" / "unreadable.txt").read_text().startswith(f"Ye0000000001 {corrupt} ")
    assert validate_data_dir(out / "eval") == []


def test_a_set_without_any_audio_is_an_error_and_writes_nothing(audioset_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty_audio"
    empty.mkdir()
    with pytest.raises(ValueError, match="none of the 1 clips of eval"):
        prepare_audioset(audioset_root, tmp_path / "data", audio_dir=empty, sets=["eval"])
    assert not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match="unknown AudioSet sets"):
        prepare_audioset(audioset_root, tmp_path / "data", sets=["balanced"])


def test_cli_prepares_data_and_fails_cleanly(audioset_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = subprocess.run(
        [sys.executable, "-m", "audiossl.bin.prepare_audioset", "--audioset-root", str(audioset_root),
         "--sets", "balanced_train eval", "--nj", "1", str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "2 bad CSV rows skipped" in run.stderr
    assert set(read_kv(out / "eval" / "wav.scp")) == {"Ye0000000001"}
    assert prepare_audioset_cli.main(["--audioset-root", str(tmp_path / "nowhere"), str(out)]) == 1


def run_data_sh(recipe: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run egs/<recipe>/local/data.sh from a recipe-like directory (utils/ and local/ linked in)."""
    repo = Path(__file__).resolve().parents[2]
    workdir.mkdir()
    (workdir / "utils").symlink_to(repo / "utils")
    (workdir / "local").symlink_to(repo / "egs" / recipe / "local")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C"}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=workdir, env=env, capture_output=True, text=True)


def test_data_sh(audioset_root: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    run = run_data_sh("audioset", recipe, "--audioset-root", str(audioset_root), "--sets", "balanced_train,eval",
                      "--nj", "1")
    assert run.returncode == 0, run.stderr
    assert set(read_kv(recipe / "data" / "eval" / "wav.scp")) == {"Ye0000000001"}
    assert (recipe / "data" / "balanced_train" / "missing.txt").is_file()
    assert not (recipe / "data" / "train_as2m").exists()
    bad = run_data_sh("audioset", tmp_path / "recipe2", "--audioset-dir", str(audioset_root))
    assert bad.returncode == 1 and "invalid option --audioset-dir" in bad.stderr
