"""How a training stops on a signal: which signals, the exit code, and the handler of the start-up.

SIGTERM and SIGUSR1 (Slurm's preemption and ``--signal`` warning) stop a training. Inside the
training loop the trainer finishes the current update, saves and exits ``EXIT_REQUEUE`` (75), which
``queue.pl --requeue`` resubmits. Before that loop, through imports, data and model building and
checkpoint loading, :func:`stop_at_startup` is in force: the first stop signal raises
:class:`StartupStopped` at once, wherever the process is, and the entry point exits 75 too: nothing
was trained since the last checkpoint, so nothing is lost, and the requeued job resumes from that
checkpoint. (The same handler is back in force once the loop is over.) :func:`watch_startup`, the
entry point's first line, notes a signal that comes before its ``try`` is entered. A signal that
comes inside an import is raised as soon as the import is over (an exception raised inside a C
extension's initialisation can be turned into an ImportError and swallowed), at the latest when the
trainer takes over (:func:`take_over`).

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
    alarm_handler: Any = signal.SIG_DFL  # SIGALRM's handler before a retry took it


RETRY_S = 0.05  # how soon a stop that came inside an import is tried again


def _in_import(frame: Any) -> bool:
    """Whether ``frame`` runs inside an import (importlib's machinery is on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_stop(frame: Any) -> None:
    """Raise StartupStopped for the noted signal, once, unless inside an import: an exception raised
    there can come out of a C extension's initialisation as an ImportError, which the importer's
    optional-dependency fallback then swallows (the stop would be lost and the start-up go on
    half-imported). Then SIGALRM tries again shortly, until the import is over."""
    if not _Startup.armed or _Startup.raised or _Startup.signum is None:
        return
    if _in_import(frame):
        previous = signal.signal(signal.SIGALRM, _on_retry)
        if previous is not _on_retry:
            _Startup.alarm_handler = previous
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _Startup.raised = True  # a second signal (to the process group, then again from a launcher)
    raise StartupStopped(_Startup.signum)  # must not interrupt the unwinding


def _on_stop(signum: int, frame: Any) -> None:
    if _Startup.signum is None:
        _Startup.signum = signum
    _raise_stop(frame)


def _on_retry(signum: int, frame: Any) -> None:
    _raise_stop(frame)


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


def _cancel_retry() -> None:
    if signal.getsignal(signal.SIGALRM) is _on_retry:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _Startup.alarm_handler)


def take_over() -> None:
    """Called as the training loop is about to take stop signals over: a stop that came inside an
    import and waits for it to end (:func:`_raise_stop`) is raised now, as any stop of the start-up."""
    _cancel_retry()
    if _Startup.armed and not _Startup.raised and _Startup.signum is not None:
        _Startup.raised = True
        raise StartupStopped(_Startup.signum)


def restore(handlers: dict[int, Any]) -> None:
    """Put back what :func:`stop_at_startup` returned; stop signals no longer raise."""
    _Startup.armed = False
    _cancel_retry()
    for s, h in handlers.items():
        signal.signal(s, h)
