"""One training per experiment dir: ``<exp>/.lock``, held with flock(2) for the life of the training.

The kernel drops a flock when the last process holding the open file goes, whatever killed it, so a
lock file left by a dead training is never in the way (it is stale: taken over, with a word in the
log). The file holds the holder's pid, host and start time, for the message a second training gets.

A local launch (``--nproc N``) takes the lock in the launcher; its workers inherit the open file (and
so the lock: it lasts until the launcher and every worker are gone) and are told so through
``AUDIOSSL_EXP_LOCK`` in their environment, so they do not try to take it again.
"""
from __future__ import annotations

import datetime
import fcntl
import logging
import os
import socket
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
INHERITED_ENV = "AUDIOSSL_EXP_LOCK"  # set by the launcher for its workers: the lock file they share


class ExpDirBusy(RuntimeError):
    """Another live training holds this experiment dir."""


class ExpDirLock:
    """The lock of experiment dir ``out`` (see module docstring); :meth:`acquire` or raise."""

    def __init__(self, out: str | os.PathLike):
        self.path = Path(out) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "ExpDirLock":
        """Take the lock or raise :class:`ExpDirBusy` naming the holder; creates ``out``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ExpDirBusy(
                f"{self.path.parent}: another training is running in this experiment dir "
                f"({holder or 'holder unknown'}; lock {self.path}); wait for it to finish or stop it "
                "(its workers too), or give another --output-dir"
            ) from None
        stale = _read(fd)
        if stale:
            logger.info("%s: taking over a stale lock (%s: that training is gone)", self.path, stale)
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Drop the lock, emptying the file: a holder's name found by the next one means it died."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def inherited(out: str | os.PathLike) -> bool:
    """True when a launcher holds ``out``'s lock for this process (see module docstring)."""
    held = os.environ.get(INHERITED_ENV)
    return held is not None and Path(held).resolve() == (Path(out) / LOCK_NAME).resolve()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        return ""
