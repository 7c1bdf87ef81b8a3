"""Device-resident sources and VideoData: window gathering, ordered batches, random draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo_vidpred.data import Sequences, VideoData, Windows, default_spec
from hpo_vidpred.data.batches import Stream, subset, window_starts
from hpo_vidpred.errors import HpoError


def test_window_starts_stay_inside_segments() -> None:
    segments = np.array([[0, 5], [5, 3], [8, 10]])  # (first, count)
    assert window_starts(segments, 4, 1).tolist() == [0, 1, 8, 9, 10, 11, 12, 13, 14]
    assert window_starts(segments, 4, 3).tolist() == [0, 8, 11, 14]
    assert window_starts(np.zeros((0, 2)), 4, 1).size == 0


def frame_store(count: int = 20) -> torch.Tensor:
    return torch.arange(count, dtype=torch.uint8)[:, None, None, None].expand(count, 1, 2, 3)


def test_windows_gather_consecutive_frames() -> None:
    windows = Windows(frame_store(), torch.tensor([0, 5, 16]), 4)
    batch = windows.take(torch.tensor([2, 0]))  # (B, T, C, H, W)
    assert batch.shape == (2, 4, 1, 2, 3)
    assert batch[:, :, 0, 0, 0].tolist() == [[16, 17, 18, 19], [0, 1, 2, 3]]


def test_video_data_batches_splits_and_random_batches() -> None:
    spec = default_spec("mmnist", height=2, width=3, n_in=2, n_out=2)
    seqs = torch.randint(0, 256, (7, 4, 1, 2, 3), dtype=torch.uint8)
    built = []
    data = VideoData(spec, torch.device("cpu"), {
        "train": Windows(frame_store(), torch.arange(10), 4),
        "val": Sequences(seqs),
        "test": lambda: built.append(1) or Sequences(seqs[:3]),
    })
    batches = list(data.batches("val", 3))
    assert [len(b) for b in batches] == [3, 3, 1]  # in order, the last one smaller
    assert torch.equal(torch.cat(batches), seqs.float() / 255)
    assert data.split("val") is seqs and data.size("val") == 7
    assert built == [] and data.size("test") == 3 and built == [1]  # built on first use only
    assert data.split("train").shape == (10, 4, 1, 2, 3)
    batch = data.train_batch(64, data.generator(0))
    assert batch.dtype == torch.float32 and batch.shape == (64, 4, 1, 2, 3)
    first = (batch[:, 0, 0, 0, 0] * 255).round().long()
    assert ((batch[:, :, 0, 0, 0] * 255).round().long() - first[:, None]
            == torch.arange(4)).all()
    assert set(first.tolist()) == set(range(10))  # 64 draws cover all 10 windows
    with pytest.raises(HpoError, match="unknown split 'dev'"):
        data.split("dev")


def test_stream_has_no_fixed_sequences() -> None:
    spec = default_spec("mmnist", height=2, width=3, n_in=1, n_out=1)
    data = VideoData(spec, torch.device("cpu"), {
        "train": Stream(lambda b, g: torch.full((b, 2, 1, 2, 3), 255, dtype=torch.uint8))})
    assert data.size("train") is None
    assert (data.train_batch(3) == 1.0).all()
    windows = VideoData(spec, torch.device("cpu"), {"train": Windows(frame_store(), torch.arange(
        16), 2)})
    assert not torch.equal(windows.train_batch(8), windows.train_batch(8))  # no repeated draw
    with pytest.raises(HpoError, match="endless stream"):
        next(data.batches("train", 2))


def test_subset_is_seeded_and_sorted() -> None:
    assert subset(10, 0, 0).tolist() == list(range(10))
    a, b = subset(100, 7, 1), subset(100, 7, 1)
    assert np.array_equal(a, b) and (np.diff(a) > 0).all() and len(a) == 7
    assert not np.array_equal(a, subset(100, 7, 2))
