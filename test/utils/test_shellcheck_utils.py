"""The shell tools in utils/ pass shellcheck -x, and every tool prints Usage + e.g. on bad args."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = ["run.pl", "queue.pl", "split_scp.pl", "filter_scp.pl", "split_data.sh", "fix_data_dir.sh",
         "subset_data_dir.sh", "combine_data.sh", "validate_data_dir.sh"]


def test_shellcheck_clean(repo_root: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed; .ci/run installs it")
    scripts = ["utils/parse_options.sh"] + [f"utils/{t}" for t in TOOLS if t.endswith(".sh")]
    res = subprocess.run(["shellcheck", "-x", *scripts], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_no_arguments_prints_usage_and_exits_1(repo_root: Path, tmp_path: Path, tool: str) -> None:
    res = subprocess.run([str(repo_root / "utils" / tool)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "Usage:" in res.stderr and "e.g.:" in res.stderr
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written
