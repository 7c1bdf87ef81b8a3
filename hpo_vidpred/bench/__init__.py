"""Benchmarks in the package: ``hpo bench`` (:mod:`.step`: the training step of
:class:`hpo_vidpred.train.TrainStep` timed per architecture x cell x run variant) and the helpers
of the study benchmarks in ``benchmarks/`` (:mod:`.store`: budgets, the study-store clock, the
benchmark objective)."""

from __future__ import annotations

from .step import (
    VARIANTS,
    StepTimes,
    Variant,
    bench,
    bench_step,
    drawer,
    format_rows,
    peak_memory,
    recommend,
    switches,
    time_step,
    variants_for,
)
from .store import BenchObjective, StoreClock, ensure_budget, instrument_store, script_main

__all__ = [
    "VARIANTS",
    "BenchObjective",
    "StepTimes",
    "StoreClock",
    "Variant",
    "bench",
    "bench_step",
    "drawer",
    "ensure_budget",
    "format_rows",
    "instrument_store",
    "peak_memory",
    "recommend",
    "script_main",
    "switches",
    "time_step",
    "variants_for",
]
