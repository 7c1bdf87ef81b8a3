"""``hpo bench``: training-step throughput of the fixed configurations on this device.

For every architecture x cell at the seed's configuration (:func:`hpo_vidpred.archs.fixed_spec`)
and every run variant (float32; bf16 autocast; channels_last; ``torch.compile``; CUDA graphs via
``torch.compile(mode="reduce-overhead")``; and ``auto``, what
:func:`hpo_vidpred.devices.resolve_options` turns on for the device), one row: milliseconds per
training step (batch drawing plus :class:`hpo_vidpred.train.TrainStep`, the optimizer step of
every training run: schedule, forward, loss, backward, gradient clipping, Adam), samples per
second, peak memory, parameters and the share of the step spent on ``VideoData.train_batch``.
The ``auto`` switches of training are meant to follow these measurements; :func:`recommend`
summarizes them per switch.

A :class:`Variant` resolves to the :class:`~hpo_vidpred.devices.RunOptions` the step is built
with; the step's :class:`~hpo_vidpred.specs.TrainSpec` is ``TrainSpec()`` (the seed's optimizer
settings) unless :func:`bench_step` is given another.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (tensors only) and the process's peak
resident set on CPU (``VmHWM``, reset per row through ``/proc/self/clear_refs`` after handing freed
heap back with ``malloc_trim``), which includes the Python runtime, torch and the data set;
``mem_added_mb`` is the peak above what was in use before the row's model was built, and
``mem_kind`` says which measurement it is.

:func:`bench_step` and :func:`time_step` are also what ``benchmarks/step_speed.py`` times the
reference implementation with, so both sides of that comparison run the training loop's step.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import devices
from ..devices import RunOptions
from ..errors import HpoError
from ..registry import Registry
from ..specs import DataSpec, TrainSpec
from ..train import TrainStep
from ..ui import Bar

__all__ = [
    "VARIANTS",
    "StepTimes",
    "Variant",
    "bench",
    "bench_step",
    "drawer",
    "format_rows",
    "peak_memory",
    "recommend",
    "switches",
    "time_step",
    "variants_for",
]


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One combination of the run switches, or ``auto``: what training turns on by default."""

    name: str
    bf16: bool = False
    channels_last: bool = False
    compile: str | None = None  # None: eager; a torch.compile mode ("reduce-overhead": CUDA graphs)
    cuda_only: bool = False
    auto: bool = False  # take every switch from devices.resolve_options(TrainSpec())

    def resolve(self, device: str | torch.device) -> RunOptions:
        """The run options of this variant on ``device`` (``auto``: the training defaults)."""
        device = devices.resolve_device(device)
        if self.auto:
            return devices.resolve_options(TrainSpec(device=str(device)))
        return RunOptions(device=device, bf16=self.bf16, channels_last=self.channels_last,
                          compile=self.compile is not None,
                          compile_mode=self.compile or "default")


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


def switches(options: RunOptions) -> dict[str, Any]:
    """The switches of ``options`` as benchmark rows record them (``compile``: mode or off)."""
    return {"bf16": options.bf16, "channels_last": options.channels_last,
            "compile": options.compile_mode if options.compile else "off"}


# --------------------------------------------------------------------------- one training step
def bench_step(model: nn.Module, options: RunOptions, n_in: int, n_out: int,
               spec: TrainSpec | None = None) -> TrainStep:
    """The step a benchmark times: :class:`hpo_vidpred.train.TrainStep`, the one every training
    run takes, with ``spec`` (default ``TrainSpec()``) on ``options`` (device, bf16,
    channels_last, compilation). Moves ``model`` to the device (and compiles it)."""
    spec = dataclasses.replace(spec if spec is not None else TrainSpec(),
                               device=str(options.device),
                               bf16="on" if options.bf16 else "off",
                               channels_last="on" if options.channels_last else "off",
                               compile=options.compile)  # what runs, for whoever reads step.spec
    return TrainStep(model, spec, options, n_in, n_out)


def drawer(step: TrainStep, data: Any, batch: int,
           generator: torch.Generator) -> Callable[[], torch.Tensor]:
    """A function drawing the next training batch of ``data`` in ``step``'s layout, as the
    training loop draws it."""
    return lambda: step.layout(data.train_batch(batch, generator))  # (B, T, C, H, W)


@dataclass
class StepTimes:
    """Wall times of timed steps, in milliseconds (drawing the batch and the whole step), and
    each step's training loss."""

    data_ms: list[float]
    step_ms: list[float]
    losses: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.step_ms) if self.step_ms else math.nan

    @property
    def data_share(self) -> float:
        return sum(self.data_ms) / sum(self.step_ms) if self.step_ms else math.nan


def time_step(step: TrainStep, draw: Callable[[], torch.Tensor], index: int,
              times: StepTimes | None = None) -> StepTimes:
    """Run optimizer step ``index`` (from 0: the schedule's step) of ``step`` on ``draw()``
    once, timed (device synchronized around the batch and the step), and append the times and
    the loss to ``times`` (a new one when None)."""
    device = step.options.device
    times = times if times is not None else StepTimes([], [])
    devices.sync(device)
    t0 = time.perf_counter()
    frames = draw()
    devices.sync(device)
    t1 = time.perf_counter()
    loss = step(frames, index)
    devices.sync(device)
    t2 = time.perf_counter()
    times.data_ms.append(1000 * (t1 - t0))
    times.step_ms.append(1000 * (t2 - t0))
    times.losses.append(float(loss))  # after the clock stopped; the device is synchronized
    return times


# --------------------------------------------------------------------------- memory
def _status_mb(field_name: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field_name}:"):
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
    recording happen there); the reported time is the median of ``steps`` timed steps. The
    steps are those of a training run from its start (:func:`bench_step`, ``TrainSpec()``).
    """
    from .. import archs as archs_mod
    from .. import data as data_mod
    from ..cells import CELLS

    if batch < 1 or steps < 1:
        raise HpoError("--batch and --steps must be at least 1")
    dev = devices.resolve_device(device)
    arch_names = archs or archs_mod.ARCHS.names()
    cell_names = cells or CELLS.names()
    for name in arch_names:
        archs_mod.ARCHS.get(name)
    for name in cell_names:
        CELLS.get(name)
    chosen = [(v, v.resolve(dev)) for v in variants_for(dev, variants)]
    data = data_mod.load(data_spec, dev)
    reset_mem, read_mem, mem_kind = peak_memory(dev)
    jobs = [(a, c, v, o) for a in arch_names for c in cell_names for v, o in chosen]
    train_spec = TrainSpec(batch_size=batch)
    rows = []
    with Bar(progress) as bar:
        bar.add(len(jobs))
        for arch, cell, variant, options in jobs:
            bar.update(description=f"{arch} {cell} {variant.name}")
            spec = archs_mod.fixed_spec(arch, data_spec.name, cell, channels=data_spec.channels)
            base_mb = reset_mem()  # the row's memory: model, gradients, Adam state, activations
            devices.seed_everything(0)
            model = archs_mod.create_model(spec)
            n_params = archs_mod.count_params(model)
            step = bench_step(model, options, data_spec.n_in, data_spec.n_out, train_spec)
            draw = drawer(step, data, batch, data.generator(0))
            n_warm = warmup if warmup is not None else (3 if options.compile else 1)
            for i in range(n_warm):
                time_step(step, draw, i)
            times = StepTimes([], [])
            for i in range(n_warm, n_warm + steps):
                time_step(step, draw, i, times)
                bar.update(advance=1 / steps)
            ms = times.median_ms
            rows.append({
                "arch": arch, "cell": cell, "data": data_spec.name, "device": devices.name(dev),
                "variant": variant.name, **switches(options),
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
            del step, model, draw
            _free(dev)
    return rows


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # compiled graphs of the previous model are not reused


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
