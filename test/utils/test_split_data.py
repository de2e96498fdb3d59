"""utils/split_data.sh: consistent parts, segments-aware wav.scp, reuse of an up-to-date split."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def keys(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()]


@pytest.fixture
def split_data(repo_root: Path) -> str:
    return str(repo_root / "utils" / "split_data.sh")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def make_segments_dir(data: Path) -> None:
    # 3 recordings, 7 segments: r1 has s1-s3, r2 has s4-s5, r3 has s6-s7
    segs = [("s1", "r1"), ("s2", "r1"), ("s3", "r1"), ("s4", "r2"), ("s5", "r2"), ("s6", "r3"), ("s7", "r3")]
    write(data / "wav.scp", ["r1 /a/r1.wav", "r2 sox /a/r2.flac -t wav - |", "r3 /a/r3.wav"])
    write(data / "segments", [f"{s} {r} {i}.0 {i + 1}.0" for i, (s, r) in enumerate(segs)])
    write(data / "utt2label", [f"{s} {'dog' if i % 2 else 'cat dog'}" for i, (s, _) in enumerate(segs)])
    write(data / "utt2dur", [f"{s} 1.0" for s, _ in segs])
    write(data / "labels.txt", ["0 cat Cat", "1 dog Dog"])


def test_segments_aware_split(split_data: str, tmp_path: Path) -> None:
    data = tmp_path / "data/train"
    make_segments_dir(data)
    res = run(tmp_path, split_data, "data/train", "3")
    assert res.returncode == 0, res.stderr
    parts = [data / "split3" / str(n) for n in (1, 2, 3)]
    assert [keys(p / "segments") for p in parts] == [["s1", "s2", "s3"], ["s4", "s5"], ["s6", "s7"]]
    wav_lines = (data / "wav.scp").read_text().splitlines()
    for part in parts:
        segs = (part / "segments").read_text().splitlines()
        utts = [s.split()[0] for s in segs]
        recs = sorted({s.split()[1] for s in segs})
        assert keys(part / "wav.scp") == recs  # exactly the recordings its segments use
        assert set((part / "wav.scp").read_text().splitlines()) <= set(wav_lines)  # lines unchanged (pipes too)
        assert keys(part / "utt2label") == utts and keys(part / "utt2dur") == utts
        assert (part / "labels.txt").read_text() == (data / "labels.txt").read_text()
    merged = [line for p in parts for line in (p / "utt2label").read_text().splitlines()]
    assert merged == (data / "utt2label").read_text().splitlines()


def test_segments_straddling_a_recording_keep_it_in_both_parts(split_data: str, tmp_path: Path) -> None:
    data = tmp_path / "d"
    make_segments_dir(data)
    res = run(tmp_path, split_data, "d", "2")  # parts s1-s4 and s5-s7: r2 is in both
    assert res.returncode == 0, res.stderr
    assert keys(data / "split2/1/wav.scp") == ["r1", "r2"]
    assert keys(data / "split2/2/wav.scp") == ["r2", "r3"]


def test_plain_dir_split_and_reuse(split_data: str, tmp_path: Path) -> None:
    data = tmp_path / "d"
    utts = [f"u{i}" for i in range(5)]
    write(data / "wav.scp", [f"{u} /a/{u}.wav" for u in utts])
    write(data / "utt2label", [f"{u} cat" for u in utts])
    write(data / "labels.txt", ["0 cat"])
    assert run(tmp_path, split_data, "d", "2").returncode == 0
    assert keys(data / "split2/1/wav.scp") == ["u0", "u1", "u2"] and keys(data / "split2/2/wav.scp") == ["u3", "u4"]
    assert not (data / "split2/1/segments").exists()

    marker = data / "split2/1/marker"
    marker.write_text("left by the first split")
    res = run(tmp_path, split_data, "d", "2")
    assert res.returncode == 0 and "reusing" in res.stderr
    assert marker.exists()  # untouched

    # a data file newer than the split forces a new one
    write(data / "utt2label", [f"{u} dog" for u in utts])
    stamp = (data / "split2/.done").stat().st_mtime
    os.utime(data / "utt2label", (stamp + 10, stamp + 10))
    res = run(tmp_path, split_data, "d", "2")
    assert res.returncode == 0 and "reusing" not in res.stderr
    assert not marker.exists()
    assert (data / "split2/2/utt2label").read_text() == "u3 dog\nu4 dog\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["d"], "Usage:"),
        (["d", "0"], "positive integer"),
        (["d", "9"], "fewer than 9 parts"),
        (["nodir", "2"], "is it a data directory"),
    ],
)
def test_bad_usage(split_data: str, tmp_path: Path, args: list[str], message: str) -> None:
    write(tmp_path / "d/wav.scp", ["u1 a.wav", "u2 b.wav"])
    res = run(tmp_path, split_data, *args)
    assert res.returncode == 1
    assert message in res.stderr
    assert not list((tmp_path / "d").glob("split*"))
