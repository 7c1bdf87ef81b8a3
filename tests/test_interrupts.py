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
