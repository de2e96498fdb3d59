"""The template recipe script: option parsing, help, stage labels, and shellcheck."""
import os
import re
import shutil
import signal
import subprocess
import time
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


def test_parallel_runs_must_be_a_positive_number(tmp_path):
    res = run(make_recipe(tmp_path), "--parallel-runs", "0")
    assert res.returncode == 2
    assert "--parallel-runs must be a number of runs" in res.stdout + res.stderr


def test_a_failed_parallel_run_stops_the_stage_and_is_named(tmp_path):
    """Two fine-tunings side by side that both fail (the initial model is not a model.pt): the recipe
    waits for both, names both, starts none of the queued runs and exits 1."""
    recipe = make_recipe(tmp_path)
    (recipe / "not_a_model.pt").write_text("not a checkpoint\n")
    res = run(recipe, "--stage", "5", "--stop-stage", "5", "--ngpu", "0", "--parallel-runs", "2",
              "--pretrained", "not_a_model.pt", "--finetune-models", "beats eat",
              "--finetune-init", "pretrained random")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "thread(s) per run" in out
    assert "2 run(s) failed: exp/finetune_beats exp/finetune_beats_scratch" in out, out
    for name in ("finetune_beats", "finetune_beats_scratch"):
        log = (recipe / "exp" / name / "log" / "train.log").read_text()
        assert "# Ended (code 1)" in log and "not_a_model.pt" in log, log[-2000:]
    assert not (recipe / "exp" / "finetune_eat").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "term"])
def test_a_stop_ends_every_parallel_run_with_what_it_started(tmp_path, how):
    """Ctrl-C (INT to the terminal's process group) or TERM to the template while two runs are under
    way stops both runs' process trees at once, although they run in process groups of their own."""
    recipe = make_recipe(tmp_path)
    (recipe / "not_a_model.pt").write_text("")
    pids = tmp_path / "pids"
    pids.mkdir()
    # a job backend whose every job is a long sleep recording its pid
    fake = tmp_path / "fake_cmd.sh"
    fake.write_text(f"#!/usr/bin/env bash\nsleep 300 &\necho $! > {pids}/$$\nwait\n")
    fake.chmod(0o755)
    (recipe / "cmd.sh").unlink()
    (recipe / "cmd.sh").write_text(f"export train_cmd={fake} cuda_cmd={fake} feats_cmd={fake}\n")
    proc = subprocess.Popen(
        ["./run.sh", "--stage", "5", "--stop-stage", "5", "--ngpu", "0", "--parallel-runs", "2",
         "--pretrained", "not_a_model.pt", "--finetune-models", "beats", "--finetune-init", "pretrained random"],
        cwd=recipe, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 60
    while len(list(pids.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.2)
    sleepers = [int(p.read_text()) for p in pids.iterdir()]
    assert len(sleepers) == 2, "the two runs did not start side by side"
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:  # the template is run.sh's child
        template = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        os.kill(template, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0, out
    assert "Stopped" in out
    for pid in sleepers:
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"process {pid} of a stopped run is still running")


def fake_backend(recipe: Path, tmp_path: Path) -> Path:
    """Replace the recipe's cmd.sh by a job backend that records each job's command line in
    <tmp_path>/jobs.txt and writes the model.pt of its --output-dir, without training."""
    jobs = tmp_path / "jobs.txt"
    fake = tmp_path / "record_cmd.sh"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {jobs}\n'
        'while [ $# -gt 0 ]; do [ "$1" = --output-dir ] && mkdir -p "$2" && touch "$2/model.pt"; shift; done\n'
    )
    fake.chmod(0o755)
    (recipe / "cmd.sh").unlink()
    (recipe / "cmd.sh").write_text(f"export train_cmd={fake} cuda_cmd={fake} feats_cmd={fake}\n")
    return jobs


def test_last_beats_round_with_a_fine_tuned_teacher_takes_its_own_config(tmp_path):
    recipe = make_recipe(tmp_path, "audioset")
    jobs = fake_backend(recipe, tmp_path)
    res = run(recipe, "--stage", "3", "--stop-stage", "3", "--ngpu", "0", "--pretrain-models", "beats",
              "--beats-rounds", "3", "--beats-last-teacher", "exp/finetune_beats/model.pt")
    assert res.returncode == 0, res.stdout + res.stderr
    tokenizers = [line for line in jobs.read_text().splitlines() if "--output-dir exp/beats_tok_r" in line]
    assert len(tokenizers) == 3
    assert "--config conf/beats_tokenizer_r1.yaml" in tokenizers[0]
    assert "--config conf/beats_tokenizer.yaml" in tokenizers[1] and "--model.teacher exp/beats_ssl_r1/model.pt" in tokenizers[1]
    assert "--config conf/beats_tokenizer_ft_teacher.yaml" in tokenizers[2]
    assert "--model.teacher exp/finetune_beats/model.pt" in tokenizers[2]


def test_feats_type_must_be_fbank_or_raw(tmp_path):
    res = run(make_recipe(tmp_path), "--feats-type", "bogus", "--stage", "7", "--stop-stage", "6")
    assert res.returncode == 2
    assert "--feats-type must be fbank (log-mel per model) or raw (audio for both models), got 'bogus'" in res.stdout


def write_small_sets(recipe: Path) -> None:
    """data/train (3 clips) and data/dev (2 clips, one shared with train), labelled, 16 kHz."""
    import numpy as np
    import soundfile as sf

    (recipe / "audio").mkdir()
    for i in range(4):
        x = 0.3 * np.sin(2 * np.pi * (300 + 50 * i) * np.arange(4000) / 16000)
        sf.write(recipe / "audio" / f"u{i}.wav", x.astype(np.float32), 16000)
    labels = ["cat", "dog"]
    for name, utts in (("train", ["u0", "u1", "u2"]), ("dev", ["u2", "u3"])):
        d = recipe / "data" / name
        d.mkdir(parents=True)
        (d / "wav.scp").write_text("".join(f"{u} audio/{u}.wav\n" for u in utts))
        (d / "utt2label").write_text("".join(f"{u} {labels[int(u[1]) % 2]}\n" for u in utts))
        (d / "utt2dur").write_text("".join(f"{u} 0.25\n" for u in utts))
        (d / "labels.txt").write_text("0 cat\n1 dog\n")


def test_stage2_raw_writes_one_dump_for_every_set(tmp_path):
    """--feats-type raw: stage 2 encodes the union of the sets once (dump/raw/_union), each set takes
    its lines from it into dump/raw/<set> with the statistics of the models' front ends; no fbank dump."""
    recipe = make_recipe(tmp_path)
    write_small_sets(recipe)
    args = ["--stage", "2", "--stop-stage", "2", "--feats-type", "raw", "--nj", "1", "--ngpu", "0",
            "--train-set", "train", "--valid-set", "dev", "--test-sets", "dev",
            "--pretrain-models", "", "--finetune-models", "beats"]
    res = run(recipe, *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Stage 2: raw audio (16 kHz FLAC): data/<set> -> dump/raw/<set>, fbank statistics for beats" in res.stdout
    raw = recipe / "dump" / "raw"
    assert (raw / "_union" / ".done").is_file() and (raw / "_union" / "log" / "dump.1.log").is_file()
    assert not list((raw / "_union").glob("stats_*.json"))
    for name, utts in (("train", ["u0", "u1", "u2"]), ("dev", ["u2", "u3"])):
        d = raw / name
        assert (d / ".done").is_file() and (d / "stats_beats.json").is_file()
        assert not (d / "stats_eat.json").exists() and not (d / "data").exists()  # lines of the union's arks
        lines = (d / "wav.scp").read_text().splitlines()
        assert [l.split()[0] for l in lines] == utts and all(" dump/raw/_union/data/wav.1.ark:" in l for l in lines)
        assert (d / "utt2label").read_text() == (recipe / "data" / name / "utt2label").read_text()
    assert not (recipe / "dump" / "fbank_beats").exists()

    res = run(recipe, *args)  # done: nothing redone
    assert res.returncode == 0, res.stdout + res.stderr
    assert "dump/raw/train is done: skipping" in res.stdout and "dump/raw/dev is done: skipping" in res.stdout

    # a model added later: the sets' missing statistics are computed, the union is not encoded again
    union_scp = (raw / "_union" / "wav.scp").stat().st_mtime_ns
    res = run(recipe, *args[:-1], "beats eat")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (raw / "train" / "stats_eat.json").is_file() and (raw / "dev" / "stats_eat.json").is_file()
    assert (raw / "_union" / "wav.scp").stat().st_mtime_ns == union_scp


@pytest.mark.parametrize("feats_type,beats_dir,eat_dir", [("fbank", "dump/fbank_beats", "dump/fbank_eat"),
                                                         ("raw", "dump/raw", "dump/raw")])
def test_later_stages_read_the_dump_of_the_feats_type(tmp_path, feats_type, beats_dir, eat_dir):
    recipe = make_recipe(tmp_path)
    jobs = fake_backend(recipe, tmp_path)
    (recipe / "init.pt").write_text("")
    common = ["--ngpu", "0", "--feats-type", feats_type, "--test-sets", "test"]
    res = run(recipe, "--stage", "3", "--stop-stage", "5", "--beats-rounds", "1", "--pretrained", "init.pt",
              "--finetune-init", "pretrained", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(recipe, "--stage", "7", "--stop-stage", "7", "--pretrained", "init.pt", "--finetune-init", "pretrained",
              *common)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = jobs.read_text().splitlines()
    by_out = {re.search(r"--(?:output-dir|out) (\S+)", l).group(1): l for l in lines}
    for exp, d in (("exp/beats_tok_r1", beats_dir), ("exp/beats_ssl_r1", beats_dir), ("exp/eat_pretrain", eat_dir),
                   ("exp/finetune_beats", beats_dir), ("exp/finetune_eat", eat_dir)):
        assert f"--data.train {d}/train --data.valid {d}/dev" in by_out[exp], by_out[exp]
    for exp, d in (("exp/probe_beats", beats_dir), ("exp/probe_eat", eat_dir), ("exp/baseline_logmel", beats_dir)):
        assert f"--train {d}/train --valid {d}/dev --test {d}/test" in by_out[exp], by_out[exp]
