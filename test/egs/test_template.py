"""The template recipe script: option parsing, help, stage labels, and shellcheck."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "egs" / "TEMPLATE" / "audiossl.sh"
RECIPES = ["mini", "audioset", "esc50", "spc2"]


def make_recipe(tmp_path: Path, name: str = "mini") -> Path:
    """A recipe dir of symlinks into the repository, the way egs/TEMPLATE/setup.sh makes one."""
    recipe = tmp_path / name
    recipe.mkdir()
    for entry in (REPO / "egs" / name).iterdir():
        if entry.name in ("data", "dump", "exp", "downloads"):
            continue
        (recipe / entry.name).symlink_to(entry.resolve())
    return recipe


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=120)


def test_guard_numbers_match_stage_labels():
    text = TEMPLATE.read_text()
    guards = re.findall(r'"\$\{stage\}" -le (\d+) \] && \[ "\$\{stop_stage\}" -ge (\d+) \]', text)
    labels = re.findall(r'log "Stage (\d+):', text)
    assert guards, "no stage guards found"
    assert all(a == b for a, b in guards), f"guard with two different numbers: {guards}"
    assert [a for a, _ in guards] == labels, f"guards {guards} do not match labels {labels}"
    assert labels == sorted(labels, key=int), "stages are not in order"
    for n in labels:  # every stage also records which stage a replayed run.sh should start at
        block = text.split(f'log "Stage {n}:')[0].rsplit("stage_now=", 1)[1]
        assert block.startswith(n), f"stage {n} sets stage_now={block[:3]!r}"


@pytest.mark.parametrize("name", RECIPES)
def test_help_lists_every_option_with_its_value(tmp_path, name):
    if not (REPO / "egs" / name / "run.sh").exists():
        pytest.fail(f"egs/{name}/run.sh is missing")
    recipe = make_recipe(tmp_path, name)
    res = run(recipe, "--help")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    options = re.findall(r"^([a-z_0-9]+)=", TEMPLATE.read_text().split("help_message=")[0], re.M)
    for opt in options:
        assert "--" + opt.replace("_", "-") in out, f"--help does not list {opt}"


def test_unknown_option_fails(tmp_path):
    res = run(make_recipe(tmp_path), "--no-such-option", "1")
    assert res.returncode != 0
    assert "no-such-option" in res.stderr + res.stdout


def test_stray_argument_fails_with_usage(tmp_path):
    res = run(make_recipe(tmp_path), "--stage", "7", "--stop-stage", "6", "extra")
    assert res.returncode == 2
    assert "Usage:" in res.stderr


def test_empty_stage_range_finishes(tmp_path):
    res = run(make_recipe(tmp_path), "--stage", "7", "--stop-stage", "6")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Successfully finished" in res.stdout
    assert "Stage" not in res.stdout.replace("--stage", "")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed; .ci/run installs it")
def test_shell_scripts_pass_shellcheck():
    scripts = [TEMPLATE] + sorted(REPO.glob("egs/*/run.sh")) + sorted(REPO.glob("egs/*/local/*.sh"))
    scripts += sorted(REPO.glob("utils/*.sh")) + [REPO / "tools" / "install.sh", REPO / "tools" / "activate_python.sh"]
    res = subprocess.run(["shellcheck", "-x", "-S", "warning", *map(str, scripts)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
