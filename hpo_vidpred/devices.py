"""Devices, run switches, worker counts and seeding: the one place each is decided.

- :func:`resolve_device`: a device name (``auto | cpu | cuda | cuda:N``) -> ``torch.device``;
- :func:`resolve_options`: a :class:`~hpo_vidpred.specs.TrainSpec`'s ``auto|on|off`` switches
  (bf16, channels_last, compile) for its device;
- :func:`resolve_devices` / :func:`default_workers` / :func:`resolve_workers`: which devices an
  ``hpo run`` spreads its workers over, and how many workers it starts;
- :func:`seed_everything`, :func:`torch_threads`, :func:`sync`, :func:`autocast`, :func:`name`.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import HpoError

__all__ = [
    "CPU_MAX_WORKERS",
    "CUDA_WORKERS",
    "RunOptions",
    "autocast",
    "cpu_model",
    "default_workers",
    "name",
    "resolve_device",
    "resolve_devices",
    "resolve_options",
    "resolve_workers",
    "seed_everything",
    "sync",
    "torch_threads",
]

# Workers per device when --workers is not given (benchmarks/workers_per_device.py measures them).
CUDA_WORKERS = 4  # trials at once per GPU (to be confirmed on a GPU with workers_per_device.py)
CPU_MAX_WORKERS = 4  # one per core, at most this many (memory: every worker holds its data)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; a bad or unusable name is an
    :class:`HpoError`."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except (RuntimeError, ValueError):
        raise HpoError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise HpoError(f"device {device!r} asked for but CUDA is not available on this machine; "
                       "use cpu (or auto)")
    return out


@dataclass(frozen=True)
class RunOptions:
    """The device-dependent switches resolved from a TrainSpec (``auto`` -> on/off)."""

    device: torch.device
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode; "reduce-overhead": CUDA graphs


def _switch(value: bool | str, auto: bool, what: str) -> bool:
    table = {"auto": auto, "on": True, "off": False, True: True, False: False}
    if value not in table:
        raise HpoError(f"{what} must be auto, on or off, not {value!r}")
    return table[value]


def resolve_options(spec) -> RunOptions:  # noqa: ANN001 (a TrainSpec; specs imports nothing here)
    """Resolve ``device``, ``bf16``, ``channels_last`` and ``compile`` of a TrainSpec.

    ``auto`` turns each on for CUDA only. CPU runs stay float32 and contiguous: bf16 changes the
    numbers a CPU run is compared by, channels_last gave no gain there, and compilation does not
    pay for short runs (docs/design.md section 11 has the measurements). ``on`` forces a switch.
    """
    device = resolve_device(spec.device)
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    return RunOptions(
        device=device,
        bf16=_switch(spec.bf16, bf16_ok, "bf16"),
        channels_last=_switch(spec.channels_last, cuda, "channels_last"),
        compile=_switch(spec.compile, cuda, "compile"),
    )


def autocast(options: RunOptions) -> contextlib.AbstractContextManager:
    """bf16 autocast on the options' device when they say so, else nothing."""
    if not options.bf16:
        return contextlib.nullcontext()
    return torch.autocast(options.device.type, dtype=torch.bfloat16)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every GPU). Call before building a model so that its
    initial weights repeat too."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads (0: leave them), restored afterwards."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_devices(devices: str = "auto") -> list[str]:
    """``auto`` -> every visible GPU (``cuda:0``, ...) or ``cpu``; else a comma list of ``cpu``,
    ``cuda``, ``cuda:N`` or ``N`` (GPU N). Unusable devices are an :class:`HpoError`."""
    if devices.strip() in ("", "auto"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    out = []
    for item in devices.split(","):
        item = item.strip()
        item = f"cuda:{item}" if item.isdigit() else item
        device = resolve_device(item)
        if device.type == "cuda" and device.index is not None \
                and device.index >= torch.cuda.device_count():
            raise HpoError(f"device {item} does not exist; this machine has "
                           f"{torch.cuda.device_count()} GPU(s)")
        out.append(item)
    return out


def default_workers(device: str = "auto") -> int:
    """How many trials ``hpo run`` trains at once on ``device`` when ``--workers`` is not given
    (see benchmarks/workers_per_device.py and benchmarks/RESULTS.md)."""
    cores = os.cpu_count() or 1
    if resolve_device(device).type == "cuda":
        # Not measured yet (no GPU figures yet): small recurrent models leave a GPU
        # mostly idle and are bound by Python and kernel launches, which several processes
        # overlap; each worker needs a core or two for that.
        return max(1, min(CUDA_WORKERS, cores // 2))
    # Measured on 2 cores (benchmarks/RESULTS.md): one single-threaded worker per core finished
    # more trials per hour than one worker using every core; more workers than cores fell back.
    return max(1, min(cores, CPU_MAX_WORKERS))


def resolve_workers(workers: int, device_list: list[str]) -> int:
    """``workers`` (0: the default of the devices: one pool per GPU, or the CPU's)."""
    if workers < 0:
        raise HpoError("--workers must be at least 1 (or 0 for the device's default)")
    if workers:
        return workers
    return sum(default_workers(d) for d in dict.fromkeys(device_list))


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


def name(device: torch.device) -> str:
    """``cpu (<model>)`` or ``cuda:N (<GPU name>)``, for benchmark rows and reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_model()})"
