"""Ctrl-C and SIGTERM during a study: turned into ``KeyboardInterrupt`` reliably, so that the
running trial can be failed and queued again (:mod:`hpo_vidpred.study.pool`).

Python drops an exception raised while it runs a weakref callback or finalizer ("Exception ignored
in ..."); a single SIGTERM from a batch scheduler could be lost that way mid-training. Until the
interrupt is taken (:func:`take_interrupt`, first thing in every ``except KeyboardInterrupt``), it
is raised again every second, and the dropped copy is not printed (a traceback after the
one clear line). An interrupt that arrives inside the store's database code (SQLAlchemy, a
driver, Optuna's storage, ours in ``store``, a weakref callback) waits, for up to
:data:`MAX_WAIT_S`, until that code has returned: cut there, a connection could keep SQLite's
write lock, and the clean-up that fails and queues the trial again found the store locked
(about one Ctrl-C in three in a test's warm-started trial).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deferred", "install_interrupts", "interrupts", "take_interrupt"]

_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))
_pending = False  # an interrupt was signalled and no handler has taken it yet
_deferring = 0  # inside deferred(): an interrupt waits for the block's end


MAX_WAIT_S = 5.0  # the longest an interrupt waits for the store's code to return
_IN_STORE = ("/sqlalchemy/", "/optuna/storages/", "/psycopg/", "/sqlite3/", "weakref.py",
             "/hpo_vidpred/store/")
_signalled_at: float | None = None  # when the pending interrupt arrived


def _in_store(frame: Any) -> bool:
    """Whether ``frame`` or a caller runs the store's database code (see the module's text)."""
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _IN_STORE):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM -> KeyboardInterrupt. Python drops an exception raised while it runs a
    weakref callback or finalizer ("Exception ignored in ..."), so until :func:`take_interrupt`
    runs, the interrupt is raised again every second (SIGALRM); inside the store's code it is
    tried again every 0.1 s instead, until that code has returned or :data:`MAX_WAIT_S`."""
    global _pending, _signalled_at
    _pending = True
    if _signalled_at is None:
        _signalled_at = time.monotonic()
    wait = hasattr(signal, "setitimer") and _in_store(frame) and \
        time.monotonic() - _signalled_at < MAX_WAIT_S
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0.1 if wait else 1.0)
    if not _deferring and not wait:
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
    global _pending, _signalled_at
    _pending, _signalled_at = False, None
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
