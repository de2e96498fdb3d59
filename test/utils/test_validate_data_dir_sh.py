"""utils/validate_data_dir.sh: usage checks in the wrapper, the checks themselves in Python."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def validate(repo_root: Path) -> str:
    return str(repo_root / "utils" / "validate_data_dir.sh")


def run(*args: str) -> subprocess.CompletedProcess:
    # the project's Python first on PATH, as path.sh arranges in a recipe
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=env)


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("args", [[], ["a", "b"], ["--no-labels"]])
def test_wrong_number_of_dirs_prints_usage(validate: str, args: list[str]) -> None:
    res = run(validate, *args)
    assert res.returncode == 1
    assert "Usage:" in res.stderr and "e.g.:" in res.stderr


def test_unknown_option(validate: str, tmp_path: Path) -> None:
    res = run(validate, "--strict", str(tmp_path))
    assert res.returncode == 1 and "invalid option --strict" in res.stderr


def test_good_and_bad_dirs(validate: str, tmp_path: Path) -> None:
    d = tmp_path / "d"
    write(d / "wav.scp", ["u1 /a/1.wav", "u2 /a/2.wav"])
    write(d / "utt2label", ["u1 cat", "u2 dog"])
    write(d / "utt2dur", ["u1 1.0", "u2 2.0"])
    write(d / "labels.txt", ["0 cat", "1 dog"])
    res = run(validate, str(d))
    assert res.returncode == 0, res.stderr
    assert "OK (2 utterances, 2 classes)" in res.stdout

    write(d / "utt2label", ["u2 dog", "u1 cat"])  # unsorted
    res = run(validate, str(d))
    assert res.returncode == 1 and "utt2label" in res.stderr

    (d / "utt2dur").unlink()
    write(d / "utt2label", ["u1 cat", "u2 dog"])
    assert run(validate, str(d)).returncode == 1
    assert run(validate, "--no-durations", str(d)).returncode == 0
