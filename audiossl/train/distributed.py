"""Data-parallel setup: who am I (rank, world size, master) and the process group.

Three ways a training process starts:

* ``torchrun`` / ``python -m torch.distributed.run``, or the local launcher of ``bin/train.py
  --ngpu N`` / ``--nproc N`` (``audiossl.train.launcher``, which sets the same variables): RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are in the environment.
* ``srun`` inside a Slurm job with several tasks: SLURM_PROCID, SLURM_STEP_NUM_TASKS (set in an
  srun step only: a batch script that did not call srun is one process), SLURM_LOCALID; the master is
  the first host of SLURM_JOB_NODELIST (``scontrol show hostnames``) and the port is derived from the
  job id, so every task finds the same one. MASTER_ADDR / MASTER_PORT in the environment win (two
  trainings in one job need different ports).
* a plain ``python`` process: world size 1, no process group.

The backend is nccl on CUDA and gloo on CPU. A second, gloo group carries the small host-side
decisions (stop on a signal, NaN flags, validation results) without touching the GPU stream.
"""
from __future__ import annotations

import datetime
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

SLURM_PORT_BASE = 20000
SLURM_PORT_RANGE = 20000


@dataclass
class DistInfo:
    """Where this process sits in the data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "none"  # none | torchrun | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def slurm_master_addr(nodelist: str) -> str:
    """The first host name of a Slurm node list (``node[01-04]`` -> ``node01``)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"cannot expand SLURM_JOB_NODELIST={nodelist!r} with 'scontrol show hostnames': {e}") from e
    hosts = out.split()
    if not hosts:
        raise RuntimeError(f"'scontrol show hostnames {nodelist}' printed no host")
    return hosts[0]


def slurm_master_port(job_id: str | int) -> int:
    """A port every task of a Slurm job derives alike from the job id."""
    return SLURM_PORT_BASE + int(job_id) % SLURM_PORT_RANGE


def detect_dist_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank, world size and master from torchrun's or Slurm's environment (see module docstring)."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistInfo(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            launcher="torchrun",
        )
    # Inside an srun step SLURM_STEP_NUM_TASKS is the step's task count; a batch script (no srun)
    # runs one process even when the job asked for several tasks.
    ntasks = env.get("SLURM_STEP_NUM_TASKS")
    if ntasks is not None and "SLURM_PROCID" in env and int(ntasks) > 1:
        return DistInfo(
            rank=int(env["SLURM_PROCID"]),
            world_size=int(ntasks),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR") or slurm_master_addr(env.get("SLURM_JOB_NODELIST", "localhost")),
            master_port=int(env.get("MASTER_PORT") or slurm_master_port(env.get("SLURM_JOB_ID", 0))),
            launcher="slurm",
        )
    return DistInfo()


def inside_launch(env: Mapping[str, str] | None = None) -> bool:
    """True when this process is one worker of a multi-process launch (torchrun or srun)."""
    return detect_dist_env(env).launcher != "none"


class DistContext:
    """The process groups of one training process; a no-op for world size 1."""

    def __init__(self, info: DistInfo, device: torch.device):
        self.info = info
        self.device = device
        self.control_group: Any = None
        if not info.distributed:
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{info.master_addr}:{info.master_port}",
            rank=info.rank,
            world_size=info.world_size,
            timeout=datetime.timedelta(minutes=30),
            device_id=device if device.type == "cuda" else None,
        )
        self.control_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
        logger.info(
            "process group: %s, rank %d of world size %d (local rank %d, master %s:%d, launcher %s)",
            backend, info.rank, info.world_size, info.local_rank, info.master_addr, info.master_port, info.launcher,
        )

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    def any_true(self, flag: bool) -> bool:
        """True if ``flag`` is True on any rank (host-side, over the gloo control group)."""
        if not self.info.distributed:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return bool(t.item())

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over ranks (on its own device, with the main group); returns it."""
        if self.info.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (a list by rank), None elsewhere; host-side (gloo)."""
        if not self.info.distributed:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.control_group)
        return out

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` on every rank (a list by rank); host-side (gloo)."""
        if not self.info.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control_group)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.info.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control_group)
        return box[0]

    def barrier(self) -> None:
        if self.info.distributed:
            dist.barrier(group=self.control_group)

    def close(self) -> None:
        if self.info.distributed and dist.is_initialized():
            dist.destroy_process_group()
