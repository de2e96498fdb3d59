"""Local multi-process launch: N workers of one training command on this machine (``--nproc N`` on
CPU, ``--ngpu N`` on GPUs).

The launcher starts the workers itself, with the environment torchrun would give them (RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), rather than through torchrun,
because preemption needs three things torchrun does not give:

* Workers die with their launcher: each asks the kernel for SIGTERM when its parent goes
  (prctl PR_SET_PDEATHSIG), so a SIGKILL of the launcher makes them save and stop instead of
  training on with PPID 1; they stay in the launcher's process group (torchrun puts each in a
  session of its own), so a signal to the group reaches every one.
* The exit code is the trainer's: 0 when every worker finished, 75 (``EXIT_REQUEUE``) when they
  stopped on SIGTERM/SIGUSR1 (after saving, or before the first update), else the first failure's,
  with the rest stopped; a line names the failed rank, and there is no launcher traceback.
* SIGTERM and SIGUSR1 sent to the launcher alone are passed on to every worker as SIGTERM.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from audiossl.train.signals import EXIT_REQUEUE, STOP_SIGNALS

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_GRACE_S = 30.0  # after one worker failed: how long the others get to stop on SIGTERM before SIGKILL


def free_port() -> int:
    """A TCP port free on this host now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(base: Mapping[str, str], rank: int, nproc: int, port: int) -> dict[str, str]:
    """The environment of local worker ``rank`` of ``nproc`` (torchrun's names)."""
    env = dict(base)
    env.update(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nproc),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _die_with_parent(parent: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:  # in the child, between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def launch(cmd: Sequence[str], nproc: int, env: Mapping[str, str] | None = None,
           pass_fds: Sequence[int] = ()) -> int:
    """Run ``nproc`` workers of ``cmd`` (see module docstring) and return the launch's exit code."""
    assert nproc > 1, f"launch needs at least 2 workers, got {nproc}"
    base = dict(os.environ if env is None else env)
    port = free_port()
    preexec = _die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
    procs: list[subprocess.Popen] = []
    stopping: list[int] = []

    def forward(signum, frame) -> None:
        if not stopping:
            logger.warning("got %s: passing it on to the %d workers", signal.Signals(signum).name, len(procs))
        stopping.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        for rank in range(nproc):
            procs.append(subprocess.Popen(list(cmd), env=worker_env(base, rank, nproc, port),
                                          preexec_fn=preexec, pass_fds=tuple(pass_fds)))
            if stopping:  # a signal came while the workers were starting: stop this one too
                procs[-1].send_signal(signal.SIGTERM)
        return _wait(procs, stopping)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:  # only after an error of the launcher itself: leave nothing behind
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait(procs: list[subprocess.Popen], stopping: list[int]) -> int:
    failed: tuple[int, int] | None = None  # (rank, exit code) of the first worker to fail
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        if failed is None:
            for rank, c in enumerate(codes):
                if c is not None and not _stopped_or_done(c, bool(stopping)):
                    failed = (rank, c)
                    logger.error("worker %d of %d %s; stopping the others", rank, len(procs), _describe(c))
                    for p in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + _GRACE_S
                    break
        elif time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.05)
    if failed is not None:
        return 1 if failed[1] < 0 else failed[1]
    if any(c != 0 for c in codes):
        return EXIT_REQUEUE
    return 0


def _stopped_or_done(code: int, stopping: bool) -> bool:
    """A worker's exit code that is no failure: done, stopped after saving (75), or, once a stop is
    under way, killed by SIGTERM before its Python could install a handler."""
    return code in (0, EXIT_REQUEUE) or (stopping and code == -signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
