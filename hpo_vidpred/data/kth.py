"""KTH human actions (Schuldt, Laptev and Caputo, ICPR 2004) from the original videos.

Sources: the distributed ``personXX_<action>_dY_uncomp.avi`` files (a folder per action or all in
one folder), decoded with PyAV, or PredRNN/OpenSTL-style frame folders
(``<action>/personXX_<action>_dY[_uncomp]/image_0001.png``). Frames become grayscale and are
resized with an antialiased filter straight to the spec's size (default 64x80, near the original
120x160).
``00sequences.txt``, as distributed, marks the frames where the action happens: only those
segments are used (whole videos without it). Windows of ``n_in + n_out`` frames never leave a
segment. Decoding happens once: each video's prepared uint8 frames are cached under
``<kth dir>/cache/kth-<settings key>/`` and reused while the source file is unchanged.

Split protocols (by person, never overlapping):

- ``kth`` (default; the dataset's own, also the seed's): train 11-18, validation 19 20 21 23 24 25
  1 4, test 22 2 3 5-10 (persons 2-10 but 4, which is a validation person);
- ``openstl`` (PredRNN/OpenSTL: train 1-16, test 17-25): persons 15 and 16 are carved out of the
  training persons as validation, so training uses 1-14.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import HpoError
from ..specs import DataSpec
from ..ui import track
from ._base import (
    DATASETS,
    SPLITS,
    Dataset,
    dataset_dir,
    eval_stride,
    looked_in,
    options_of,
    resize_frames,
    warn,
)
from ._kth_sequences import SEQUENCES_FILE, SequenceList, find_sequences_file, parse_sequences
from ._files import cache_dir, load_json, save_json, save_npy, stamp
from ._video import VideoError, decode_video, frame_files, header_frames, read_frame_folder
from .batches import VideoData, check_windows, window_starts, windowed_data

__all__ = ["KTH", "PROTOCOLS", "SequenceList", "parse_sequences", "find_videos", "persons_of"]

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
_NAME = re.compile(r"^(person(\d+)_([a-z]+)_d(\d+))(?:_uncomp)?$", re.IGNORECASE)

PROTOCOLS = {  # persons per split; "1-4" is a range
    "kth": {"train": "11-18", "val": "19 20 21 23 24 25 1 4", "test": "22 2 3 5-10"},
    "openstl": {"train": "1-14", "val": "15 16", "test": "17-25"},
}


def persons_of(protocol: str, split: str) -> list[int]:
    """Person numbers of a split under a protocol (``default`` is ``kth``)."""
    persons: list[int] = []
    for part in PROTOCOLS["kth" if protocol == "default" else protocol][split].split():
        first, _, last = part.partition("-")
        persons.extend(range(int(first), int(last or first) + 1))
    return persons


# ----------------------------------------------------------------------------- videos
@dataclass
class VideoSource:
    """One KTH video on disk: an AVI file or a folder of frame images."""

    name: str  # personXX_action_dY
    person: int
    action: str
    path: Path
    kind: str  # "avi" | "frames"
    rel: str = ""  # path relative to the KTH folder (what the cache records)


def find_videos(folder: Path) -> tuple[list[VideoSource], list[str]]:
    """All KTH videos below ``folder`` (any depth, ``cache`` folders skipped), sorted by name,
    plus the paths of duplicates that were ignored (the first one found is used)."""
    found: dict[str, VideoSource] = {}
    duplicates: list[str] = []

    def add(path: Path, stem: str, kind: str) -> None:
        match = _NAME.match(stem)
        if match is None:
            return
        name = match.group(1).lower()
        if name in found:
            duplicates.append(str(path))
            return
        found[name] = VideoSource(name, int(match.group(2)), match.group(3).lower(), path, kind,
                                  path.relative_to(folder).as_posix())

    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d != "cache" and not d.startswith("."))
        for d in list(dirnames):
            if _NAME.match(d) and frame_files(here / d):
                add(here / d, d, "frames")
                dirnames.remove(d)  # a frame folder holds no further videos
        for f in sorted(filenames):
            if f.lower().endswith(".avi"):
                add(here / f, f[:-4], "avi")
    return [found[name] for name in sorted(found)], duplicates


@dataclass
class Entry:
    """A video's prepared state: frame count and runs of consecutive frame numbers, or why it is
    skipped. ``runs``: (first frame number, count, offset in the prepared array)."""

    source: VideoSource
    frames: int = 0
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    reason: str = ""  # non-empty: skipped
    cached: bool = False

    @property
    def ok(self) -> bool:
        return not self.reason


def _runs(numbers: list[int]) -> list[tuple[int, int, int]]:
    """Runs of consecutive frame numbers: [1, 2, 3, 7, 8] -> [(1, 3, 0), (7, 2, 3)]."""
    runs: list[tuple[int, int, int]] = []
    for offset, number in enumerate(numbers):
        if runs and number == runs[-1][0] + runs[-1][1]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, runs[-1][2])
        else:
            runs.append((number, 1, offset))
    return runs


def segments_of(entry: Entry, ranges: Optional[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """(offset, count) of the frames of each action segment inside the prepared video.

    ``ranges`` are 1-based inclusive frame numbers from ``00sequences.txt``; they are clipped to
    the frames that exist. Without ranges every run of frames is one segment.
    """
    if not ranges:
        return [(offset, count) for _, count, offset in entry.runs]
    segments = []
    for start, end in ranges:
        for first, count, offset in entry.runs:
            lo, hi = max(start, first), min(end, first + count - 1)
            if hi >= lo:
                segments.append((offset + lo - first, hi - lo + 1))
    return segments


# ----------------------------------------------------------------------------- preparation
def _settings(spec: DataSpec) -> dict[str, Any]:
    return {"dataset": "kth", "size": [spec.height, spec.width], "gray": "luma-full-range",
            "resize": "bilinear-antialias"}


def _read(source: VideoSource, spec: DataSpec) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Decode and resize one video: uint8 ``(T, H, W)`` and its runs. Raises VideoError."""
    if source.kind == "avi":
        frames = decode_video(source.path)  # (T, h, w)
        runs = [(1, len(frames), 0)]
    else:
        frames, numbers = read_frame_folder(source.path)  # (T, h, w)
        runs = _runs(numbers)
    small = resize_frames(torch.from_numpy(frames)[:, None], spec.height, spec.width)  # (T,1,H,W)
    return small[:, 0].numpy(), runs


def _cached(cache: Path, source: VideoSource) -> Optional[Entry]:
    meta = load_json(cache / f"{source.name}.json")
    if not meta or meta.get("stamp") != stamp(source.path) or meta.get("source") != source.rel:
        return None
    if not meta["reason"] and not (cache / f"{source.name}.npy").is_file():
        return None
    runs = [tuple(r) for r in meta["runs"]]
    return Entry(source, meta["frames"], runs, meta["reason"], cached=True)  # type: ignore[arg-type]


def prepare_videos(sources: list[VideoSource], cache: Path, spec: DataSpec,
                   show_progress: bool) -> list[Entry]:
    """Every video's :class:`Entry`, decoding (and caching) only what the cache lacks."""
    entries = {s.name: _cached(cache, s) for s in sources}
    todo = [s for s in sources if entries[s.name] is None]
    for source in track(todo, "decoding KTH videos", show_progress):
        try:
            frames, runs = _read(source, spec)
            save_npy(cache / f"{source.name}.npy", frames)
            entry = Entry(source, len(frames), runs)
        except VideoError as exc:
            entry = Entry(source, reason=str(exc))
        save_json(cache / f"{source.name}.json",
                  {"source": source.rel, "stamp": stamp(source.path), "frames": entry.frames,
                   "runs": entry.runs, "reason": entry.reason})
        entries[source.name] = entry
    return [entries[s.name] for s in sources]  # type: ignore[misc]


def _peek(cache: Path, source: VideoSource) -> Entry:
    """A video's entry for ``info``: from the cache, else from the header (no decoding)."""
    cached = _cached(cache, source)
    if cached is not None:
        return cached
    if source.kind == "frames":
        numbers = [n for n, _ in frame_files(source.path)]
        return Entry(source, len(numbers), _runs(numbers))
    frames = header_frames(source.path)
    if frames is None:
        return Entry(source, reason="unreadable (no video stream in the header)")
    return Entry(source, frames, [(1, frames, 0)])


# ----------------------------------------------------------------------------- splits
@dataclass
class SplitPlan:
    """A split's videos, its segments in the split's frame store and its window starts."""

    persons: list[int]
    entries: list[Entry]
    segments: np.ndarray  # (S, 2): offset in the split's frame store, frame count
    starts: np.ndarray  # (N,) first frame of each window
    stride: int


def plan_splits(entries: list[Entry], sequences: Optional[SequenceList],
                spec: DataSpec) -> dict[str, SplitPlan]:
    """Assign usable videos to splits by person and cut windows inside their segments."""
    plans = {}
    for split in SPLITS:
        persons = persons_of(spec.protocol, split)
        chosen = [e for e in entries if e.ok and e.source.person in persons]
        segments, offset = [], 0
        for entry in chosen:
            ranges = sequences.ranges.get(entry.source.name) if sequences else None
            segments += [(offset + first, count) for first, count in segments_of(entry, ranges)]
            offset += entry.frames
        stride = spec.stride if split == "train" else eval_stride(spec)
        array = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        starts = window_starts(array, spec.seq_len, stride)
        plans[split] = SplitPlan(persons, chosen, array, starts, stride)
    return plans


def _describe(plan: SplitPlan) -> dict[str, Any]:
    return {"persons": plan.persons, "videos": len(plan.entries), "segments": len(plan.segments),
            "frames": int(plan.segments[:, 1].sum()) if len(plan.segments) else 0,
            "windows": len(plan.starts), "stride": plan.stride}


@DATASETS.register("kth")
class KTH(Dataset):
    """KTH actions from the original AVI files or extracted frame folders."""

    name = "kth"
    folder = "kth"
    defaults = {"height": 64, "width": 80, "channels": 1, "n_in": 10, "n_out": 10,
                "protocol": "kth"}
    option_defaults = {"sequences": "auto"}  # auto: use 00sequences.txt when present | none
    protocols = ("kth", "openstl", "default")

    def download(self, root: Path, base_url: str | None = None) -> list[str]:
        return [f"KTH is not downloaded automatically: get boxing.zip, handclapping.zip, "
                f"handwaving.zip, jogging.zip, running.zip, walking.zip and {SEQUENCES_FILE} from "
                f"https://www.csc.kth.se/cvap/actions/, unzip them into {root / self.folder}/ "
                "(a folder per action or all in one), then run 'hpo data prepare --data kth'"]

    def check(self, spec: DataSpec) -> None:
        super().check(spec)
        if spec.channels != 1:
            raise HpoError(f"KTH is grayscale: channels must be 1 (got {spec.channels})")
        if options_of(self, spec)["sequences"] not in ("auto", "none"):
            raise HpoError("KTH option sequences must be 'auto' (use 00sequences.txt when "
                           "present) or 'none' (whole videos)")

    def _scan(self, spec: DataSpec) -> tuple[Path, list[VideoSource], list[str],
                                             Optional[SequenceList]]:
        self.check(spec)
        folder = dataset_dir(spec, self.folder)
        where = looked_in(spec, self.folder)
        if not folder.is_dir():
            raise HpoError(f"KTH folder {where} not found; put the personXX_<action>_dY_uncomp.avi "
                           "files (and 00sequences.txt) there or pass --data-dir; see "
                           "datasets/README.md")
        sources, duplicates = find_videos(folder)
        if not sources:
            raise HpoError(f"no KTH videos in {where}: expected personXX_<action>_dY_uncomp.avi "
                           "files or frame folders personXX_<action>_dY/image_0001.png")
        path = find_sequences_file(folder)
        use = options_of(self, spec)["sequences"] == "auto"
        sequences = parse_sequences(path) if (path is not None and use) else None
        return folder, sources, duplicates, sequences

    def _entries(self, spec: DataSpec, show_progress: bool) -> tuple[
            Path, list[Entry], Optional[SequenceList]]:
        folder, sources, _, sequences = self._scan(spec)
        cache = cache_dir(folder, self.name, _settings(spec), create=True)
        entries = prepare_videos(sources, cache, spec, show_progress)
        skipped = [e for e in entries if not e.ok]
        if len(skipped) == len(entries):
            raise HpoError("no usable KTH video: " + "; ".join(
                f"{e.source.path} ({e.reason})" for e in skipped[:5])
                + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""))
        if skipped:
            warn(f"skipped {len(skipped)} of {len(entries)} KTH videos: " + "; ".join(
                f"{e.source.path.name} ({e.reason})" for e in skipped[:5]))
        return cache, entries, sequences

    def load(self, spec: DataSpec, device: torch.device) -> VideoData:
        cache, entries, sequences = self._entries(spec, show_progress=sys.stderr.isatty())
        plans = plan_splits(entries, sequences, spec)
        for split, plan in plans.items():
            if not plan.entries:
                raise HpoError(f"KTH split '{split}' has no video (protocol '{spec.protocol}', "
                               f"persons {' '.join(map(str, plan.persons))}) in "
                               f"{dataset_dir(spec, self.folder)}; add those persons' videos or "
                               "choose another protocol")
            check_windows("KTH", split, plan.starts, spec, plan.stride,
                          f", protocol '{spec.protocol}', persons "
                          f"{' '.join(map(str, plan.persons))}): {len(plan.entries)} videos, "
                          f"{len(plan.segments)} segments in {dataset_dir(spec, self.folder)}")

        def frames(split: str) -> np.ndarray:
            return np.concatenate([np.load(cache / f"{e.source.name}.npy")
                                   for e in plans[split].entries])[:, None]  # (F, 1, H, W)

        return windowed_data(spec, device, {k: p.starts for k, p in plans.items()}, frames,
                             info={"splits": {k: [e.source.name for e in p.entries]
                                              for k, p in plans.items()}})

    def prepare(self, spec: DataSpec, progress: bool = True) -> dict[str, Any]:
        self._entries(spec, show_progress=progress)
        return self.info(spec)

    def info(self, spec: DataSpec) -> dict[str, Any]:
        folder, sources, duplicates, sequences = self._scan(spec)
        cache = cache_dir(folder, self.name, _settings(spec))
        entries = [_peek(cache, s) for s in sources]
        plans = plan_splits(entries, sequences, spec)
        cached, notes = sum(e.cached for e in entries), [f"duplicate (ignored): {d}"
                                                         for d in duplicates]
        if sequences is not None:
            unlisted = [e.source.name for e in entries if e.source.name not in sequences.ranges]
            if unlisted:
                notes.append(f"not in {SEQUENCES_FILE} (whole video used): {', '.join(unlisted)}")
        else:
            notes.append(f"no {SEQUENCES_FILE} in use: whole videos are segments")
        return {
            "dataset": self.name, "dir": str(folder),
            "files": {"videos": sum(s.kind == "avi" for s in sources),
                      "frame_folders": sum(s.kind == "frames" for s in sources),
                      "sequences_file": str(sequences.path) if sequences else None},
            "sequences_file": None if sequences is None else {
                "videos_listed": len(sequences.ranges), "missing": sequences.missing,
                "irregular": sequences.irregular},
            "frame_size": [spec.channels, spec.height, spec.width],
            "task": f"{spec.n_in} -> {spec.n_out}",
            "protocol": "kth" if spec.protocol == "default" else spec.protocol,
            "splits": {split: _describe(plan) for split, plan in plans.items()},
            "cache": {"dir": str(cache),
                      "state": "ready" if cached == len(entries) else
                      ("partial" if cached else "not built (run 'hpo data prepare')"),
                      "videos_cached": cached, "videos": len(entries)},
            "skipped": [{"file": str(e.source.path), "reason": e.reason}
                        for e in entries if not e.ok],
            "notes": notes,
        }
