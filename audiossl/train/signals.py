"""How a training stops on a signal: which signals, the exit code, and the handler of the start-up.

SIGTERM and SIGUSR1 (Slurm's preemption and ``--signal`` warning) stop a training. Inside the
training loop the trainer finishes the current update, saves and exits ``EXIT_REQUEUE`` (75), which
``queue.pl --requeue`` resubmits. Before that loop, through imports, data and model building and
checkpoint loading, :func:`stop_at_startup` is in force: the first stop signal raises
:class:`StartupStopped` at once, wherever the process is, and the entry point exits 75 too: nothing
was trained since the last checkpoint, so nothing is lost, and the requeued job resumes from that
checkpoint. (The same handler is back in force once the loop is over.) :func:`watch_startup`, the
entry point's first line, notes a signal that comes before its ``try`` is entered.

This module imports nothing heavy: the entry point installs the handler before importing torch.
"""
from __future__ import annotations

import signal
from typing import Any

EXIT_REQUEUE = 75  # exit code of a training stopped by a signal: re-run the same command to resume
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StartupStopped(BaseException):
    """A stop signal came outside the training loop (see module docstring).

    A BaseException, as KeyboardInterrupt, so that no ``except Exception`` of the start-up code
    swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} outside the training loop")


class _Startup:
    signum: int | None = None  # the first stop signal seen
    armed = False  # raise StartupStopped (once) on a stop signal
    raised = False


def _on_stop(signum: int, frame: Any) -> None:
    if _Startup.signum is None:
        _Startup.signum = signum
    if _Startup.armed and not _Startup.raised:  # a second signal (to the process group, then again
        _Startup.raised = True                  # from a launcher) must not interrupt the unwinding
        raise StartupStopped(signum)


def watch_startup() -> None:
    """Note stop signals from now on, without acting yet: the first line of an entry point, for the
    moments before :func:`stop_at_startup` can be called inside a ``try``."""
    _Startup.signum, _Startup.armed, _Startup.raised = None, False, False
    for s in STOP_SIGNALS:
        signal.signal(s, _on_stop)


def stop_at_startup() -> dict[int, Any]:
    """From now on the first stop signal raises :class:`StartupStopped`; one noted since
    :func:`watch_startup` raises it at once. Returns the previous handlers, for :func:`restore`."""
    previous = {s: signal.signal(s, _on_stop) for s in STOP_SIGNALS}
    if previous.get(signal.SIGTERM) is not _on_stop:  # not watched before: a fresh start
        _Startup.signum, _Startup.raised = None, False
    _Startup.armed = True
    if _Startup.signum is not None and not _Startup.raised:
        _Startup.raised = True
        raise StartupStopped(_Startup.signum)
    return previous


def restore(handlers: dict[int, Any]) -> None:
    """Put back what :func:`stop_at_startup` returned; stop signals no longer raise."""
    _Startup.armed = False
    for s, h in handlers.items():
        signal.signal(s, h)
