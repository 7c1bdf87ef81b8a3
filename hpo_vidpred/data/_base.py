"""What every dataset shares: registry, dataset interface, folders, options, warnings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ..errors import HpoError
from ..registry import Registry
from ..specs import DataSpec

__all__ = [
    "DATASETS",
    "Dataset",
    "DataWarning",
    "SPLITS",
    "dataset_dir",
    "eval_stride",
    "looked_in",
    "options_of",
    "resize_frames",
    "split_sizes",
    "warn",
]

DATASETS: Registry[Callable[[], "Dataset"]] = Registry("dataset")

SPLITS = ("train", "val", "test")


class DataWarning(UserWarning):
    """A data problem that was worked around (a skipped video, an unlisted file)."""


def warn(message: str) -> None:
    """One-line warning about the data, shown once per message."""
    warnings.warn(" ".join(message.split()), DataWarning, stacklevel=3)


class Dataset:
    """One dataset's loader. Subclasses are registered with ``@DATASETS.register(name)``.

    ``defaults`` are the :class:`DataSpec` fields that differ from the dataclass defaults for this
    dataset (frame size, task); ``option_defaults`` the valid keys of ``DataSpec.options`` with
    their defaults; ``folder`` the dataset's folder below the data root.
    """

    name: str = ""
    folder: str = ""
    defaults: Mapping[str, Any] = {}
    option_defaults: Mapping[str, Any] = {}
    protocols: tuple[str, ...] = ("default",)

    def load(self, spec: DataSpec, device: torch.device) -> Any:
        """The dataset as a :class:`hpo_vidpred.data.VideoData` on ``device``."""
        raise NotImplementedError

    def info(self, spec: DataSpec) -> dict[str, Any]:
        """Files found, per-split counts, frame size, cache state, skipped files (JSON)."""
        raise NotImplementedError

    def prepare(self, spec: DataSpec, progress: bool = True) -> dict[str, Any]:
        """Decode and cache what :meth:`load` needs; returns :meth:`info` afterwards."""
        return self.info(spec)

    def download(self, root: Path, base_url: str | None = None) -> list[str]:
        """Fetch the dataset where a network exists; returns lines for the user."""
        return [f"{self.name} cannot be downloaded automatically; see datasets/README.md"]

    def check(self, spec: DataSpec) -> None:
        """Reject a spec this dataset cannot serve, with one line saying what to change."""
        if spec.protocol not in self.protocols:
            raise HpoError(
                f"unknown split protocol {spec.protocol!r} for {self.name}; choose one of: "
                f"{', '.join(self.protocols)}"
            )
        options_of(self, spec)
        if spec.n_in < 1 or spec.n_out < 1:
            raise HpoError(f"n_in and n_out must be >= 1 (got {spec.n_in} -> {spec.n_out})")
        if spec.height < 1 or spec.width < 1:
            raise HpoError(f"frame size must be positive (got {spec.height}x{spec.width})")
        if spec.stride < 1 or spec.eval_stride < 0:
            raise HpoError(
                f"stride must be >= 1 and eval_stride >= 0 (got {spec.stride}, {spec.eval_stride})"
            )
        if min(spec.train_size, spec.val_size, spec.test_size) < 0:
            raise HpoError("train_size, val_size and test_size must be >= 0 (0: the default)")


def options_of(dataset: Dataset, spec: DataSpec) -> dict[str, Any]:
    """``spec.options`` over the dataset's defaults; unknown keys are an :class:`HpoError`."""
    unknown = sorted(set(spec.options) - set(dataset.option_defaults))
    if unknown:
        valid = ", ".join(sorted(dataset.option_defaults)) or "none"
        raise HpoError(
            f"unknown {dataset.name} option(s) {', '.join(unknown)}; valid options: {valid}"
        )
    return {**dataset.option_defaults, **spec.options}


def dataset_dir(spec: DataSpec, folder: str) -> Path:
    """The dataset's own folder: ``<root>/<folder>`` when it exists, else ``root`` itself, so that
    both ``--data-dir datasets`` and ``--data-dir datasets/kth`` work."""
    root = Path(spec.root).expanduser()
    return root / folder if (root / folder).is_dir() else root


def looked_in(spec: DataSpec, folder: str) -> str:
    """Where a dataset was looked for, for error messages: ``datasets (or datasets/kth)``."""
    root = Path(spec.root).expanduser()
    found = dataset_dir(spec, folder)
    return str(found) if found != root else f"{root} (or {root / folder})"


def eval_stride(spec: DataSpec) -> int:
    """Step between validation/test windows; 0 in the spec means non-overlapping windows."""
    return spec.eval_stride or spec.seq_len


def split_sizes(spec: DataSpec) -> dict[str, int]:
    """Requested sequences per split (0: everything available / the dataset default)."""
    return {"train": spec.train_size, "val": spec.val_size, "test": spec.test_size}


def resize_frames(frames: torch.Tensor, height: int, width: int,
                  mode: str = "bilinear") -> torch.Tensor:
    """Resize uint8 frames ``(N, C, h, w)`` to ``(N, C, height, width)`` and round back to uint8.

    ``bilinear``: antialiased bilinear (PIL's reduction filter; KTH, KITTI); ``area``: the mean
    over each output pixel's footprint (Moving MNIST's rendered canvas). Works in chunks.
    """
    if frames.shape[-2:] == (height, width):
        return frames
    extra = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    out = torch.empty((*frames.shape[:2], height, width), dtype=torch.uint8, device=frames.device)
    for i in range(0, len(frames), 512):
        chunk = frames[i:i + 512].float()  # (n, C, h, w)
        small = F.interpolate(chunk, size=(height, width), mode=mode, **extra)
        out[i:i + 512] = small.round_().clamp_(0, 255).to(torch.uint8)
    return out
