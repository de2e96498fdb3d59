"""utils/parse_options.sh: --foo-bar sets foo_bar, unknown options and non-boolean values fail,
--help prints help_message, --config is sourced first so the command line wins."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def script(tmp_path: Path, repo_root: Path) -> Path:
    """A tool in the usual shape: defaults, help_message, parse_options.sh, then positional args."""
    path = tmp_path / "tool.sh"
    path.write_text(
        f"""#!/usr/bin/env bash
set -euo pipefail
nj=4
feat_type=fbank
use_gpu=false
help_message="Usage: $0 [--nj N] [--feat-type T] [--use-gpu true|false] <dir>"
. {repo_root}/utils/parse_options.sh
echo "nj=$nj feat_type=$feat_type use_gpu=$use_gpu args=$*"
"""
    )
    path.chmod(0o755)
    return path


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=30)


def test_options_set_variables_and_leave_positionals(script: Path) -> None:
    res = run(script, "--nj", "8", "--feat-type=mfcc", "--use-gpu", "true", "data/train", "x y")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "nj=8 feat_type=mfcc use_gpu=true args=data/train x y"


def test_defaults_kept_and_double_dash_ends_options(script: Path) -> None:
    res = run(script, "--", "--nj")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "nj=4 feat_type=fbank use_gpu=false args=--nj"


def test_unknown_option_is_an_error(script: Path) -> None:
    res = run(script, "--num-jobs", "3", "data")
    assert res.returncode == 1
    assert res.stdout == ""
    assert f"{script}: invalid option --num-jobs" in res.stderr


def test_option_without_value_is_an_error(script: Path) -> None:
    res = run(script, "--nj")
    assert res.returncode == 1
    assert "--nj needs a value" in res.stderr


def test_boolean_accepts_only_true_or_false(script: Path) -> None:
    res = run(script, "--use-gpu", "yes", "data")
    assert res.returncode == 1
    assert "--use-gpu" in res.stderr and "true or false" in res.stderr
    assert res.stdout == ""
    ok = run(script, "--use-gpu", "false", "data")
    assert ok.returncode == 0 and "use_gpu=false" in ok.stdout


def test_help_prints_help_message_and_exits_0(script: Path) -> None:
    for flag in ("--help", "-h"):
        res = run(script, "--nj", "2", flag)
        assert res.returncode == 0
        assert res.stderr.strip() == f"Usage: {script} [--nj N] [--feat-type T] [--use-gpu true|false] <dir>"
        assert res.stdout == ""  # the script stopped before its own echo


def test_config_file_is_sourced_first_so_the_command_line_wins(script: Path, tmp_path: Path) -> None:
    conf = tmp_path / "opts.conf"
    conf.write_text("nj=16\nfeat_type=logmel\n")
    res = run(script, "--nj", "2", "--config", str(conf), "data")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "nj=2 feat_type=logmel use_gpu=false args=data"
    res = run(script, f"--config={conf}", "data")
    assert res.stdout.strip() == "nj=16 feat_type=logmel use_gpu=false args=data"


def test_missing_config_file_is_an_error(script: Path, tmp_path: Path) -> None:
    res = run(script, "--config", str(tmp_path / "nope.conf"), "data")
    assert res.returncode == 1
    assert "nope.conf" in res.stderr and "does not exist" in res.stderr
