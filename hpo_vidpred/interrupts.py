"""Ctrl-C and SIGTERM during a study: turned into ``KeyboardInterrupt`` reliably, so that the
running trial can be failed and queued again (:mod:`hpo_vidpred.study.pool`).

Python drops an exception raised while it runs a weakref callback or finalizer ("Exception ignored
in ..."); a single SIGTERM from a batch scheduler could be lost that way mid-training. Until the
interrupt is taken (:func:`take_interrupt`, first thing in every ``except KeyboardInterrupt``), it
is raised again every second, and the dropped copy is not printed (a traceback after the
one clear line).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deferred", "install_interrupts", "interrupts", "take_interrupt"]

_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))
_pending = False  # an interrupt was signalled and no handler has taken it yet
_deferring = 0  # inside deferred(): an interrupt waits for the block's end


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM -> KeyboardInterrupt. Python drops an exception raised while it runs a
    weakref callback or finalizer ("Exception ignored in ..."), so until :func:`take_interrupt`
    runs, the interrupt is raised again every second (SIGALRM)."""
    global _pending
    _pending = True
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 1.0)
    if not _deferring:
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """An interrupt signalled inside the block is raised when it ends: for a step that must not
    be cut in two, such as a trial created in the store and the clean-up that fails it on an
    interrupt put in place (a SIGTERM between the two left a fixed trial RUNNING)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if _pending and not _deferring:
        raise KeyboardInterrupt


def _on_alarm(signum: int, frame: Any) -> None:
    if _pending:
        _on_signal(signum, frame)


def take_interrupt() -> None:
    """Called first in every ``except KeyboardInterrupt``: stop re-raising, and let the clean-up
    (failing and re-queueing the trial) finish whatever else arrives."""
    global _pending
    _pending = False
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0.0)
    if threading.current_thread() is threading.main_thread():
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _unraisable(args: Any) -> None:
    """``sys.unraisablehook``: an interrupt that Python dropped in a finalizer or weakref callback
    is raised again by the alarm where it can be caught, so its 'Exception ignored in ...'
    traceback is noise after the run's one clear line; anything else is reported as usual."""
    if isinstance(args.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(args)


def install_interrupts() -> dict:
    """Route SIGINT, SIGTERM (a batch scheduler, ``terminate()``) and SIGALRM to the handlers above;
    returns the previous handlers. Only the main thread can do this; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.signal(sig, _on_signal) for sig in _STOP_SIGNALS}
    sys.unraisablehook = _unraisable
    if hasattr(signal, "SIGALRM"):
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_alarm)
    return previous


@contextmanager
def interrupts() -> Iterator[None]:
    """While running, Ctrl-C and SIGTERM stop the run cleanly: the running trial is queued again."""
    hook = sys.unraisablehook
    previous = install_interrupts()
    try:
        yield
    finally:
        take_interrupt()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook
