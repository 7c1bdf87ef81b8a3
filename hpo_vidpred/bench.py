"""``hpo bench``: training-step throughput of the fixed configurations on this device.

For every architecture x cell at the seed's configuration (:func:`hpo_vidpred.archs.fixed_spec`)
and every run variant (float32; bf16 autocast; channels_last; ``torch.compile``; CUDA graphs via
``torch.compile(mode="reduce-overhead")``; and ``auto``, what
:func:`hpo_vidpred.train.resolve_options` turns on for the device), one row: milliseconds per
training step (batch drawing, forward, backward, Adam), samples per second, peak memory,
parameters and the share of the step spent on ``VideoData.train_batch``. The ``auto`` switches
of training are meant to follow these measurements; :func:`recommend` summarizes them per
switch.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (tensors only) and the process's peak
resident set on CPU (``VmHWM``, reset per row through ``/proc/self/clear_refs`` after handing freed
heap back with ``malloc_trim``), which includes the Python runtime, torch and the data set;
``mem_added_mb`` is the peak above what was in use before the row's model was built, and
``mem_kind`` says which measurement it is.

:class:`TrainStep` and :func:`time_step` are also what ``benchmarks/step_speed.py`` times the
reference implementation with, so both sides of that comparison run the same loop.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import functools
import gc
import inspect
import json
import math
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .budgets import BUDGETS, Budget
from .errors import HpoError
from .registry import Registry
from .specs import DataSpec, TrainSpec

__all__ = [
    "VARIANTS",
    "BenchObjective",
    "StepTimes",
    "TrainStep",
    "Variant",
    "bench",
    "cpu_model",
    "default_workers",
    "device_name",
    "ensure_budget",
    "format_rows",
    "instrument_store",
    "peak_memory",
    "recommend",
    "script_main",
    "time_step",
    "variants_for",
]


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One combination of the run switches; ``None`` means "what ``auto`` picks here"."""

    name: str
    bf16: bool | None = False
    channels_last: bool | None = False
    compile: str | None = None  # None: eager; "default" | "reduce-overhead" (CUDA graphs)
    cuda_only: bool = False
    auto: bool = False  # take every switch from train.resolve_options

    def resolve(self, device: torch.device) -> Variant:
        """This variant with ``auto`` switches replaced by what training uses on ``device``."""
        if not self.auto:
            return self
        from .train import resolve_options

        options = resolve_options(TrainSpec(device=str(device)))
        return dataclasses.replace(self, bf16=options.bf16, channels_last=options.channels_last,
                                   compile="default" if options.compile else None)


VARIANTS: Registry[Variant] = Registry("bench variant")
for _v in (
    Variant("auto", auto=True),  # the training defaults of this device
    Variant("fp32"),
    Variant("bf16", bf16=True),
    Variant("channels_last", channels_last=True),
    Variant("compile", compile="default"),
    Variant("cudagraphs", compile="reduce-overhead", cuda_only=True),
    Variant("bf16+channels_last", bf16=True, channels_last=True),
    Variant("bf16+compile", bf16=True, compile="default"),
    Variant("bf16+cudagraphs", bf16=True, compile="reduce-overhead", cuda_only=True),
):
    VARIANTS.register(_v.name)(_v)


def variants_for(device: torch.device, names: Iterable[str] | None = None) -> list[Variant]:
    """The variants to measure: ``names`` (``all`` = every one that runs on the device), or by
    default every variant on CUDA and only ``auto`` on CPU, where a full-size step takes seconds
    and compiling minutes (``--variants all`` measures the rest there too)."""
    names = list(names or [])
    if not names:
        names = ["all"] if device.type == "cuda" else ["auto"]
    if names == ["all"]:
        return [v for v in (VARIANTS.get(n) for n in VARIANTS.names())
                if device.type == "cuda" or not v.cuda_only]
    chosen = [VARIANTS.get(n) for n in names]
    for v in chosen:
        if v.cuda_only and device.type != "cuda":
            raise HpoError(f"variant {v.name} needs CUDA; this device is {device}")
    return chosen


# --------------------------------------------------------------------------- one training step
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainStep:
    """One training step as :func:`hpo_vidpred.train.train_and_evaluate` takes it: forward
    (closed loop over ``n_out`` frames), ``MSE(predicted, true) + aux_loss``, backward, Adam.

    ``variant`` (resolved) sets bf16 autocast, channels_last (model and frames; the frames are
    stored (B, T, H, W, C) so each ``x[:, t]`` is a channels_last view, as in training) and
    ``torch.compile``.
    """

    def __init__(self, model: nn.Module, variant: Variant, device: torch.device, n_in: int,
                 n_out: int, lr: float = 1e-3) -> None:
        self.device, self.variant, self.n_in, self.n_out = device, variant, n_in, n_out
        self.model = model.to(device)
        if variant.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.run = (torch.compile(self.model, mode=variant.compile) if variant.compile
                    else self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def layout(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` frames in the memory format the variant trains on."""
        if not self.variant.channels_last:
            return frames
        # stored (B, T, H, W, C), viewed (B, T, C, H, W)
        return frames.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)

    def drawer(self, data: Any, batch: int,
               generator: torch.Generator) -> Callable[[], torch.Tensor]:
        """A function drawing the next training batch of ``data`` in this step's layout."""
        return lambda: self.layout(data.train_batch(batch, generator))  # (B, T, C, H, W)

    def __call__(self, frames: torch.Tensor) -> None:
        """One optimizer step on ``frames (B, n_in + n_out, C, H, W)``."""
        self.model.train()
        target = frames[:, self.n_in:self.n_in + self.n_out]  # (B, n_out, C, H, W)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=bool(self.variant.bf16))
        with autocast:
            pred = self.run(frames[:, :self.n_in], self.n_out)
            loss = F.mse_loss(pred.frames.float(), target.float()) + pred.aux_loss.float()
        loss.backward()
        self.optimizer.step()


@dataclass
class StepTimes:
    """Wall times of timed steps, in milliseconds: drawing the batch and the whole step."""

    data_ms: list[float]
    step_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.step_ms) if self.step_ms else math.nan

    @property
    def data_share(self) -> float:
        return sum(self.data_ms) / sum(self.step_ms) if self.step_ms else math.nan


def time_step(step: Callable[[torch.Tensor], None], draw: Callable[[], torch.Tensor],
              device: torch.device, times: StepTimes | None = None) -> StepTimes:
    """Run ``step(draw())`` once, timed (device synchronized around the batch and the step), and
    append the times to ``times``."""
    times = times or StepTimes([], [])
    _sync(device)
    t0 = time.perf_counter()
    frames = draw()
    _sync(device)
    t1 = time.perf_counter()
    step(frames)
    _sync(device)
    t2 = time.perf_counter()
    times.data_ms.append(1000 * (t1 - t0))
    times.step_ms.append(1000 * (t2 - t0))
    return times


# --------------------------------------------------------------------------- memory
def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_cpu_peak() -> float:
    """Give freed heap back to the OS (glibc keeps it otherwise, so the resident set never falls
    between rows), reset the peak RSS and return the current RSS in MiB."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    return _status_mb("VmRSS") or 0.0


def _cpu_peak() -> float:
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def peak_memory(device: torch.device) -> tuple[Callable[[], float], Callable[[], float], str]:
    """``(reset, read, kind)`` of the peak-memory measurement on ``device``: ``reset()`` starts a
    new peak and returns the memory in use now, ``read()`` the peak since, both in MiB."""
    if device.type == "cuda":
        def reset() -> float:
            torch.cuda.reset_peak_memory_stats(device)
            return torch.cuda.memory_allocated(device) / 2**20

        return reset, lambda: torch.cuda.max_memory_allocated(device) / 2**20, \
            "cuda max_memory_allocated"
    if _status_mb("VmHWM") is not None:
        return _reset_cpu_peak, _cpu_peak, "cpu peak RSS of the process (VmHWM, reset per row)"
    return _reset_cpu_peak, _cpu_peak, "cpu peak RSS of the process since it started"


# --------------------------------------------------------------------------- hpo bench
def bench(
    data_spec: DataSpec,
    archs: list[str] | None = None,
    cells: list[str] | None = None,
    *,
    batch: int = 4,
    steps: int = 3,
    warmup: int | None = None,
    variants: list[str] | None = None,
    device: str = "auto",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Time the fixed configurations on ``data_spec``'s data, one row per arch x cell x variant.

    ``warmup`` untimed steps come first (default 1 eager, 3 compiled: compilation and CUDA-graph
    recording happen there); the reported time is the median of ``steps`` timed steps.
    """
    from . import archs as archs_mod
    from . import data as data_mod
    from .cells import CELLS
    from .train import resolve_device, seed_everything

    if batch < 1 or steps < 1:
        raise HpoError("--batch and --steps must be at least 1")
    dev = resolve_device(device)
    arch_names = archs or archs_mod.ARCHS.names()
    cell_names = cells or CELLS.names()
    for name in arch_names:
        archs_mod.ARCHS.get(name)
    for name in cell_names:
        CELLS.get(name)
    chosen = [v.resolve(dev) for v in variants_for(dev, variants)]
    data = data_mod.load(data_spec, dev)
    reset_mem, read_mem, mem_kind = peak_memory(dev)
    jobs = [(a, c, v) for a in arch_names for c in cell_names for v in chosen]
    rows = []
    with _Bar(progress, len(jobs)) as bar:
        for arch, cell, variant in jobs:
            bar.describe(f"{arch} {cell} {variant.name}")
            spec = archs_mod.fixed_spec(arch, data_spec.name, cell, channels=data_spec.channels)
            base_mb = reset_mem()  # the row's memory: model, gradients, Adam state, activations
            seed_everything(0)
            model = archs_mod.create_model(spec)
            n_params = archs_mod.count_params(model)
            step = TrainStep(model, variant, dev, data_spec.n_in, data_spec.n_out)
            draw = step.drawer(data, batch, data.generator(0))
            n_warm = warmup if warmup is not None else (3 if variant.compile else 1)
            for _ in range(n_warm):
                time_step(step, draw, dev)
            times = StepTimes([], [])
            for _ in range(steps):
                time_step(step, draw, dev, times)
                bar.advance(1 / steps)
            ms = times.median_ms
            rows.append({
                "arch": arch, "cell": cell, "data": data_spec.name, "device": device_name(dev),
                "variant": variant.name, "bf16": bool(variant.bf16),
                "channels_last": bool(variant.channels_last), "compile": variant.compile or "off",
                "batch": batch, "frames": [data_spec.n_in, data_spec.n_out],
                "size": [data_spec.height, data_spec.width], "params": n_params,
                "ms_step": round(ms, 2), "ms_step_min": round(min(times.step_ms), 2),
                "ms_data": round(statistics.median(times.data_ms), 3),
                "data_share": round(times.data_share, 4),
                "samples_per_s": round(1000 * batch / ms, 2),
                "peak_mem_mb": round(read_mem(), 1),
                "mem_added_mb": round(read_mem() - base_mb, 1), "mem_kind": mem_kind,
                "threads": torch.get_num_threads() if dev.type == "cpu" else None,
                "steps": steps, "warmup": n_warm, "torch": torch.__version__,
            })
            del step, model
            _free(dev)
    return rows


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # compiled graphs of the previous model are not reused


def device_name(device: torch.device) -> str:
    """``cpu (<model>)`` or ``cuda:N (<GPU name>)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_model()})"


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (``unknown`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def recommend(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per single switch (bf16, channels_last, compile, cudagraphs): the geometric-mean speedup
    over float32 eager across the measured arch x cell, and whether to turn it on (faster by more
    than 5%). Only switches with both rows measured appear."""
    by_key = {(r["arch"], r["cell"], r["variant"]): r["ms_step"] for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for switch in ("bf16", "channels_last", "compile", "cudagraphs"):
        ratios = [by_key[(a, c, "fp32")] / ms for (a, c, v), ms in by_key.items()
                  if v == switch and (a, c, "fp32") in by_key and ms > 0]
        if ratios:
            gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            out[switch] = {"speedup": round(gmean, 3), "turn_on": gmean > 1.05,
                           "pairs": len(ratios)}
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table, followed by the per-switch recommendation."""
    header = ("arch", "cell", "variant", "params", "ms/step", "samples/s", "data %", "peak MB",
              "added MB")
    lines = [header] + [
        (r["arch"], r["cell"], r["variant"], f"{r['params']:,}", f"{r['ms_step']:.1f}",
         f"{r['samples_per_s']:.1f}", f"{100 * r['data_share']:.1f}",
         f"{r['peak_mem_mb']:.0f}", f"{r['mem_added_mb']:.0f}")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in
                      enumerate(zip(line, widths))).rstrip() for line in lines]
    if rows:
        r = rows[0]
        text.append(f"device {r['device']}, batch {r['batch']}, frames {r['frames'][0]} -> "
                    f"{r['frames'][1]} at {r['size'][0]}x{r['size'][1]}, median of {r['steps']} "
                    f"steps" + (f", {r['threads']} threads" if r["threads"] else "")
                    + f"; memory: {r['mem_kind']}")
    for switch, rec in recommend(rows).items():
        text.append(f"{switch}: {rec['speedup']:.2f}x vs float32 eager -> "
                    f"{'turn on' if rec['turn_on'] else 'leave off'}")
    return "\n".join(text)


class _Bar:
    """A rich progress bar on stderr over the rows (silent when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, amount: float) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)


# --------------------------------------------------------------------------- study benchmarks
# Helpers for benchmarks/workers_per_device.py, hpo_efficiency.py and store_overhead.py. They live
# in the package so that spawned `hpo run` workers can unpickle them.
def ensure_budget(budget: Budget) -> None:
    """Register ``budget`` (a benchmark's own compute level) in this process if it is not yet."""
    if budget.name not in BUDGETS:
        BUDGETS.register(budget.name)(budget)


class _StoreClock:
    """Wall time spent inside the study store's methods, per thread kind, in this process."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.seconds = {"main": 0.0, "heartbeat": 0.0, "lock": 0.0}
        self.calls = {"main": 0, "heartbeat": 0, "lock": 0}
        self.started = time.perf_counter()
        self.objective_s = 0.0  # inside the objective (training and its own store calls)
        self.outside_s = 0.0  # store calls between trials (ask, tell, counting, stale checks)
        self.in_trial = False
        self.trials = 0

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] += seconds
        self.calls[kind] += 1
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
                "trials": self.trials, "wall_s": time.perf_counter() - self.started}


_CLOCK: _StoreClock | None = None


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
            clock.add("main" if main else "heartbeat", time.perf_counter() - t0)
    wrapper._hpo_timed = True  # type: ignore[attr-defined]
    return wrapper


def instrument_store() -> _StoreClock:
    """Time every method of Optuna's RDB storage (SQLite and PostgreSQL alike) and the waits for
    ``hpo run``'s study lock, from now on, in this process. Calls made by the heartbeat thread
    are counted apart (they do not hold up training). Returns the clock (see ``totals()``)."""
    global _CLOCK
    import optuna

    from . import workers

    _CLOCK = _StoreClock()
    for cls in optuna.storages.RDBStorage.__mro__:
        if cls is object:
            continue
        for name, value in list(vars(cls).items()):
            if name.startswith("__") or not inspect.isfunction(value) \
                    or getattr(value, "_hpo_timed", False):
                continue
            if getattr(optuna.storages.RDBStorage, name) is value:  # not overridden below
                setattr(optuna.storages.RDBStorage, name, _timed_method(value))
    if not getattr(workers.study_lock, "_hpo_timed", False):
        lock = workers.study_lock

        @contextlib.contextmanager
        def timed_lock(*args: Any, **kwargs: Any) -> Iterator[None]:
            t0 = time.perf_counter()
            with lock(*args, **kwargs):
                if _CLOCK is not None:
                    _CLOCK.add("lock", time.perf_counter() - t0)
                yield

        timed_lock._hpo_timed = True  # type: ignore[attr-defined]
        workers.study_lock = timed_lock
    return _CLOCK


@dataclass(frozen=True)
class BenchObjective:
    """``hpo run``'s real objective (:func:`hpo_vidpred.study.train_trial`) for benchmarks: it
    registers the benchmark's ``budget`` in each worker process first and, with ``timings``
    (a folder), times the study store there and writes ``<timings>/store-<pid>.json`` after every
    trial and at exit."""

    budget: Budget
    timings: str | None = None

    def check(self, plan: Any) -> None:
        from .workers import TrainObjective

        TrainObjective().check(plan)

    def prepare(self, plan: Any, device: str) -> None:
        from .workers import TrainObjective

        # hpo run shares the cores out through OMP_NUM_THREADS, which torch reads only when it
        # is first imported; a benchmark script's module (re-imported by spawn) already did.
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) != torch.get_num_threads():
            torch.set_num_threads(int(threads))
        ensure_budget(self.budget)
        TrainObjective().prepare(plan, device)  # data loading is not part of the measured time
        if self.timings:
            instrument_store()
            atexit.register(self.flush)

    def __call__(self, trial: Any, plan: Any, device: str, artifact_store: Any) -> Any:
        from .study import train_trial

        self.flush()
        if _CLOCK is not None:
            _CLOCK.in_trial = True
        t0 = time.perf_counter()
        try:
            return train_trial(trial, plan, device, artifact_store)
        finally:
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
