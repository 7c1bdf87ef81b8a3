"""Moving MNIST (Srivastava, Mansimov and Salakhutdinov, ICML 2015), generated from MNIST digits.

Two 28x28 digits move on a 64x64 canvas: start position uniform over the free range, direction
uniform, constant speed (``speed``: share of the free range per frame, 0.1 as in Srivastava et
al.'s generator), reflected at the borders, overlapping by maximum. Training sequences are drawn on
the training device for every batch (an endless stream, vectorised over the batch); validation and
test sets are fixed by the spec's seed and identical on every device. Train, validation and test
use disjoint digits. The standard test file ``mnist_test_seq.npy`` (uint8 ``(20, 10000, 64, 64)``,
``[T, N, H, W]``) can serve as the test set (option ``test_file: standard``).

Reflection is exact (the position folds back by the overshoot, a closed form over all frames at
once); Srivastava et al.'s loop clamps to the border on the bounce step instead, which differs by
less than one step on that frame only.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import HpoError
from ..paths import BUNDLED_MNIST
from ..specs import DataSpec
from ._base import DATASETS, Dataset, dataset_dir, options_of, resize_frames
from ._files import Offline, fetch
from .batches import Sequences, Stream, VideoData

__all__ = ["MovingMNIST", "MovingMNISTRenderer", "read_idx", "digit_split", "MNIST_FILES",
           "TEST_SEQ"]

DIGIT = 28  # MNIST digit size
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_SEQ = "mnist_test_seq.npy"
DEFAULT_VAL, DEFAULT_TEST = 1000, 10000  # sequences (10,000: the size of the standard test file)
SPLIT_SEED = 20150216  # fixes the digit split; independent of the spec's seed
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # name -> (URL, MD5 of the file as served)
    TRAIN_IMAGES: (MNIST_URL + TRAIN_IMAGES, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    TEST_SEQ: ("http://www.cs.toronto.edu/~nitish/unsupervised_video/" + TEST_SEQ,
               "be083ec986bfe91a449d63653c411eb2"),
}


def read_idx(path: Path, header_only: bool = False) -> np.ndarray:
    """MNIST images from an IDX file (gzipped or not) as uint8 ``(N, 28, 28)``.

    With ``header_only`` returns an empty ``(N, 0, 0)`` array (the count without reading pixels).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            magic, count, rows, cols = struct.unpack(">IIII", handle.read(16))
            if magic != 0x803:
                raise ValueError(f"magic number {magic:#x}, expected 0x803")
            if header_only:
                return np.zeros((count, 0, 0), dtype=np.uint8)
            data = np.frombuffer(handle.read(count * rows * cols), dtype=np.uint8)
        return data.reshape(count, rows, cols)  # (N, 28, 28)
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise HpoError(f"{path} is not a readable MNIST image file ({exc}); delete it and run "
                       "'hpo data download mmnist' or copy the file again") from None


def _mnist_dir(spec: DataSpec) -> Path:
    return dataset_dir(spec, "mnist")


def _digit_files(spec: DataSpec) -> dict[str, Optional[Path]]:
    """The digit files in use: test digits from ``<root>/mnist`` or the bundled copy; training
    digits and the standard test file only from ``<root>/mnist``."""
    folder = _mnist_dir(spec)
    found = {name: folder / name if (folder / name).is_file() else None
             for name in (TEST_IMAGES, TRAIN_IMAGES, TEST_SEQ)}
    if found[TEST_IMAGES] is None and (BUNDLED_MNIST / TEST_IMAGES).is_file():
        found[TEST_IMAGES] = BUNDLED_MNIST / TEST_IMAGES
    if found[TEST_IMAGES] is None:
        raise HpoError(f"no MNIST digits: {TEST_IMAGES} is neither in {folder} nor bundled with "
                       "the package; run 'hpo data download mmnist' or reinstall the package")
    return found


def _split_plan(files: dict[str, Optional[Path]], header_only: bool) -> dict[str, np.ndarray]:
    test = read_idx(files[TEST_IMAGES], header_only)  # type: ignore[arg-type]
    if files[TRAIN_IMAGES] is not None:
        # The 60,000 training digits: the last 5,000 for validation; the 10,000 test digits test.
        train = read_idx(files[TRAIN_IMAGES], header_only)
        return {"train": train[:-5000], "val": train[-5000:], "test": test}
    # Only the 10,000 test digits: a fixed permutation split 8,000 / 1,000 / 1,000 (MNIST's test
    # file is ordered by writer group, so a contiguous cut would differ in style between splits).
    order = np.random.default_rng(SPLIT_SEED).permutation(len(test))
    return {"train": test[order[:8000]], "val": test[order[8000:9000]], "test": test[order[9000:]]}


def digit_split(spec: DataSpec) -> dict[str, np.ndarray]:
    """Disjoint digit pools ``{"train", "val", "test"}``, each uint8 ``(N, 28, 28)``."""
    return _split_plan(_digit_files(spec), header_only=False)


class MovingMNISTRenderer:
    """Draws bouncing-digit sequences on a device, vectorised over the batch."""

    def __init__(self, spec: DataSpec, options: dict[str, Any]) -> None:
        self.length = spec.seq_len
        self.size = (spec.height, spec.width)
        self.digits = int(options["digits"])
        self.speed = float(options["speed"])
        canvas_h = int(options["canvas"])
        # The canvas keeps the frame's aspect ratio; it is rendered at full resolution and
        # area-resized to the spec's frame size, so a 32x32 budget sees the same motion, halved.
        self.canvas = (canvas_h, max(DIGIT, round(canvas_h * spec.width / spec.height)))
        if min(self.canvas) < DIGIT or self.digits < 1 or not 0 <= self.speed <= 1:
            raise HpoError(f"Moving MNIST needs canvas >= {DIGIT}, digits >= 1, 0 <= speed <= 1 "
                           f"(got canvas {self.canvas}, digits {self.digits}, speed {self.speed})")

    def trajectories(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Random top-left pixel positions ``(n, digits, T, 2)`` (y, x), long, on the generator's
        device: start uniform over the free range, direction uniform (Srivastava et al.)."""
        device = generator.device
        start = torch.rand(n, self.digits, 2, generator=generator, device=device)
        angle = torch.rand(n, self.digits, generator=generator, device=device) * (2 * math.pi)
        return self.path(start, angle)

    def path(self, start: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Pixel positions ``(..., T, 2)`` of digits starting at ``start`` ``(..., 2)`` ((y, x) in
        units of the free range, [0, 1] -> [0, canvas - 28]) moving at ``speed`` in direction
        ``angle`` ``(...)`` (0: +x, pi/2: +y).

        The unfolded path ``p0 + v t`` is folded into [0, 1] with a triangle wave, which is
        reflection at the borders, in closed form for all frames at once.
        """
        velocity = torch.stack([angle.sin(), angle.cos()], dim=-1) * self.speed  # (..., 2)
        t = torch.arange(self.length, device=start.device, dtype=start.dtype)[:, None]  # (T, 1)
        unfolded = start[..., None, :] + velocity[..., None, :] * t  # (..., T, 2)
        folded = 1.0 - (unfolded.remainder(2.0) - 1.0).abs()  # (..., T, 2) in [0, 1]
        free = torch.tensor([self.canvas[0] - DIGIT, self.canvas[1] - DIGIT], device=start.device)
        pixels = (folded * free).floor_().long().clamp_(min=0)  # (..., T, 2)
        return torch.minimum(pixels, free)  # position 1.0 is the last free pixel

    def render(self, glyphs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Paste ``glyphs`` uint8 ``(n, D, 28, 28)`` at ``positions`` ``(n, D, T, 2)``; overlap by
        maximum. Returns uint8 ``(n, T, 1, H, W)`` at the spec's frame size."""
        n, digits = glyphs.shape[:2]
        height, width = self.canvas
        device = glyphs.device
        positions = positions.to(device)
        # One canvas per digit, so every pasted pixel has its own target (plain indexed writes,
        # deterministic on every device); the digit axis is then reduced by max.
        plane = height * width
        frame = (torch.arange(digits, device=device)[None, :, None] * n
                 + torch.arange(n, device=device)[:, None, None]) * self.length \
            + torch.arange(self.length, device=device)  # (n, D, T): frame index in the canvas
        rows = positions[..., 0, None, None] + torch.arange(DIGIT, device=device)[:, None]
        cols = positions[..., 1, None, None] + torch.arange(DIGIT, device=device)
        target = frame[..., None, None] * plane + rows * width + cols  # (n, D, T, 28, 28)
        canvas = torch.zeros(digits * n * self.length * plane, dtype=torch.uint8, device=device)
        source = glyphs[:, :, None].expand(-1, -1, self.length, -1, -1)  # (n, D, T, 28, 28)
        canvas[target.reshape(-1)] = source.reshape(-1)
        frames = canvas.view(digits, n * self.length, 1, height, width).amax(dim=0)  # (nT,1,h,w)
        frames = resize_frames(frames, *self.size, mode="area")  # (n*T, 1, H, W)
        return frames.view(n, self.length, 1, *self.size)  # (n, T, 1, H, W)

    def draw(self, pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` new sequences from the digit ``pool`` uint8 ``(P, 28, 28)`` (on the target
        device), all random numbers from ``generator``. Returns uint8 ``(n, T, 1, H, W)``."""
        index = torch.randint(len(pool), (n, self.digits), generator=generator,
                              device=generator.device)
        positions = self.trajectories(n, generator)
        return self.render(pool[index.to(pool.device)], positions)  # (n, T, 1, H, W)

    def fixed(self, pool: torch.Tensor, n: int, seed: int, chunk: int = 500) -> torch.Tensor:
        """A fixed set of ``n`` sequences: random numbers from a CPU generator seeded with
        ``seed`` (the same set on every device), rendered on ``pool``'s device in chunks."""
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([self.draw(pool, min(chunk, n - i), generator)
                          for i in range(0, n, chunk)])  # (n, T, 1, H, W)


def _standard_test(path: Path, spec: DataSpec, size: int, device: torch.device) -> torch.Tensor:
    """The standard test file as uint8 ``(N, T, 1, H, W)``: its first ``T`` frames, resized."""
    try:
        raw = np.load(path, mmap_mode="r")  # (20, N, 64, 64) = [T, N, H, W]
    except (OSError, ValueError) as exc:
        raise HpoError(f"{path} is not a readable .npy file ({exc}); download it again") from None
    if raw.ndim != 4 or raw.dtype != np.uint8:
        raise HpoError(f"{path} has shape {raw.shape} {raw.dtype}; expected uint8 "
                       "(20, 10000, 64, 64) [T, N, H, W]")
    if spec.seq_len > raw.shape[0]:
        raise HpoError(f"{path} holds {raw.shape[0]} frames per sequence; the task needs "
                       f"{spec.seq_len} (n_in {spec.n_in} + n_out {spec.n_out})")
    n = min(size, raw.shape[1]) if size else raw.shape[1]
    seqs = torch.from_numpy(np.ascontiguousarray(raw[:spec.seq_len, :n].transpose(1, 0, 2, 3)))
    seqs = seqs.to(device).reshape(n * spec.seq_len, 1, *raw.shape[2:])  # (N*T, 1, 64, 64)
    seqs = resize_frames(seqs, spec.height, spec.width, mode="area")
    return seqs.view(n, spec.seq_len, 1, spec.height, spec.width)  # (N, T, 1, H, W)


def _seed(spec: DataSpec, split: str) -> int:
    return spec.seed * 10 + {"train": 1, "val": 2, "test": 3}[split]


@DATASETS.register("mmnist")
class MovingMNIST(Dataset):
    """Moving MNIST: generated from the bundled (or downloaded) MNIST digits."""

    name = "mmnist"
    folder = "mnist"
    defaults = {"height": 64, "width": 64, "channels": 1, "n_in": 10, "n_out": 10}
    option_defaults = {"speed": 0.1, "digits": 2, "canvas": 64, "test_file": "generated"}

    def check(self, spec: DataSpec) -> None:
        super().check(spec)
        if spec.channels != 1:
            raise HpoError(f"Moving MNIST has 1 channel (got channels={spec.channels})")
        test_file = options_of(self, spec)["test_file"]
        if test_file not in ("generated", "standard"):
            raise HpoError(f"Moving MNIST option test_file must be 'generated' or 'standard' "
                           f"(got {test_file!r})")

    def load(self, spec: DataSpec, device: torch.device) -> VideoData:
        self.check(spec)
        options = options_of(self, spec)
        files = _digit_files(spec)
        renderer = MovingMNISTRenderer(spec, options)
        pools = {k: torch.from_numpy(v).to(device) for k, v in _split_plan(files, False).items()}
        if options["test_file"] == "standard" and files[TEST_SEQ] is None:
            raise HpoError(f"option test_file: standard needs {_mnist_dir(spec) / TEST_SEQ}; run "
                           "'hpo data download mmnist' or put the file there")

        def fixed(split: str, size: int) -> Sequences:
            return Sequences(renderer.fixed(pools[split], size, _seed(spec, split)))

        def test() -> Sequences:
            if options["test_file"] == "standard":
                return Sequences(_standard_test(files[TEST_SEQ], spec, spec.test_size, device))
            return fixed("test", spec.test_size or DEFAULT_TEST)

        train = (fixed("train", spec.train_size) if spec.train_size else
                 Stream(lambda b, g: renderer.draw(pools["train"], b, g)))
        return VideoData(spec, device, {
            "train": train,
            "val": lambda: fixed("val", spec.val_size or DEFAULT_VAL),
            "test": test,
        }, info={"source": "generated"})

    def info(self, spec: DataSpec) -> dict[str, Any]:
        self.check(spec)
        options = options_of(self, spec)
        files = _digit_files(spec)
        digits = {k: len(v) for k, v in _split_plan(files, header_only=True).items()}
        standard = options["test_file"] == "standard"
        notes = []
        if files[TRAIN_IMAGES] is None:
            notes.append(f"only the 10,000 MNIST test digits are in use; put {TRAIN_IMAGES} in "
                         f"{_mnist_dir(spec)} (or run 'hpo data download mmnist') for 60,000 more")
        if files[TEST_SEQ] is not None and not standard:
            notes.append(f"{TEST_SEQ} found; options: {{test_file: standard}} makes it the "
                         "test set")
        return {
            "dataset": self.name,
            "dir": str(_mnist_dir(spec)),
            "files": {name: (str(path) if path else None) for name, path in files.items()},
            "frame_size": [spec.channels, spec.height, spec.width],
            "task": f"{spec.n_in} -> {spec.n_out}",
            "protocol": "disjoint digits per split",
            "splits": {
                "train": {"digits": digits["train"],
                          "sequences": spec.train_size or "endless stream (drawn on the device)"},
                "val": {"digits": digits["val"], "sequences": spec.val_size or DEFAULT_VAL},
                "test": {"digits": 0 if standard else digits["test"],
                         "sequences": spec.test_size or DEFAULT_TEST,
                         "source": TEST_SEQ if standard else "generated"},
            },
            "options": options,
            "cache": "not needed (sequences are generated on the device)",
            "skipped": [],
            "notes": notes,
        }

    def download(self, root: Path, base_url: str | None = None) -> list[str]:
        folder = root / "mnist"
        lines, missing = [], []
        for name, (url, md5) in MNIST_FILES.items():
            dest = folder / name
            if dest.is_file() and _looks_complete(dest):
                lines.append(f"present: {dest}")
                continue
            source = base_url.rstrip("/") + "/" + name if base_url else url
            try:
                fetch(source, dest, md5)
                lines.append(f"downloaded: {dest} (MD5 {md5} ok)")
            except Offline as exc:
                missing.append((name, url, md5, str(exc)))
        if missing:
            wanted = "; ".join(f"{name} (MD5 {md5}) from {url}" for name, url, md5, _ in missing)
            raise HpoError(f"cannot download ({missing[0][3]}): put {wanted} into {folder}/ "
                           "(the bundled test digits work without them)")
        return lines


def _looks_complete(path: Path) -> bool:
    """A present file counts as downloaded when its header says it is whole."""
    if path.suffix == ".gz":
        try:
            return len(read_idx(path, header_only=True)) == 60000
        except HpoError:
            return False
    try:
        return np.load(path, mmap_mode="r").shape[0] == 20
    except (OSError, ValueError):
        return False
