"""utils/combine_data.sh: merged sorted files, label-set check, duplicate ids, mixed segments."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def combine(repo_root: Path) -> str:
    return str(repo_root / "utils" / "combine_data.sh")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def plain_dir(d: Path, utts: list[str], labels: list[str] | None = None) -> None:
    write(d / "wav.scp", [f"{u} /a/{u}.wav" for u in utts])
    write(d / "utt2label", [f"{u} cat" for u in utts])
    write(d / "utt2dur", [f"{u} 2.5" for u in utts])
    write(d / "labels.txt", labels or ["0 cat", "1 dog Dog"])


def test_combines_and_sorts(combine: str, tmp_path: Path) -> None:
    plain_dir(tmp_path / "a", ["b1", "b3"])
    plain_dir(tmp_path / "b", ["a2", "b2"])
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert "combined 4 utterances from 2 directories" in res.stderr
    out = tmp_path / "all"
    assert (out / "wav.scp").read_text() == "a2 /a/a2.wav\nb1 /a/b1.wav\nb2 /a/b2.wav\nb3 /a/b3.wav\n"
    assert (out / "utt2dur").read_text().split("\n")[:4] == ["a2 2.5", "b1 2.5", "b2 2.5", "b3 2.5"]
    assert (out / "labels.txt").read_text() == "0 cat\n1 dog Dog\n"
    assert not (out / "segments").exists()


def test_different_label_sets_are_an_error(combine: str, tmp_path: Path) -> None:
    plain_dir(tmp_path / "a", ["a1"])
    plain_dir(tmp_path / "b", ["b1"], labels=["0 dog", "1 cat"])
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 1
    assert f"{tmp_path / 'a'}/labels.txt and {tmp_path / 'b'}/labels.txt differ" in res.stderr
    assert not (tmp_path / "all").exists()


def test_duplicate_utterance_ids_are_an_error(combine: str, tmp_path: Path) -> None:
    plain_dir(tmp_path / "a", ["x1", "x2"])
    plain_dir(tmp_path / "b", ["x2", "x3"])
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 1 and "more than one source (e.g. x2)" in res.stderr
    assert not (tmp_path / "all").exists()


def test_file_missing_in_one_source_is_skipped(combine: str, tmp_path: Path) -> None:
    plain_dir(tmp_path / "a", ["a1"])
    plain_dir(tmp_path / "b", ["b1"])
    (tmp_path / "b/utt2dur").unlink()
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert "not combining utt2dur" in res.stderr
    assert not (tmp_path / "all/utt2dur").exists()
    assert (tmp_path / "all/utt2label").read_text() == "a1 cat\nb1 cat\n"


def test_mixing_segments_and_whole_files(combine: str, tmp_path: Path) -> None:
    s = tmp_path / "seg"
    write(s / "wav.scp", ["r1 /a/r1.wav"])
    write(s / "segments", ["s1 r1 0 1", "s2 r1 1 2"])
    write(s / "utt2label", ["s1 cat", "s2 dog"])
    write(s / "utt2dur", ["s1 1", "s2 1"])
    write(s / "labels.txt", ["0 cat", "1 dog Dog"])
    plain_dir(tmp_path / "p", ["p1"])
    res = run(combine, str(tmp_path / "all"), str(s), str(tmp_path / "p"))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "all"
    assert (out / "segments").read_text() == "p1 p1 0 2.5\ns1 r1 0 1\ns2 r1 1 2\n"
    assert (out / "wav.scp").read_text() == "p1 /a/p1.wav\nr1 /a/r1.wav\n"
    assert (out / "utt2label").read_text() == "p1 cat\ns1 cat\ns2 dog\n"


def test_usage(combine: str, tmp_path: Path) -> None:
    res = run(combine, str(tmp_path / "only-dest"))
    assert res.returncode == 1 and "Usage:" in res.stderr and "e.g.:" in res.stderr
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "nodir"))
    assert res.returncode == 1 and "is it a data directory" in res.stderr


def test_shared_ids_kept_once_when_lines_agree(combine: str, tmp_path: Path) -> None:
    # ESC-50 fold sets share every clip: a union of them lists each clip once.
    plain_dir(tmp_path / "a", ["u1", "u2"])
    plain_dir(tmp_path / "b", ["u2", "u3"])
    res = run(combine, str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 1 and "more than one source (e.g. u2)" in res.stderr
    res = run(combine, "--shared-ids", "true", str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "all" / "wav.scp").read_text() == "u1 /a/u1.wav\nu2 /a/u2.wav\nu3 /a/u3.wav\n"
    assert (tmp_path / "all" / "utt2label").read_text() == "u1 cat\nu2 cat\nu3 cat\n"


def test_shared_ids_with_different_lines_fail(combine: str, tmp_path: Path) -> None:
    plain_dir(tmp_path / "a", ["u1", "u2"])
    plain_dir(tmp_path / "b", ["u2"])
    write(tmp_path / "b" / "wav.scp", ["u2 /elsewhere/u2.wav"])
    res = run(combine, "--shared-ids", "true", str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 1
    assert "different wav.scp lines in different sources (e.g. u2)" in res.stderr
    assert not (tmp_path / "all").exists()
    res = run(combine, "--shared-ids", "maybe", str(tmp_path / "all"), str(tmp_path / "a"))
    assert res.returncode == 1 and "option --shared-ids is a boolean" in res.stderr
