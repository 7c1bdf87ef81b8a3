"""Closed-loop evaluation of a model on a split (:func:`evaluate`): what every run validates and
tests with, the same for training, comparisons and reports."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .devices import RunOptions, autocast
from .metrics import MetricSums
from .specs import DataSpec

__all__ = ["evaluate"]


def _task(data: Any, data_spec: Optional[DataSpec]) -> tuple[int, int]:
    """(n_in, n_out) from ``data_spec`` or the data's own ``spec``."""
    spec = data_spec if data_spec is not None else getattr(data, "spec", None)
    if spec is None:
        raise ValueError("the data has no .spec: pass data_spec= to say n_in and n_out")
    return spec.n_in, spec.n_out


def _layout(frames: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Store ``(B, T, C, H, W)`` frames as (B, T, H, W, C) in memory, so that every frame
    ``frames[:, t]`` is a channels_last (B, C, H, W) view."""
    if not channels_last:
        return frames
    return frames.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # (B, T, C, H, W)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    split: str = "val",
    batch_size: int = 32,
    *,
    data_spec: Optional[DataSpec] = None,
    options: Optional[RunOptions] = None,
) -> dict[str, Any]:
    """Closed-loop prediction of a whole split, averaged over all its predicted frames.

    ``data_spec`` gives n_in / n_out when the data has no ``spec``; ``options`` the device, bf16
    and channels_last (default: float32 on the model's device).

    Returns ``mse, mse_frame, mae, psnr, ssim`` (floats) and the same names with ``_per_step``
    (a list, one value per future step), see :mod:`hpo_vidpred.metrics`. Predictions are clipped to
    [0, 1] before scoring, as OpenSTL does. The model is left in eval mode.
    """
    n_in, n_out = _task(data, data_spec)
    if options is None:  # plain float32 where the model is
        device = next(model.parameters()).device
        options = RunOptions(device=device, bf16=False, channels_last=False, compile=False)
    model.eval()
    sums = MetricSums()
    for frames in data.batches(split, batch_size):
        frames = _layout(frames.to(options.device), options.channels_last)  # (B, T, C, H, W)
        with autocast(options):
            pred = model(frames[:, :n_in], n_out)
        sums.add(pred.frames.float().clamp(0.0, 1.0), frames[:, n_in:n_in + n_out].float())
    return sums.result()
