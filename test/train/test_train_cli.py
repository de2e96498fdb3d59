"""python -m audiossl.bin.train as a process: SIGTERM -> save + exit 75 -> exact resume; --nproc 2 DDP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_testlib import make_dump, max_abs_diff, state_of, toy_config, write_config  # noqa: E402

from audiossl.train.checkpoint import load_checkpoint  # noqa: E402
from audiossl.train.config import config_from_dict  # noqa: E402
from audiossl.train.signals import EXIT_REQUEUE  # noqa: E402
from audiossl.train.trainer import train  # noqa: E402

TRAIN = [sys.executable, "-m", "audiossl.bin.train"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def data(tmp_path):
    make_dump(tmp_path / "train", num_utts=24, frames=(30, 60), seed=0)
    make_dump(tmp_path / "valid", num_utts=6, frames=(30, 60), seed=1)
    return tmp_path


def test_help():
    out = subprocess.run([*TRAIN, "--help"], capture_output=True, text=True, env=_env())
    assert out.returncode == 0 and "--output-dir" in out.stdout and "--nproc" in out.stdout


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, env=_env(), timeout=120)


def test_bad_key_fails_at_start(data):
    cfg = write_config(data / "c.yaml", toy_config(data))
    out = _run("--config", str(cfg), "--output-dir", str(data / "exp"), "--optim.lrr", "1")
    assert out.returncode == 1
    assert "unknown option --optim.lrr" in out.stderr
    assert not (data / "exp" / "checkpoint_last.pt").exists()


def test_a_bad_value_is_blamed_on_its_source_and_leaves_no_exp_dir(data):
    cfg = write_config(data / "c.yaml", toy_config(data))
    out = _run("--config", str(cfg), "--output-dir", str(data / "exp"), "--optim.max_updates", "ten")
    assert out.returncode == 1
    assert "command line: --optim.max_updates: expected an integer, got 'ten'" in out.stderr
    assert f"{cfg}:" not in out.stderr
    out = _run("--config", str(cfg), "--output-dir", str(data / "exp"), "--optim.max_updates", "-3")
    assert out.returncode == 1 and "command line: --optim.max_updates must be >= 0" in out.stderr
    bad = toy_config(data)
    bad["optim"]["max_updates"] = "ten"
    bad_cfg = write_config(data / "bad.yaml", bad)
    out = _run("--config", str(bad_cfg), "--output-dir", str(data / "exp"))
    assert out.returncode == 1 and f"{bad_cfg}: optim.max_updates: expected an integer" in out.stderr
    assert not (data / "exp").exists(), "a config that does not load leaves no exp dir"
    out = _run("--config", str(cfg), "--output-dir", str(data / "exp"), "--nproc", "3")  # batch_size 4
    assert out.returncode == 1 and "data.batch_size 4 (the global batch) cannot be split over 3 processes" in out.stderr
    assert not (data / "exp").exists()


def test_dry_run_prints_the_split_and_schedule_and_writes_nothing(data):
    raw = toy_config(data, data={"batch_size": 8, "max_batch_per_device": 2},
                     optim={"max_epochs": 4, "warmup_epochs": 1, "lr": 0.01, "min_lr": 0.0})
    cfg = write_config(data / "c.yaml", raw)
    out = _run("--config", str(cfg), "--output-dir", str(data / "exp"), "--dry-run", "--nproc", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "task toy_classifier: global batch 8 = 2 processes x 2 clips x 2 accumulation (config: 8)"
    assert lines[1] == "train set: 24 clips per epoch = 3 updates of 8 clips"
    assert lines[2] == "updates: 12 = 4.00 epochs; warm-up 3; 96 clips seen"
    assert lines[3] == ("lr: 0.00333 at 1, 0.01 at 3, 0.0075 at 6, 0.0025 at 9, 0 at 12"  # cosine from update 3
                        " (scale-1 groups; schedule per group: scaled)")
    assert not (data / "exp").exists()
    paper_conf = Path(__file__).resolve().parents[2] / "egs" / "audioset" / "conf" / "beats_ssl.yaml"
    paper = _run("--config", str(paper_conf), "--output-dir", str(data / "p"), "--dry-run",
                 "--ngpu", "4")
    assert paper.returncode == 0 and "global batch 560 = 4 processes x 70 clips x 2 accumulation" in paper.stdout


def test_sigterm_saves_exits_75_and_resumes_exactly(data):
    raw = toy_config(
        data,
        model={"step_delay_s": 0.03, "dropout": 0.2},
        data={"num_workers": 1},  # a worker process receives the signal too and must not die of it
        optim={"max_updates": 40},
        trainer={"log_interval": 1, "save_interval": 1000, "valid_interval": 1000},
    )
    conf = write_config(data / "c.yaml", raw)
    exp = data / "exp"
    cmd = [*TRAIN, "--config", str(conf), "--output-dir", str(exp)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(),
                            start_new_session=True)
    seen = []
    deadline = time.time() + 120
    for line in proc.stderr:
        seen.append(line)
        if "update 5/40" in line:
            os.killpg(proc.pid, signal.SIGTERM)  # like queue.pl: the whole process group
            break
        assert time.time() < deadline, "".join(seen[-20:])
    seen.extend(proc.stderr)
    rc = proc.wait(timeout=120)
    log = "".join(seen)
    assert rc == EXIT_REQUEUE, log
    assert "got SIGTERM" in log
    stopped = load_checkpoint(exp / "checkpoint_last.pt")["num_updates"]
    assert 5 <= stopped < 40, log
    assert not (exp / "model.pt").exists()

    rc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert rc.returncode == 0, rc.stderr
    assert f"resumed from {exp / 'checkpoint_last.pt'}: update {stopped}" in rc.stderr

    train(config_from_dict(raw), data / "straight", device="cpu")
    assert max_abs_diff(state_of(exp / "model.pt"), state_of(data / "straight" / "model.pt")) < 1e-6


def test_two_gloo_processes_equal_one_with_same_global_batch(data):
    # global batch 8 in all three runs: 2 processes x 2 x 2 passes, 1 x 8, 1 x 2 x 4 passes
    raw = toy_config(data, data={"batch_size": 8, "max_batch_per_device": 2}, optim={"max_updates": 6},
                     trainer={"log_interval": 2, "valid_interval": 3, "save_interval": 3})
    conf = write_config(data / "c.yaml", raw)
    out = subprocess.run([*TRAIN, "--config", str(conf), "--output-dir", str(data / "ddp"), "--nproc", "2"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (data / "ddp" / "train.log").read_text()
    assert "world size 2" in log and "global batch 8 = 2 processes x 2 clips x 2 accumulation (config: 8)" in log

    one = dict(raw, data=dict(raw["data"], max_batch_per_device=None))
    train(config_from_dict(one), data / "one", device="cpu")
    accum = raw  # one process: 4 passes of 2
    train(config_from_dict(accum), data / "accum", device="cpu")
    ddp = state_of(data / "ddp" / "model.pt")
    assert max_abs_diff(ddp, state_of(data / "one" / "model.pt")) < 1e-5
    assert max_abs_diff(ddp, state_of(data / "accum" / "model.pt")) < 1e-5
    init = torch.load(data / "ddp" / "checkpoints" / "checkpoint_3.pt", weights_only=False)
    assert init["world_size"] == 2 and len(init["rng"]) == 2
    # validation windows split over the two ranks are put back together per clip: the same metrics
    assert "6 clips in" in log  # clips of 30-60 frames in windows of 40: several windows each
    def valid_rows(exp):
        rows = [json.loads(x) for x in (exp / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if r["split"] == "valid"]
    for a, b in zip(valid_rows(data / "ddp"), valid_rows(data / "one"), strict=True):
        assert a["update"] == b["update"] and a["acc"] == b["acc"] and a["mAP"] == pytest.approx(b["mAP"], abs=1e-5)
