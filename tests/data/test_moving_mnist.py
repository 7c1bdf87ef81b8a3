"""Moving MNIST: bounce rules, rendering, reproducibility, disjoint digits, frame sizes, files."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hpo_vidpred.data import default_spec, info, load
from hpo_vidpred.data.mmnist import DIGIT, MovingMNISTRenderer, digit_split, read_idx
from hpo_vidpred.errors import HpoError
from hpo_vidpred.paths import BUNDLED_MNIST

OPTIONS = {"speed": 0.1, "digits": 2, "canvas": 64}


def renderer(**spec_fields) -> MovingMNISTRenderer:
    return MovingMNISTRenderer(default_spec("mmnist", **spec_fields), OPTIONS)


def reference_render(glyphs: np.ndarray, positions: np.ndarray, size: int = 64) -> np.ndarray:
    """Straightforward loops: paste each digit at its position, overlap by maximum."""
    n, digits, steps = positions.shape[:3]
    out = np.zeros((n, steps, size, size), dtype=np.uint8)
    for i in range(n):
        for d in range(digits):
            for t in range(steps):
                y, x = positions[i, d, t]
                box = out[i, t, y:y + DIGIT, x:x + DIGIT]
                np.maximum(box, glyphs[i, d], out=box)
    return out


def write_idx(path: Path, images: np.ndarray) -> Path:
    header = struct.pack(">IIII", 0x803, len(images), 28, 28)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + images.astype(np.uint8).tobytes())
    return path


def test_digits_stay_inside_the_frame_and_render_exactly() -> None:
    r = renderer()
    positions = r.trajectories(64, torch.Generator().manual_seed(3))  # (n, D, T, 2)
    assert positions.shape == (64, 2, 20, 2)
    assert positions.min() >= 0 and positions.max() <= 64 - DIGIT
    pool = torch.from_numpy(digit_split(default_spec("mmnist"))["train"])
    glyphs = pool[torch.randint(len(pool), (64, 2), generator=torch.Generator().manual_seed(4))]
    frames = r.render(glyphs, positions)  # (n, T, 1, 64, 64)
    expected = reference_render(glyphs.numpy(), positions.numpy())
    assert np.array_equal(frames[:, :, 0].numpy(), expected)
    # nothing was cut at a border: every frame holds the full ink of its brightest digit
    ink = glyphs.numpy().reshape(64, 2, -1).astype(int).sum(-1).max(-1)  # (n,)
    assert (frames.numpy().astype(int).sum((2, 3, 4)) >= ink[:, None]).all()


def test_bounce_reflects_at_the_border() -> None:
    r = renderer()
    free = 64 - DIGIT
    # start at x = 0.95 of the free range moving +x at 0.1 per frame: 0.95, 1.05 -> 0.95, 0.85...
    path = r.path(torch.tensor([[0.5, 0.95]], dtype=torch.float64), torch.tensor([0.0],
                                                                                 dtype=torch.float64))
    x = path[0, :, 1].numpy()
    expected = [math.floor(free * (1 - abs((0.95 + 0.1 * t) % 2 - 1))) for t in range(20)]
    assert list(x) == expected
    assert x[0] == x[1] == math.floor(0.95 * free) and x[2] < x[1]  # came back from the wall
    assert (path[0, :, 0] == math.floor(0.5 * free)).all()  # no vertical motion at angle 0
    # random paths: the direction flips only next to a border, speed is constant between bounces
    many = r.trajectories(500, torch.Generator().manual_seed(0)).numpy()  # (n, D, T, 2)
    step = np.diff(many, axis=2)
    flips = np.sign(step[:, :, 1:]) * np.sign(step[:, :, :-1]) < 0
    near = np.minimum(many[:, :, 1:-1], free - many[:, :, 1:-1]) <= math.ceil(0.1 * free)
    assert flips.any() and (~flips | near).all()
    assert np.abs(step).max() <= math.ceil(0.1 * free)


def test_sequences_are_reproducible_per_seed_and_stream_on_the_device() -> None:
    spec = default_spec("mmnist", height=16, width=16, n_in=2, n_out=2, val_size=40, test_size=30)
    data = load(spec, "cpu")
    val = data.split("val")
    assert val.shape == (40, 4, 1, 16, 16) and val.dtype == torch.uint8
    again = load(default_spec("mmnist", height=16, width=16, n_in=2, n_out=2, val_size=40,
                              test_size=31), "cpu")  # another spec: built anew
    assert again is not data and torch.equal(again.split("val"), val)
    other = load(default_spec("mmnist", height=16, width=16, n_in=2, n_out=2, val_size=40,
                              seed=1), "cpu")
    assert not torch.equal(other.split("val"), val)
    assert not torch.equal(data.split("test")[:30], val[:30])  # val and test differ

    a = data.train_batch(8, data.generator(5))
    b = data.train_batch(8, data.generator(5))
    c = data.train_batch(8, data.generator(6))
    assert a.shape == (8, 4, 1, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.max() > 0.5
    g = data.generator(7)
    assert not torch.equal(data.train_batch(8, g), data.train_batch(8, g))  # an endless stream


def test_digits_are_disjoint_across_splits(tmp_path: Path) -> None:
    def rows(images: np.ndarray) -> set[bytes]:
        return {image.tobytes() for image in images}

    bundled = digit_split(default_spec("mmnist"))
    assert {k: len(v) for k, v in bundled.items()} == {"train": 8000, "val": 1000, "test": 1000}
    test_digits = read_idx(BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz")
    assert len(rows(test_digits)) == 10000  # no duplicate images, so sets of bytes compare digits
    assert sum(len(rows(v)) for v in bundled.values()) == 10000
    assert not (rows(bundled["train"]) & rows(bundled["val"]) | rows(bundled["train"])
                & rows(bundled["test"]) | rows(bundled["val"]) & rows(bundled["test"]))

    # with training digits present: train and val from them, test from the 10,000 test digits
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", 255 - test_digits[:5100])
    full = digit_split(default_spec("mmnist", root=str(tmp_path)))
    assert {k: len(v) for k, v in full.items()} == {"train": 100, "val": 5000, "test": 10000}
    assert not (rows(full["train"]) & rows(full["val"])) and not (
        (rows(full["train"]) | rows(full["val"])) & rows(full["test"]))


def test_small_frames_are_the_full_render_area_resized() -> None:
    big = renderer(n_in=3, n_out=3)
    small = renderer(height=32, width=32, n_in=3, n_out=3)
    pool = torch.from_numpy(digit_split(default_spec("mmnist"))["val"])
    x64 = big.draw(pool, 6, torch.Generator().manual_seed(1)).float()  # (n, T, 1, 64, 64)
    x32 = small.draw(pool, 6, torch.Generator().manual_seed(1)).float()  # (n, T, 1, 32, 32)
    assert x32.shape == (6, 6, 1, 32, 32)
    pooled = F.avg_pool2d(x64.flatten(0, 1), 2).view_as(x32)
    assert (pooled - x32).abs().max() <= 0.5 + 1e-6  # the same motion, area-averaged


def test_standard_test_file_serves_as_test_set(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 256, (20, 7, 64, 64), dtype=np.uint8)  # [T,N,H,W]
    (tmp_path / "mnist").mkdir()
    np.save(tmp_path / "mnist" / "mnist_test_seq.npy", raw)
    spec = default_spec("mmnist", root=str(tmp_path), options={"test_file": "standard"})
    test = load(spec, "cpu").split("test")
    assert test.shape == (7, 20, 1, 64, 64)
    assert np.array_equal(test[:, :, 0].numpy(), raw.transpose(1, 0, 2, 3))
    assert info(spec)["splits"]["test"]["source"] == "mnist_test_seq.npy"
    with pytest.raises(HpoError, match="holds 20 frames per sequence; the task needs 25"):
        load(default_spec("mmnist", root=str(tmp_path), n_out=15,
                          options={"test_file": "standard"}), "cpu").split("test")
    with pytest.raises(HpoError, match="test_file: standard needs .*mnist_test_seq.npy"):
        load(default_spec("mmnist", root=str(tmp_path / "empty"),
                          options={"test_file": "standard"}), "cpu")


def test_bad_digit_file_and_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(HpoError, match="is not a readable MNIST image file"):
        load(default_spec("mmnist", root=str(tmp_path)), "cpu")
    with pytest.raises(HpoError, match="unknown mmnist option.*spped.*valid options: canvas"):
        default_spec("mmnist", options={"spped": 0.2})
    with pytest.raises(HpoError, match="test_file must be"):
        default_spec("mmnist", options={"test_file": "npy"})
