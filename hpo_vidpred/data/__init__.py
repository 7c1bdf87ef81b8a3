"""Datasets (docs/design.md section 5): Moving MNIST, KTH and KITTI, kept on the training device.

Usage::

    spec = default_spec("kth", root="datasets")       # a DataSpec with KTH's defaults
    data = load(spec, torch.device("cuda"))             # cached per process
    frames = data.train_batch(16, data.generator(0))    # float (B, T, C, H, W) in [0, 1]
    for batch in data.batches("val", 32): ...           # the fixed validation set, in order

Train, validation and test never overlap (Moving MNIST by digit, KTH by person, KITTI by drive).
Each public module of this package (but :mod:`.batches`) is one dataset and registers itself under
its name; importing the package imports them all, so adding a dataset is adding its module
(docs/extending.md).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Optional

import torch

from ..paths import data_root
from ..registry import module_names
from ..specs import DataSpec, from_dict, to_dict
from ..devices import resolve_device
from ._base import DATASETS, Dataset, DataWarning
from .batches import Sequences, Stream, VideoData, Windows

__all__ = [
    "DATASETS",
    "DataWarning",
    "Dataset",
    "Sequences",
    "Stream",
    "VideoData",
    "Windows",
    "clear_cache",
    "dataset",
    "default_spec",
    "download",
    "format_info",
    "info",
    "load",
    "prepare",
]

_LOADED: dict[str, VideoData] = {}

for _name in module_names(__name__):  # each registers itself
    importlib.import_module(f"{__name__}.{_name}")


def dataset(name: str) -> Dataset:
    """The registered dataset ``name`` (an :class:`HpoError` listing valid names otherwise)."""
    return DATASETS.get(name)()


def default_spec(name: str, **overrides: Any) -> DataSpec:
    """A :class:`DataSpec` with the dataset's defaults (frame size, task, protocol), the data root
    from ``$HPO_DATA_DIR`` (default ``./datasets``) and ``overrides`` on top.

    Example: ``default_spec("kth", height=32, width=40)`` for a CPU budget. Overrides that are
    None are left out (flags not given).
    """
    ds = dataset(name)
    values = {"name": name, "root": str(data_root()), **ds.defaults,
              **{k: v for k, v in overrides.items() if v is not None}}
    spec = from_dict(DataSpec, values, where=f"the {name} data spec")
    ds.check(spec)
    return spec


def load(spec: DataSpec, device: str | torch.device | None = None) -> VideoData:
    """The dataset of ``spec`` on ``device`` (``auto``/None: CUDA when available), loaded once per
    process and spec: later calls return the same :class:`VideoData`."""
    device = resolve_device(device)
    key = json.dumps(to_dict(spec), sort_keys=True, default=str) + f"@{device}"
    if key not in _LOADED:
        _LOADED[key] = dataset(spec.name).load(spec, device)
    return _LOADED[key]


def clear_cache() -> None:
    """Forget the datasets loaded in this process (the prepared files on disk stay)."""
    _LOADED.clear()


def info(spec: DataSpec) -> dict[str, Any]:
    """What ``hpo data info`` shows: files found, per-split counts, frame size, cache state,
    skipped files with reasons. Decodes nothing."""
    return dataset(spec.name).info(spec)


def prepare(spec: DataSpec, progress: bool = True) -> dict[str, Any]:
    """Decode and cache the dataset now (with a progress bar); returns :func:`info` afterwards."""
    return dataset(spec.name).prepare(spec, progress=progress)


def download(name: str, root: Optional[str | Path] = None,
             base_url: Optional[str] = None) -> list[str]:
    """Fetch a dataset's files into ``root`` (default: the data root) with checksums; without a
    network, an :class:`HpoError` that says which file goes where. ``base_url``: a mirror folder
    holding the same file names (``https://...`` or ``file:///...``)."""
    return dataset(name).download(Path(root) if root else data_root(), base_url)


def format_info(report: dict[str, Any]) -> str:
    """``info`` as readable lines for the terminal."""
    lines = [f"{report['dataset']}: {report['dir']}"]
    for key in ("frame_size", "task", "protocol"):
        value = report[key]
        lines.append(f"  {key.replace('_', ' ')}: "
                     f"{'x'.join(map(str, value)) if isinstance(value, list) else value}")
    for key in ("files", "sequences_file", "options"):
        if report.get(key):
            lines.append(f"  {key.replace('_', ' ')}: " + ", ".join(
                f"{k}={_short(v)}" for k, v in report[key].items()))
    lines.append("  splits:")
    for split, counts in report["splits"].items():
        lines.append(f"    {split:5s} " + ", ".join(
            f"{k} {_short(v)}" for k, v in counts.items()))
    cache = report["cache"]
    lines.append("  cache: " + (cache if isinstance(cache, str) else
                                ", ".join(f"{k}={v}" for k, v in cache.items())))
    lines.append(f"  skipped: {len(report['skipped'])}")
    lines += [f"    {s['file']}: {s['reason']}" for s in report["skipped"]]
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "none"
        return " ".join(map(str, value)) if len(value) <= 12 else \
            f"{' '.join(map(str, value[:12]))} ... ({len(value)})"
    return str(value)
