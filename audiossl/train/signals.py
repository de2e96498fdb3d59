"""How a training stops on a signal: which signals, the exit code, and the handler of the start-up.

SIGTERM and SIGUSR1 (Slurm's preemption and ``--signal`` warning) stop a training. Inside the
training loop the trainer finishes the current update, saves and exits ``EXIT_REQUEUE`` (75), which
``queue.pl --requeue`` resubmits. Before that loop, through imports, data and model building and
checkpoint loading, :func:`stop_at_startup` is in force: the first stop signal raises
:class:`StartupStopped` at once, wherever the process is, and the entry point exits 75 too: nothing
was trained since the last checkpoint, so nothing is lost, and the requeued job resumes from that
checkpoint. (The same handler is back in force once the loop is over.) :func:`watch_startup`, the
entry point's first line, notes a signal that comes before its ``try`` is entered. A stop raised
inside an import can come out as an ImportError (a C extension's initialisation turns it into one:
:func:`stop_of` still tells it), or be swallowed by an optional-dependency fallback: then a watchdog
raises it again shortly, and the trainer at the latest as it takes over (:func:`take_over`).

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
    alarm_handler: Any = signal.SIG_DFL  # SIGALRM's handler before the watchdog took it


WATCHDOG_S = 2.0  # after a stop was raised: raise it again if the start-up is still going on then


def _in_import(frame: Any) -> bool:
    """Whether ``frame`` runs inside an import (importlib's machinery is on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _arm_watchdog(seconds: float) -> None:
    previous = signal.signal(signal.SIGALRM, _on_watchdog)
    if previous is not _on_watchdog:
        _Startup.alarm_handler = previous
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _raise_stop() -> None:
    """Raise StartupStopped for the noted signal, once (a second signal, to the process group and
    then again from a launcher, must not interrupt the unwinding). The watchdog raises it again if
    the start-up goes on: raised inside an import, an exception can be swallowed by the importer's
    optional-dependency fallback (C extensions turn it into an ImportError)."""
    if not _Startup.armed or _Startup.raised or _Startup.signum is None:
        return
    _Startup.raised = True
    _arm_watchdog(WATCHDOG_S)
    raise StartupStopped(_Startup.signum)


def _on_stop(signum: int, frame: Any) -> None:
    if _Startup.signum is None:
        _Startup.signum = signum
    _raise_stop()


def _on_watchdog(signum: int, frame: Any) -> None:
    """The stop was raised a while ago and the start-up still goes on (the entry point's handler
    would have disarmed it): it was swallowed. Raise it again, outside any import."""
    if not _Startup.armed or _Startup.signum is None:
        return
    if _in_import(frame):
        _arm_watchdog(0.05)
        return
    _arm_watchdog(WATCHDOG_S)
    raise StartupStopped(_Startup.signum)


def stop_of(e: BaseException) -> StartupStopped | None:
    """The stop that ``e`` is or comes from, else None: a StartupStopped, or any exception once one
    was raised (a C extension interrupted in its initialisation turns it into an ImportError,
    numpy's for one, cutting the chain)."""
    if isinstance(e, StartupStopped):
        return e
    if _Startup.raised and _Startup.signum is not None:
        return StartupStopped(_Startup.signum)
    return None


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


def _cancel_watchdog() -> None:
    if signal.getsignal(signal.SIGALRM) is _on_watchdog:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _Startup.alarm_handler)


def take_over() -> None:
    """Called as the training loop is about to take stop signals over: a stop of the start-up that
    was swallowed (see :func:`_raise_stop`) is raised now, at the latest."""
    _cancel_watchdog()
    if _Startup.armed and _Startup.signum is not None:
        _Startup.raised = True
        raise StartupStopped(_Startup.signum)


def restore(handlers: dict[int, Any]) -> None:
    """Put back what :func:`stop_at_startup` returned; stop signals no longer raise."""
    _Startup.armed = False
    _cancel_watchdog()
    for s, h in handlers.items():
        signal.signal(s, h)
