"""audiossl.train.distributed: rank/world/master from torchrun or Slurm env; a real 2-task Slurm job."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_testlib import make_dump, max_abs_diff, state_of, toy_config, write_config  # noqa: E402

from audiossl.train.config import config_from_dict  # noqa: E402
from audiossl.train.distributed import detect_dist_env, inside_launch, slurm_master_port  # noqa: E402
from audiossl.train.trainer import train  # noqa: E402


def test_torchrun_env():
    info = detect_dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "1234"})
    assert (info.rank, info.world_size, info.local_rank, info.master_addr, info.master_port) == (3, 4, 1, "node7", 1234)
    assert info.launcher == "torchrun" and not info.is_main and info.distributed


def test_plain_process_and_batch_script_are_single():
    assert detect_dist_env({}).world_size == 1 and not inside_launch({})
    # a batch script of a 2-task job that did not call srun: SLURM_NTASKS=2 but no step task count
    batch_script = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n1"}
    assert detect_dist_env(batch_script).world_size == 1


def test_srun_step_env():
    env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1",
           "SLURM_JOB_ID": "4242", "MASTER_ADDR": "gpu01"}
    info = detect_dist_env(env)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (1, 2, 1, "slurm")
    assert info.master_addr == "gpu01" and info.master_port == slurm_master_port(4242)
    assert slurm_master_port(4242) == slurm_master_port("4242") != slurm_master_port(4243)
    assert 1024 < slurm_master_port(99999999) < 65536


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_task_slurm_job_trains_with_world_size_2(slurm_cluster, repo_root, tmp_path):
    make_dump(tmp_path / "train", num_utts=24, seed=0)
    raw = toy_config(tmp_path, data={"batch_size": 4}, optim={"max_updates": 6},
                     trainer={"log_interval": 2, "save_interval": 3})
    conf = write_config(tmp_path / "c.yaml", raw)
    exp = tmp_path / "exp"
    (tmp_path / "path.sh").write_text(f"export PYTHONPATH={repo_root}\n")  # the job runs this checkout's code
    # the master (first host of the job's node list) is found through scontrol; the port is set here
    # only so that concurrent test sessions, whose private clusters both start at job id 1, never
    # clash (srun --export=ALL: queue.pl's sbatch --export=PATH would otherwise drop it)
    port = _free_port()
    cmd = [str(repo_root / "utils" / "queue.pl"), "--num-tasks", "2", "--squeue-interval", "2", str(tmp_path / "log" / "train.log"),
           "env", f"MASTER_PORT={port}", "OMP_NUM_THREADS=1",
           "srun", "--export=ALL", sys.executable, "-m", "audiossl.bin.train", "--config", str(conf), "--output-dir", str(exp)]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    job_log = (tmp_path / "log" / "train.log").read_text() if (tmp_path / "log" / "train.log").exists() else ""
    assert out.returncode == 0, out.stderr + job_log[-4000:]
    log = (exp / "train.log").read_text()
    assert "rank 0 of world size 2" in log and "launcher slurm" in log, log[-3000:]
    assert f"master {socket.gethostname().split('.')[0]}:{port}" in log
    assert "global batch 4 = 2 processes x 2 clips x 1 accumulation (config: 4)" in log

    one = raw  # the same global batch in one process
    train(config_from_dict(one), tmp_path / "one", device="cpu")
    assert max_abs_diff(state_of(exp / "model.pt"), state_of(tmp_path / "one" / "model.pt")) < 1e-5
