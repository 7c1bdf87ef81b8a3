"""Interrupts that Python drops in a finalizer are raised again later; their dropped copy is not
printed after the run's one clear line, and other unraisable errors still are."""

from __future__ import annotations

import gc
import sys

from hpo_vidpred.interrupts import interrupts


class _RaisesOnDelete:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __del__(self) -> None:
        raise self.exc


def test_a_dropped_interrupt_is_not_printed_and_other_errors_are(capfd) -> None:
    before = sys.unraisablehook
    with interrupts():
        obj = _RaisesOnDelete(KeyboardInterrupt())
        del obj
        gc.collect()
        assert "Exception ignored" not in capfd.readouterr().err
        obj = _RaisesOnDelete(ValueError("a real error in a finalizer"))
        del obj
        gc.collect()
        err = capfd.readouterr().err
    assert "a real error in a finalizer" in err and "Exception ignored" in err
    assert "KeyboardInterrupt" not in err
    assert sys.unraisablehook is before


def test_an_interrupt_inside_the_stores_code_waits_until_it_returned() -> None:
    """Cut inside SQLAlchemy, a connection could keep SQLite's write lock: there the interrupt
    waits (and is raised on the next try outside), elsewhere it is raised at once."""
    import signal

    import pytest

    from hpo_vidpred import interrupts as module

    namespace: dict = {}
    exec(compile("def inside(handler, frame_of):\n    handler(2, frame_of())\n",
                 "/venv/site-packages/sqlalchemy/engine/fake.py", "exec"), namespace)
    with interrupts():
        namespace["inside"](module._on_signal, sys._getframe)  # waits: no exception
        assert module._pending
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 0.1  # tried again soon
        with pytest.raises(KeyboardInterrupt):
            module._on_signal(signal.SIGINT, sys._getframe())  # outside: raised
        module.take_interrupt()
        module._signalled_at = -1e9  # waited longer than MAX_WAIT_S: raised even inside
        with pytest.raises(KeyboardInterrupt):
            namespace["inside"](module._on_signal, sys._getframe)
        module.take_interrupt()
    assert not module._pending and signal.getitimer(signal.ITIMER_REAL)[0] == 0
