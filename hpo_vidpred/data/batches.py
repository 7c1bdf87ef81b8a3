"""Device-resident splits and batches: no DataLoader, no worker processes, no host copies per step.

Each split lives on the training device as uint8 and is one of three sources:

- :class:`Sequences`: fixed sequences ``(N, T, C, H, W)`` (Moving MNIST validation/test);
- :class:`Windows`: the frames of all videos of a split ``(F, C, H, W)`` plus the first frame of
  every window; a batch is gathered with one index operation, so overlapping windows (stride 1)
  cost no memory;
- :class:`Stream`: an endless generator drawing each batch on the device (Moving MNIST training).

:class:`VideoData` puts them behind the interface the training loop uses and converts each batch to
float in [0, 1] on the device.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Optional, Protocol, Union

import numpy as np
import torch

from ..errors import HpoError
from ..specs import DataSpec
from ._base import SPLITS, split_sizes

__all__ = [
    "Source",
    "Sequences",
    "Windows",
    "Stream",
    "VideoData",
    "window_starts",
    "random_indices",
    "subset",
    "windowed_data",
    "check_windows",
]


class Source(Protocol):
    """A split's sequences on the device."""

    def __len__(self) -> int: ...  # 0 for an endless stream

    def take(self, index: torch.Tensor) -> torch.Tensor: ...  # uint8 (B, T, C, H, W)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor: ...


def random_indices(n: int, batch_size: int, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """``batch_size`` indices in ``[0, n)`` drawn with ``generator``, moved to ``device``."""
    index = torch.randint(n, (batch_size,), generator=generator, device=generator.device)
    return index.to(device, non_blocking=True)


class Sequences:
    """Fixed uint8 sequences ``(N, T, C, H, W)`` on the device."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data  # (N, T, C, H, W) uint8

    def __len__(self) -> int:
        return len(self.data)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.index_select(0, index)  # (B, T, C, H, W)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.take(random_indices(len(self), batch_size, generator, self.data.device))


class Windows:
    """Windows of ``length`` consecutive frames of a split's frame store.

    ``frames``: uint8 ``(F, C, H, W)``, every video of the split one after the other; ``starts``:
    the index of each window's first frame (windows never cross a segment boundary: the caller
    builds ``starts`` with :func:`window_starts`).
    """

    def __init__(self, frames: torch.Tensor, starts: torch.Tensor, length: int) -> None:
        self.frames = frames  # (F, C, H, W) uint8
        self.starts = starts.to(device=frames.device, dtype=torch.long)  # (N,)
        self.offsets = torch.arange(length, device=frames.device)  # (T,)

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        frame_index = self.starts[index][:, None] + self.offsets  # (B, T)
        # index_select over the flat frame index: one contiguous copy per frame (much faster on
        # CPU than advanced indexing with a 2-D index)
        frames = self.frames.index_select(0, frame_index.reshape(-1))  # (B*T, C, H, W)
        return frames.view(*frame_index.shape, *self.frames.shape[1:])  # (B, T, C, H, W)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.take(random_indices(len(self), batch_size, generator, self.frames.device))


class Stream:
    """An endless source: ``draw(batch_size, generator)`` returns uint8 ``(B, T, C, H, W)``."""

    def __init__(self, draw: Callable[[int, torch.Generator], torch.Tensor]) -> None:
        self.draw = draw

    def __len__(self) -> int:
        return 0

    def take(self, index: torch.Tensor) -> torch.Tensor:
        raise HpoError("the training split is an endless stream; it has no fixed sequences "
                       "(set train_size in the data spec for a fixed training set)")

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw(batch_size, generator)


def window_starts(segments: np.ndarray, length: int, stride: int) -> np.ndarray:
    """First frames of all windows of ``length`` frames, ``stride`` apart, inside each segment.

    ``segments``: int array ``(S, 2)`` of (first frame index, frame count) in a frame store.
    A segment of ``n`` frames holds ``(n - length) // stride + 1`` windows (none if n < length).
    """
    starts = [first + np.arange(0, count - length + 1, stride)
              for first, count in np.asarray(segments, dtype=np.int64).reshape(-1, 2)
              if count >= length]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def subset(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` of ``n`` indices chosen with ``seed``, sorted (all when size is 0 or >= n)."""
    if size <= 0 or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


SourceOrBuilder = Union[Source, Callable[[], Source]]


class VideoData:
    """A dataset's splits on one device, behind the interface the training loop uses.

    ``sources`` maps split names (``train``, ``val``, ``test``) to a :class:`Source` or to a
    zero-argument function building one; a builder runs on first use (the test split is only
    decoded/moved to the device when ``compare`` asks for it).
    """

    def __init__(self, spec: DataSpec, device: torch.device,
                 sources: Mapping[str, SourceOrBuilder],
                 info: Optional[dict] = None) -> None:
        self.spec = spec
        self.device = device
        self.info = info or {}
        self._sources = dict(sources)
        self._splits: dict[str, torch.Tensor] = {}
        self._generator: Optional[torch.Generator] = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Frame shape ``(C, H, W)``."""
        return (self.spec.channels, self.spec.height, self.spec.width)

    def source(self, name: str) -> Source:
        """The split's :class:`Source`, built on first use."""
        if name not in self._sources:
            raise HpoError(f"unknown split {name!r}; choose one of: {', '.join(self._sources)}")
        source = self._sources[name]
        if not hasattr(source, "sample"):
            source = self._sources[name] = source()  # type: ignore[operator]
        return source  # type: ignore[return-value]

    def size(self, name: str) -> Optional[int]:
        """Number of sequences of a split; None for an endless stream."""
        return len(self.source(name)) or None

    def generator(self, seed: int) -> torch.Generator:
        """A generator on the data's device (so drawing a batch needs no host round trip)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def train_batch(self, batch_size: int,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A random training batch, float in [0, 1], ``(B, T, C, H, W)`` on the device.

        ``generator`` decides the draw; one on the data's device is fastest (one on the CPU works).
        Without one, a generator seeded with ``spec.seed`` and kept by this object is used.
        """
        if generator is None:  # one stream per VideoData, seeded by the spec
            if self._generator is None:
                self._generator = self.generator(self.spec.seed)
            generator = self._generator
        return _to_float(self.source("train").sample(batch_size, generator))

    def split(self, name: str) -> torch.Tensor:
        """A whole fixed split as uint8 ``(N, T, C, H, W)`` on the device (``val``, ``test``)."""
        if name not in self._splits:
            source = self.source(name)
            if isinstance(source, Sequences):
                self._splits[name] = source.data
            else:
                self._splits[name] = source.take(torch.arange(len(source), device=self.device))
        return self._splits[name]

    def batches(self, name: str, batch_size: int) -> Iterator[torch.Tensor]:
        """The split in order, as float batches ``(B, T, C, H, W)`` (the last may be smaller)."""
        source = self.source(name)
        n = len(source)
        if n == 0:
            raise HpoError(f"split {name!r} is an endless stream; it cannot be iterated")
        for first in range(0, n, batch_size):
            index = torch.arange(first, min(first + batch_size, n), device=self.device)
            yield _to_float(source.take(index))

    def __repr__(self) -> str:
        sizes = {name: (len(s) if hasattr(s, "sample") else "lazy") for name, s in
                 self._sources.items()}
        return f"VideoData({self.spec.name}, {self.shape}, T={self.spec.seq_len}, {sizes}, " \
               f"device={self.device})"


def check_windows(dataset: str, split: str, starts: np.ndarray, spec: DataSpec, stride: int,
                  found: str) -> None:
    """An :class:`HpoError` naming the split and the settings when a split has no window."""
    if len(starts) == 0:
        raise HpoError(f"{dataset} split '{split}' has no windows of {spec.seq_len} frames (n_in "
                       f"{spec.n_in} + n_out {spec.n_out}, stride {stride}{found}; add data "
                       "or shorten the task")


def windowed_data(spec: DataSpec, device: torch.device, starts: Mapping[str, np.ndarray],
                  frames: Callable[[str], np.ndarray], info: Optional[dict] = None) -> VideoData:
    """A :class:`VideoData` of :class:`Windows` per split: ``frames(split)`` returns the split's
    uint8 frame store ``(F, C, H, W)``, ``starts[split]`` its window starts. The size caps of
    ``spec`` pick a seeded subset of windows; train and val go to the device now, test on first
    use.
    """
    sizes = split_sizes(spec)

    def build(split: str) -> Windows:
        store = torch.from_numpy(frames(split)).to(device)  # (F, C, H, W)
        keep = subset(len(starts[split]), sizes[split], spec.seed + SPLITS.index(split))
        return Windows(store, torch.from_numpy(starts[split][keep]), spec.seq_len)

    return VideoData(spec, device, {"train": build("train"), "val": build("val"),
                                    "test": lambda: build("test")}, info=info)


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    return frames.float().div_(255.0)  # (B, T, C, H, W) in [0, 1]
