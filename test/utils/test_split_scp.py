"""utils/split_scp.pl (contiguous, near-equal parts) and utils/filter_scp.pl (keep/exclude by key)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def run(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, input=stdin, timeout=60)


@pytest.fixture
def utils(repo_root: Path) -> Path:
    return repo_root / "utils"


@pytest.mark.parametrize("num_lines, parts", [(10, 3), (7, 7), (5, 1), (4, 3)])
def test_split_is_contiguous_and_balanced(utils: Path, tmp_path: Path, num_lines: int, parts: int) -> None:
    lines = [f"utt{i:02d} /audio/{i}.wav\n" for i in range(num_lines)]
    (tmp_path / "wav.scp").write_text("".join(lines))
    outs = [f"wav.{n}.scp" for n in range(1, parts + 1)]
    res = run(tmp_path, str(utils / "split_scp.pl"), "wav.scp", *outs)
    assert res.returncode == 0, res.stderr
    pieces = [(tmp_path / o).read_text().splitlines(keepends=True) for o in outs]
    assert [line for piece in pieces for line in piece] == lines  # contiguous, order kept, nothing lost
    sizes = [len(p) for p in pieces]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_split_refuses_more_parts_than_lines(utils: Path, tmp_path: Path) -> None:
    (tmp_path / "ids").write_text("a x\nb y\n")
    res = run(tmp_path, str(utils / "split_scp.pl"), "ids", "1", "2", "3")
    assert res.returncode == 1
    assert "ids has 2 non-empty lines, fewer than the 3 parts" in res.stderr
    assert not (tmp_path / "1").exists()


def test_split_usage(utils: Path, tmp_path: Path) -> None:
    res = run(tmp_path, str(utils / "split_scp.pl"), "only-input")
    assert res.returncode == 1
    assert res.stderr.startswith("Usage: split_scp.pl") and "e.g.:" in res.stderr


def test_filter_keeps_listed_keys_in_input_order(utils: Path, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("a 1\nb 2\nc 3\nd 4\n")
    (tmp_path / "ids").write_text("d whatever\nb\nzzz\n")
    res = run(tmp_path, str(utils / "filter_scp.pl"), "ids", "in")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "b 2\nd 4\n"
    res = run(tmp_path, str(utils / "filter_scp.pl"), "--exclude", "ids", "in")
    assert res.stdout == "a 1\nc 3\n"


def test_filter_on_another_field_and_from_stdin(utils: Path, tmp_path: Path) -> None:
    (tmp_path / "recs").write_text("r2\n")
    segments = "s1 r1 0 1\ns2 r2 0 1\ns3 r2 1 2\n"
    res = run(tmp_path, str(utils / "filter_scp.pl"), "-f", "2", "recs", stdin=segments)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "s2 r2 0 1\ns3 r2 1 2\n"


def test_filter_errors(utils: Path, tmp_path: Path) -> None:
    res = run(tmp_path, str(utils / "filter_scp.pl"), "missing-list", "in")
    assert res.returncode == 1 and "cannot read id list missing-list" in res.stderr
    res = run(tmp_path, str(utils / "filter_scp.pl"), "--keep", "a", "b")
    assert res.returncode == 1 and "invalid option --keep" in res.stderr and "Usage: filter_scp.pl" in res.stderr
