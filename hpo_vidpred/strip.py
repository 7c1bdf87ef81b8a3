"""Prediction strips: labelled rows of frames as one PNG (input | true future | predicted future).

Each trial stores one in the study's artifact store, where optuna-dashboard shows it; reports
draw theirs from frames kept in the store (:func:`frame_rows` with captions and error rows, large
enough to see a digit). Everything here needs numpy and PIL only (torch is imported where a
model predicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont


__all__ = ["frame_rows", "moving_sequences", "error_frames", "frame_mse"]

_LABEL_W = 72  # pixels left of each row for its label (wider with larger text)
_GAP = 2
_MIN_SIDE = 48  # frames smaller than this are scaled up (nearest) so the strip stays readable
# |error| in [0, 1] -> colour (a magma-like ramp: black, purple, red, orange, pale yellow)
_RAMP = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]],
                 dtype=np.float32)


def frame_rows(rows: Sequence[tuple], min_side: int = _MIN_SIDE,
               font_size: Optional[int] = None) -> Image.Image:
    """One image from labelled rows of frames, each ``(label, frames)`` or ``(label, frames,
    captions)``: ``frames`` ``(T, C, H, W)`` float in [0, 1] with C 1 or 3 (numpy arrays or torch
    tensors), ``captions`` one short text per frame written under it (None: no line).

    Frames smaller than ``min_side`` are scaled up by a whole factor (nearest). Rows may have
    different lengths; a row is as tall as its frames (plus a caption line where it has
    captions). ``font_size`` (default: the font's own) sizes labels and captions.
    """
    arrays = [(row[0], _to_uint8(row[1]), row[2] if len(row) > 2 else None) for row in rows]
    _, height, width, _ = arrays[0][1].shape  # (T, H, W, C) uint8
    scale = max(1, -(-min_side // min(height, width)))
    h, w = height * scale, width * scale
    font = ImageFont.load_default(size=font_size) if font_size else ImageFont.load_default()
    text_h = (font_size or 10) + 4
    label_w = max(_LABEL_W, max(_text_width(font, line) for label, _, _ in arrays
                                for line in label.split("\n")) + 8)
    n = max(a.shape[0] for _, a, _ in arrays)
    tops, top = [], 0
    for _, _, captions in arrays:
        tops.append(top)
        top += h + _GAP + (text_h if captions else 0)
    canvas = Image.new("RGB", (label_w + n * (w + _GAP), top), "white")
    draw = ImageDraw.Draw(canvas)
    for (label, array, captions), top in zip(arrays, tops, strict=True):
        lines = label.split("\n")
        y = top + h // 2 - len(lines) * text_h // 2
        for i, line in enumerate(lines):
            draw.text((4, y + i * text_h), line, fill="black", font=font)
        for t, frame in enumerate(array):
            image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
            image = image.convert("RGB").resize((w, h), Image.NEAREST)
            canvas.paste(image, (label_w + t * (w + _GAP), top))
            if captions and t < len(captions) and captions[t]:
                draw.text((label_w + t * (w + _GAP) + 2, top + h + 1), captions[t],
                          fill="black", font=font)
    return canvas


def _text_width(font: Any, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def error_frames(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|predicted - truth|`` as RGB frames ``(T, 3, H, W)`` in [0, 1] (averaged over colour
    channels), coloured on a fixed ramp from black (0) to pale yellow (1), so rows compare."""
    error = np.abs(np.asarray(predicted, np.float32) - np.asarray(truth, np.float32)).mean(axis=1)
    position = np.clip(error, 0.0, 1.0) * (len(_RAMP) - 1)  # (T, H, W)
    low = np.minimum(position.astype(int), len(_RAMP) - 2)
    share = (position - low)[..., None]
    rgb = _RAMP[low] * (1 - share) + _RAMP[low + 1] * share  # (T, H, W, 3)
    return (rgb / 255.0).transpose(0, 3, 1, 2)


def frame_mse(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error per frame of ``(T, C, H, W)`` frames in [0, 1]."""
    diff = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)
    return (diff ** 2).reshape(len(diff), -1).mean(axis=1)


def moving_sequences(frames: np.ndarray, k: int = 3, pool: int = 32) -> list[int]:
    """Indices of ``k`` sequences that move, among the first ``pool`` of ``frames`` ``(N, T, C,
    H, W)``: in order, those whose mean absolute change between consecutive frames is at least
    the pool's median (typical motion, not the most extreme), then the rest by motion."""
    head = np.asarray(frames[:pool], np.float32)
    if len(head) == 0:
        return []
    motion = np.abs(np.diff(head, axis=1)).reshape(len(head), -1).mean(axis=1)
    moving = [i for i in range(len(head)) if motion[i] >= np.median(motion)]
    rest = sorted((i for i in range(len(head)) if i not in moving), key=lambda i: -motion[i])
    return (moving + rest)[:k]


def _to_uint8(frames: Any) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch tensor
        frames = frames.detach().float().cpu().numpy()
    frames = np.clip(np.asarray(frames, dtype=np.float32), 0.0, 1.0)
    frames = np.round(frames * 255.0).astype(np.uint8)
    return frames.transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
