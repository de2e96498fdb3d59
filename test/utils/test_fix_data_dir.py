"""utils/fix_data_dir.sh: sort, drop duplicates and incomplete utterances, back up, report."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def fix(repo_root: Path) -> str:
    return str(repo_root / "utils" / "fix_data_dir.sh")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_keeps_utterances_present_everywhere_sorted(fix: str, tmp_path: Path) -> None:
    d = tmp_path / "d"
    wav = ["u3 /a/3.wav", "u1 /a/1.wav", "u2 /a/2.wav", "u4 /a/4.wav", "u1 /a/other.wav"]
    label = ["u1 dog", "u4 cat", "u2 cat dog", "u3 cat", "u5 dog"]
    dur = ["u2 1.5", "u1 2.0", "u4 3.0", "u3"]  # u3 has no value
    write(d / "wav.scp", wav)
    write(d / "utt2label", label)
    write(d / "utt2dur", dur)
    write(d / "labels.txt", ["0 cat", "1 dog"])
    res = run(fix, str(d))
    assert res.returncode == 0, res.stderr
    assert "kept 3 of 5 utterances" in res.stderr
    assert "2 not in utt2dur" in res.stderr and "1 not in wav.scp" in res.stderr
    assert (d / "wav.scp").read_text() == "u1 /a/1.wav\nu2 /a/2.wav\nu4 /a/4.wav\n"  # first line of u1 wins
    assert (d / "utt2label").read_text() == "u1 dog\nu2 cat dog\nu4 cat\n"
    assert (d / "utt2dur").read_text() == "u1 2.0\nu2 1.5\nu4 3.0\n"
    assert (d / "labels.txt").read_text() == "0 cat\n1 dog\n"
    for name, lines in (("wav.scp", wav), ("utt2label", label), ("utt2dur", dur)):
        assert (d / ".backup" / name).read_text().splitlines() == lines

    again = run(fix, str(d))
    assert again.returncode == 0 and "kept 3 of 3 utterances" in again.stderr
    assert (d / "utt2label").read_text() == "u1 dog\nu2 cat dog\nu4 cat\n"


def test_segments_drop_unknown_recordings_and_unused_ones(fix: str, tmp_path: Path) -> None:
    d = tmp_path / "d"
    write(d / "wav.scp", ["r1 /a/r1.wav", "r2 /a/r2.wav", "r3 /a/r3.wav"])
    write(d / "segments", ["s2 r1 1 2", "s1 r1 0 1", "s3 r9 0 1", "s4 r2 0 1", "bad r2 0"])
    write(d / "utt2label", ["s1 cat", "s2 dog", "s3 cat", "s4 dog", "bad cat"])
    res = run(fix, str(d))
    assert res.returncode == 0, res.stderr
    assert "kept 3 of 5 utterances" in res.stderr
    assert "recordings not in wav.scp" in res.stderr
    assert (d / "segments").read_text() == "s1 r1 0 1\ns2 r1 1 2\ns4 r2 0 1\n"
    assert (d / "utt2label").read_text() == "s1 cat\ns2 dog\ns4 dog\n"
    assert (d / "wav.scp").read_text() == "r1 /a/r1.wav\nr2 /a/r2.wav\n"  # r3: no segment left


def test_nothing_in_common_is_an_error_and_changes_nothing(fix: str, tmp_path: Path) -> None:
    d = tmp_path / "d"
    write(d / "wav.scp", ["a x.wav"])
    write(d / "utt2label", ["b dog"])
    res = run(fix, str(d))
    assert res.returncode == 1 and "no utterance" in res.stderr
    assert (d / "wav.scp").read_text() == "a x.wav\n" and not (d / ".backup").exists()


def test_usage(fix: str, tmp_path: Path) -> None:
    res = run(fix)
    assert res.returncode == 1 and "Usage:" in res.stderr and "e.g.:" in res.stderr
    res = run(fix, str(tmp_path / "missing"))
    assert res.returncode == 1 and "is not a directory" in res.stderr
