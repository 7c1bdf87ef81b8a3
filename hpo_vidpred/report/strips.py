"""The report's prediction strips (PNG): per comparison, the test sequences ``hpo compare`` kept,
with the trivial predictor to beat and each model's prediction, per-frame MSE and ``|error|``.
Drawn by :func:`hpo_vidpred.strip.frame_rows` (numpy and PIL only)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image

from ..store.records import decode_frames
from ..strip import error_frames, frame_mse, frame_rows
from .collect import CompareStudy, rank, role_groups
from .tables import ROLE_NAMES

__all__ = ["prediction_strips", "STRIP_SIDE"]

STRIP_SIDE = 96  # pixels a frame is scaled up to (at least), so that a digit can be seen


def prediction_strips(c: CompareStudy) -> list[tuple[int, Image.Image]]:
    """(test sequence index, image) for each test sequence the comparison kept (three that move;
    one, sequence 0, in older stores): rows input and truth with frame numbers, copy-last (the
    trivial predictor to beat) and, per cell and role (first seed), the prediction with each
    frame's MSE under it and its ``|error|`` (black 0, pale yellow 1). Empty without
    predictions."""
    frames, index, predictions = _strip_frames(c)
    if not predictions:
        return []
    n_in = c.n_in
    images = []
    for s, number in enumerate(index):
        sequence = frames[s]  # (T, C, H, W)
        truth = sequence[n_in:]
        copy_last = np.repeat(sequence[n_in - 1:n_in], len(truth), axis=0)
        rows: list[tuple] = [
            ("input", sequence[:n_in], [f"t={k + 1}" for k in range(n_in)]),
            ("truth", truth, [f"t={n_in + k + 1}" for k in range(len(truth))]),
            ("copy-last", copy_last, _mse_captions(copy_last, truth))]
        for (cell, role), predicted in predictions:
            rows.append((f"{cell}\n{ROLE_NAMES[role]}", predicted[s],
                         _mse_captions(predicted[s], truth)))
            rows.append(("|error|", error_frames(predicted[s], truth)))
        images.append((number, frame_rows(rows, min_side=STRIP_SIDE, font_size=12)))
    return images


def _mse_captions(predicted: np.ndarray, truth: np.ndarray) -> list[str]:
    return [f"MSE {m:.4f}" for m in frame_mse(predicted, truth)]


def _strip_frames(c: CompareStudy) -> tuple[np.ndarray, list[int], list[tuple[tuple, Any]]]:
    """The kept test sequences ``(S, T, C, H, W)``, their indices and, per (cell, role) in
    report order, the first seed's predictions ``(S, n_out, C, H, W)``."""
    groups = sorted(role_groups(c).items(),
                    key=lambda kv: (rank(cell=kv[0][0]), kv[0][0], kv[0][1] != "fixed"))
    if "test_sequences" in c.attrs:  # three sequences
        frames = decode_frames(c.attrs["test_sequences"]["frames"])
        index, key = list(c.attrs["test_sequences"]["index"]), "test_predictions"
        decode = decode_frames
    elif "test_frames" in c.attrs:  # older stores: sequence 0
        frames, index, key = decode_frames(c.attrs["test_frames"])[None], [0], "test_prediction"

        def decode(encoded: Mapping[str, Any]) -> np.ndarray:
            return decode_frames(encoded)[None]
    else:
        return np.zeros((0,)), [], []
    predictions = []
    for group, trials in groups:
        kept = [t for t in trials if key in t.user_attrs]
        if kept:
            predictions.append((group, decode(kept[0].user_attrs[key])))
    return frames, index, predictions
