"""Prediction strips: labelled rows of frames as one PNG (input | true future | predicted future).

Each trial stores one in the study's artifact store, where optuna-dashboard shows it; reports
draw theirs from frames kept in the store. :func:`frame_rows` needs numpy and PIL only (torch is
imported where a model predicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .specs import DataSpec

__all__ = ["frame_rows", "prediction_strip"]

_LABEL_W = 72  # pixels left of each row for its label
_GAP = 2
_MIN_SIDE = 48  # frames smaller than this are scaled up (nearest) so the strip stays readable


def frame_rows(rows: Sequence[tuple[str, Any]]) -> Image.Image:
    """One image from labelled rows of frames, each ``(T, C, H, W)`` float in [0, 1] with C 1 or 3
    (numpy arrays or torch tensors).

    Rows may have different lengths; a row is as tall as its frames.
    """
    arrays = [(label, _to_uint8(frames)) for label, frames in rows]  # (T, H, W, C) uint8
    _, height, width, _ = arrays[0][1].shape
    scale = max(1, -(-_MIN_SIDE // min(height, width)))
    h, w = height * scale, width * scale
    n = max(a.shape[0] for _, a in arrays)
    canvas = Image.new("RGB", (_LABEL_W + n * (w + _GAP), len(arrays) * (h + _GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, (label, array) in enumerate(arrays):
        top = r * (h + _GAP)
        draw.text((4, top + h // 2 - 6), label, fill="black", font=font)
        for t, frame in enumerate(array):
            image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
            image = image.convert("RGB").resize((w, h), Image.NEAREST)
            canvas.paste(image, (_LABEL_W + t * (w + _GAP), top))
    return canvas


def prediction_strip(model: Any, data: Any, data_spec: DataSpec, index: int = 0) -> Image.Image:
    """Run ``model`` closed-loop on validation sequence ``index``: rows input, truth, predicted."""
    import torch

    with torch.no_grad():
        return _strip(model, data, data_spec, index)


def _strip(model: Any, data: Any, data_spec: DataSpec, index: int) -> Image.Image:
    model.eval()
    frames = data.split("val")[index:index + 1].float().div(255.0)  # (1, T, C, H, W)
    device = next(model.parameters()).device
    frames = frames.to(device)
    n_in, n_out = data_spec.n_in, data_spec.n_out
    predicted = model(frames[:, :n_in], n_out).frames.float().clamp(0.0, 1.0)
    return frame_rows([
        ("input", frames[0, :n_in]),
        ("truth", frames[0, n_in:n_in + n_out]),
        ("predicted", predicted[0]),  # (n_out, C, H, W)
    ])


def _to_uint8(frames: Any) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch tensor
        frames = frames.detach().float().cpu().numpy()
    frames = np.clip(np.asarray(frames, dtype=np.float32), 0.0, 1.0)
    frames = np.round(frames * 255.0).astype(np.uint8)
    return frames.transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
