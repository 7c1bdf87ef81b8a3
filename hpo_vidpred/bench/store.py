"""Helpers of the study benchmarks (``benchmarks/workers_per_device.py``, ``hpo_efficiency.py``
and ``store_overhead.py``): a benchmark's own compute budget, the study-store clock and the
objective that carries both into ``hpo run``'s workers. They live in the package so that spawned
workers can unpickle them.

:class:`BenchObjective` is ``hpo run``'s real objective
(:class:`hpo_vidpred.study.objective.TrainObjective`) with two additions: it registers the
benchmark's budget in each worker process and, when asked, times the study store there
(:func:`instrument_store`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..budgets import BUDGETS, Budget
from ..errors import HpoError

__all__ = ["BenchObjective", "StoreClock", "ensure_budget", "instrument_store", "script_main"]


def ensure_budget(budget: Budget) -> None:
    """Register ``budget`` (a benchmark's own compute level) in this process if it is not yet."""
    if budget.name not in BUDGETS:
        BUDGETS.register(budget.name)(budget)


# --------------------------------------------------------------------------- the store clock
class StoreClock:
    """Wall time spent inside the study store's methods, per thread kind, in this process."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.seconds = {"main": 0.0, "heartbeat": 0.0, "lock": 0.0}
        self.calls = {"main": 0, "heartbeat": 0, "lock": 0}
        self.methods: dict[str, list] = {}  # main thread: method -> [calls, seconds]
        self.started = time.perf_counter()
        self.objective_s = 0.0  # inside the objective (training and its own store calls)
        self.outside_s = 0.0  # store calls between trials (ask, tell, counting, stale checks)
        self.in_trial = False
        self.trials = 0

    def add(self, kind: str, seconds: float, method: str = "") -> None:
        self.seconds[kind] += seconds
        self.calls[kind] += 1
        if kind == "main" and method:
            tally = self.methods.setdefault(method, [0, 0.0])
            tally[0] += 1
            tally[1] += seconds
        if kind == "main" and not self.in_trial:
            self.outside_s += seconds

    def totals(self) -> dict[str, Any]:
        """Seconds and calls so far; ``busy_s`` = objective + store and lock time outside it
        (what the worker spent on trials, its idle waits for other workers left out)."""
        return {"pid": os.getpid(), "store_s": self.seconds["main"],
                "lock_s": self.seconds["lock"], "heartbeat_s": self.seconds["heartbeat"],
                "store_calls": self.calls["main"], "lock_calls": self.calls["lock"],
                "heartbeat_calls": self.calls["heartbeat"], "objective_s": self.objective_s,
                "busy_s": self.objective_s + self.outside_s + self.seconds["lock"],
                "trials": self.trials, "wall_s": time.perf_counter() - self.started,
                "methods": {k: [n, round(t, 6)] for k, (n, t) in sorted(self.methods.items())}}


_CLOCK: StoreClock | None = None


def _timed_method(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        clock = _CLOCK
        if clock is None or getattr(clock.local, "depth", 0):  # only the outermost call counts
            return method(*args, **kwargs)
        clock.local.depth = 1
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            clock.local.depth = 0
            main = threading.current_thread() is threading.main_thread()
            clock.add("main" if main else "heartbeat", time.perf_counter() - t0, method.__name__)
    wrapper._hpo_timed = True  # type: ignore[attr-defined]
    return wrapper


def instrument_store() -> StoreClock:
    """Time every method of Optuna's RDB storage (SQLite and PostgreSQL alike) and the waits for
    ``hpo run``'s study lock (``hpo_vidpred.study.trial.study_lock``), from now on, in this
    process. Calls made by the heartbeat thread are counted apart (they do not hold up
    training). Returns the clock (see ``totals()``)."""
    global _CLOCK
    import optuna

    from ..study import trial as workers  # where the worker takes the study lock

    _CLOCK = StoreClock()
    for cls in optuna.storages.RDBStorage.__mro__:
        if cls is object:
            continue
        for name, value in list(vars(cls).items()):
            if name.startswith("__") or not inspect.isfunction(value) \
                    or getattr(value, "_hpo_timed", False):
                continue
            if getattr(optuna.storages.RDBStorage, name) is value:  # not overridden below
                setattr(optuna.storages.RDBStorage, name, _timed_method(value))
    from ..store.rdb import Storage

    for name, value in list(vars(Storage).items()):  # the store's own calls (batched attributes)
        if inspect.isfunction(value) and not hasattr(optuna.storages.RDBStorage, name) \
                and not getattr(value, "_hpo_timed", False):
            setattr(Storage, name, _timed_method(value))
    if not getattr(workers.study_lock, "_hpo_timed", False):
        lock = workers.study_lock

        @contextlib.contextmanager
        def timed_lock(*args: Any, **kwargs: Any) -> Iterator[Any]:
            t0 = time.perf_counter()
            with lock(*args, **kwargs) as hold:
                if _CLOCK is not None:
                    _CLOCK.add("lock", time.perf_counter() - t0)
                yield hold

        timed_lock._hpo_timed = True  # type: ignore[attr-defined]
        workers.study_lock = timed_lock
    return _CLOCK


# --------------------------------------------------------------------------- the objective
_INNER: dict[str, Any] = {}


@dataclass(frozen=True)
class BenchObjective:
    """``hpo run``'s real objective (:class:`hpo_vidpred.study.objective.TrainObjective`) for
    benchmarks: it registers the benchmark's ``budget`` in each worker process first and, with
    ``timings`` (a folder), times the study store there and writes
    ``<timings>/store-<pid>.json`` after every trial and at exit."""

    budget: Budget
    timings: str | None = None

    @staticmethod
    def _inner() -> Any:
        """One objective per process, as ``hpo run``'s workers have (it keeps the baselines)."""
        from ..study.objective import TrainObjective

        if "inner" not in _INNER:
            _INNER["inner"] = TrainObjective()
        return _INNER["inner"]

    def check(self, plan: Any) -> None:
        self._inner().check(plan)

    def prepare(self, plan: Any, device: str) -> None:
        ensure_budget(self.budget)
        self._inner().prepare(plan, device)  # data loading is not part of the measured time
        if self.timings:
            instrument_store()
            atexit.register(self.flush)

    def baselines(self, plan: Any, device: str) -> dict[str, Any] | None:
        """The trivial predictors' metrics the study records (once per study, by a worker)."""
        return self._inner().baselines(plan, device)

    def __call__(self, trial: Any, plan: Any, device: str, artifact_store: Any,
                 eta: Callable[[float], None] | None = None) -> Any:
        self.flush()
        if _CLOCK is not None:
            _CLOCK.in_trial = True
        t0 = time.perf_counter()
        cuda = device.startswith("cuda")
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(device)
        try:
            return self._inner()(trial, plan, device, artifact_store, eta)
        finally:
            if cuda:  # what one worker's trial holds on the GPU (workers_per_device.py)
                trial.set_user_attr("peak_gpu_mb", torch.cuda.max_memory_allocated(device) / 2**20)
            if _CLOCK is not None:
                _CLOCK.objective_s += time.perf_counter() - t0
                _CLOCK.in_trial = False
                _CLOCK.trials += 1

    def flush(self) -> None:
        """Write this process's store timings (no-op without ``timings``)."""
        if self.timings and _CLOCK is not None and Path(self.timings).is_dir():
            path = Path(self.timings) / f"store-{os.getpid()}.json"
            path.write_text(json.dumps(_CLOCK.totals()))


def script_main(main: Callable[[], Any]) -> None:
    """Run a benchmark script's ``main``; a user error is one line and exit code 2."""
    try:
        main()
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
