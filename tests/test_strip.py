"""Prediction strips: frames scaled up to be seen, captions under frames, |error| on a fixed
colour ramp, and test sequences picked because they move."""

from __future__ import annotations

import numpy as np

from hpo_vidpred.strip import error_frames, frame_mse, frame_rows, moving_sequences


def test_frames_are_scaled_up_and_captions_take_a_line() -> None:
    frames = np.zeros((3, 1, 16, 16), np.float32)
    frames[:, :, 4:8, 4:8] = 1.0
    plain = frame_rows([("input", frames)], min_side=96)
    captioned = frame_rows([("input", frames, ["MSE 0.0123"] * 3)], min_side=96, font_size=12)
    assert plain.height == 96 + 2  # 16 px frames scaled 6x, one gap
    assert captioned.height > plain.height and captioned.width >= plain.width
    pixels = np.asarray(captioned.convert("L"))
    caption = pixels[96:captioned.height - 2, -(96 + 2):]  # under the last frame
    assert (caption < 128).any()  # the caption's text is drawn there
    # two-line labels widen the label column when they are wider than the default
    wide = frame_rows([("spatiotemporal\ntuned", frames)], min_side=96, font_size=12)
    assert wide.width > plain.width


def test_error_frames_and_per_frame_mse() -> None:
    truth = np.zeros((2, 1, 4, 4), np.float32)
    predicted = truth.copy()
    predicted[1] = 0.5
    rgb = error_frames(predicted, truth)  # (T, 3, H, W)
    assert rgb.shape == (2, 3, 4, 4)
    assert np.allclose(rgb[0], rgb[0, :, :1, :1])  # no error: one colour everywhere
    assert rgb[1].mean() > rgb[0].mean() + 0.2  # a larger error is brighter
    assert np.allclose(frame_mse(predicted, truth), [0.0, 0.25])


def test_moving_sequences_skip_still_ones() -> None:
    frames = np.zeros((8, 4, 1, 8, 8), np.float32)
    for i in (1, 2, 4, 6):  # these move: a dot one pixel further each frame
        for t in range(4):
            frames[i, t, 0, 2, t + (i % 3)] = 1.0
    picked = moving_sequences(frames, k=3)
    assert picked == [1, 2, 4]
    assert moving_sequences(frames, k=3, pool=2) == [1, 0]  # only two to pick from
