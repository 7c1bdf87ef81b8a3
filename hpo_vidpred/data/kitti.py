"""KITTI raw city/road/residential drives as prepared by PredNet (Lotter, Kreiman and Cox, 2016).

Sources: PredNet's hickle files ``X_{train,val,test}.hkl`` (uint8 ``(N, 128, 160, 3)``, the frames
of all drives one after the other) and ``sources_{train,val,test}.hkl`` (the drive name of every
frame). The splits are PredNet's (by drive). A window never crosses a drive boundary: drives are
the segments. Frames are resized (antialiased) when the spec's size differs and can be reduced to
luma (``channels: 1``). Prepared arrays are cached as ``.npy`` under
``<kitti dir>/cache/kitti-<settings key>/`` (fast memory-mapped loading afterwards).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import HpoError
from ..specs import DataSpec
from ..ui import track
from ._base import DATASETS, SPLITS, Dataset, dataset_dir, eval_stride, looked_in, resize_frames
from ._files import cache_dir, load_json, save_json, save_npy, stamp
from .batches import VideoData, check_windows, window_starts, windowed_data

__all__ = ["KITTI", "load_hickle", "source_segments"]

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def load_hickle(path: Path) -> Any:
    """A hickle file's content. Files written by old hickle versions (PredNet's originals, Python
    2) are read with h5py: the first dataset in the file."""
    import hickle

    try:
        return hickle.load(str(path))
    except Exception:  # hickle raises many types for files it cannot interpret
        pass
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = [k for k in handle.keys() if k != "hickle_types_table"]
            value = handle[keys[0]][()]
    except (OSError, IndexError, KeyError, TypeError) as exc:
        raise HpoError(f"{path} is not a readable hickle/HDF5 file ({exc}); recreate it with "
                       "PredNet's process_kitti.py") from None
    if value.dtype.kind in "SO":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return value


def source_segments(sources: list[str]) -> list[tuple[int, int, str]]:
    """Runs of equal consecutive source names: (first frame, frame count, source)."""
    segments: list[tuple[int, int, str]] = []
    for i, name in enumerate(sources):
        if segments and segments[-1][2] == name:
            segments[-1] = (segments[-1][0], segments[-1][1] + 1, name)
        else:
            segments.append((i, 1, name))
    return segments


def _files(folder: Path, split: str) -> tuple[Path, Path]:
    return folder / f"X_{split}.hkl", folder / f"sources_{split}.hkl"


def _settings(spec: DataSpec) -> dict[str, Any]:
    return {"dataset": "kitti", "size": [spec.height, spec.width], "channels": spec.channels,
            "resize": "bilinear-antialias"}


def _sources(path: Path) -> list[str]:
    value = load_hickle(path)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).ravel()]


def _prepare_split(folder: Path, cache: Path, split: str, spec: DataSpec,
                   show_progress: bool) -> dict[str, Any]:
    """Convert one split to the spec's frame format (cached). Returns its index (segments...)."""
    x_path, s_path = _files(folder, split)
    stamps = [stamp(x_path), stamp(s_path)]
    meta = load_json(cache / f"{split}.json")
    if meta and meta.get("stamps") == stamps and (cache / f"{split}.npy").is_file():
        return meta
    frames = load_hickle(x_path)
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        raise HpoError(f"{x_path} holds {getattr(frames, 'shape', type(frames))}; expected frames "
                       "(N, H, W, 3) as written by PredNet's process_kitti.py")
    sources = _sources(s_path)
    if len(sources) != len(frames):
        raise HpoError(f"{s_path} names {len(sources)} sources for {len(frames)} frames in "
                       f"{x_path.name}; the two files must come from the same run")
    out = np.empty((len(frames), spec.channels, spec.height, spec.width), dtype=np.uint8)
    weights = torch.tensor(LUMA).view(1, 3, 1, 1)
    chunks = list(range(0, len(frames), 512))
    for i in track(chunks, f"preparing KITTI {split}", show_progress):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[i:i + 512])).permute(0, 3, 1, 2)
        if spec.channels == 1:  # (n, 3, h, w) -> (n, 1, h, w)
            chunk = (chunk.float() * weights).sum(1, keepdim=True).round_().to(torch.uint8)
        out[i:i + 512] = resize_frames(chunk, spec.height, spec.width).numpy()  # (n, C, H, W)
    save_npy(cache / f"{split}.npy", out)
    meta = {"stamps": stamps, "frames": len(frames),
            "segments": [list(s) for s in source_segments(sources)]}
    save_json(cache / f"{split}.json", meta)
    return meta


@DATASETS.register("kitti")
class KITTI(Dataset):
    """KITTI from PredNet's hickle files."""

    name = "kitti"
    folder = "kitti"
    defaults = {"height": 128, "width": 160, "channels": 3, "n_in": 10, "n_out": 1}

    def download(self, root: Path, base_url: str | None = None) -> list[str]:
        names = ", ".join(p.name for split in SPLITS for p in _files(Path(), split))
        return [f"KITTI is not downloaded automatically: create {names} with PredNet's "
                "download_data.sh / process_kitti.py (https://github.com/coxlab/prednet) and put "
                f"them into {root / self.folder}/, then run 'hpo data prepare --data kitti'"]

    def check(self, spec: DataSpec) -> None:
        super().check(spec)
        if spec.channels not in (1, 3):
            raise HpoError(f"KITTI has 3 channels (or 1: luma); got channels={spec.channels}")

    def _folder(self, spec: DataSpec) -> Path:
        self.check(spec)
        folder = dataset_dir(spec, self.folder)
        missing = [p.name for split in SPLITS for p in _files(folder, split) if not p.is_file()]
        if missing:
            raise HpoError(f"KITTI files missing in {looked_in(spec, self.folder)}: {', '.join(missing)}; create them "
                           "with PredNet's process_kitti.py (see datasets/README.md)")
        return folder

    def _prepare(self, spec: DataSpec, show_progress: bool) -> tuple[Path, dict[str, dict]]:
        folder = self._folder(spec)
        cache = cache_dir(folder, self.name, _settings(spec), create=True)
        return cache, {s: _prepare_split(folder, cache, s, spec, show_progress) for s in SPLITS}

    def load(self, spec: DataSpec, device: torch.device) -> VideoData:
        import sys

        cache, index = self._prepare(spec, show_progress=sys.stderr.isatty())
        starts = {}
        for split, meta in index.items():
            stride = spec.stride if split == "train" else eval_stride(spec)
            segments = np.asarray([s[:2] for s in meta["segments"]], dtype=np.int64)
            starts[split] = window_starts(segments, spec.seq_len, stride)
            check_windows("KITTI", split, starts[split], spec, stride,
                          f"): {meta['frames']} frames in {len(segments)} drives")
        return windowed_data(spec, device, starts, lambda s: np.load(cache / f"{s}.npy"),
                             info={"sources": {k: sorted({s[2] for s in m["segments"]})
                                               for k, m in index.items()}})

    def prepare(self, spec: DataSpec, progress: bool = True) -> dict[str, Any]:
        self._prepare(spec, show_progress=progress)
        return self.info(spec)

    def info(self, spec: DataSpec) -> dict[str, Any]:
        folder = self._folder(spec)
        cache = cache_dir(folder, self.name, _settings(spec))
        splits, drives, ready = {}, {}, 0
        for split in SPLITS:
            x_path, s_path = _files(folder, split)
            meta: Optional[dict] = load_json(cache / f"{split}.json")
            if meta and meta.get("stamps") == [stamp(x_path), stamp(s_path)]:
                ready += 1
                segments = [tuple(s) for s in meta["segments"]]
            else:
                segments = source_segments(_sources(s_path))
            stride = spec.stride if split == "train" else eval_stride(spec)
            array = np.asarray([s[:2] for s in segments], dtype=np.int64).reshape(-1, 2)
            drives[split] = {s[2] for s in segments}
            splits[split] = {"drives": len(drives[split]), "segments": len(segments),
                             "frames": int(array[:, 1].sum()) if len(array) else 0,
                             "windows": len(window_starts(array, spec.seq_len, stride)),
                             "stride": stride}
        shared = sorted((drives["train"] | drives["val"]) & drives["test"]
                        | drives["train"] & drives["val"])
        return {
            "dataset": self.name,
            "dir": str(folder),
            "files": {p.name: str(p) for split in SPLITS for p in _files(folder, split)},
            "frame_size": [spec.channels, spec.height, spec.width],
            "task": f"{spec.n_in} -> {spec.n_out}",
            "protocol": "PredNet's drive split",
            "splits": splits,
            "cache": {"dir": str(cache), "state": "ready" if ready == 3 else
                      ("partial" if ready else "not built (run 'hpo data prepare')")},
            "skipped": [],
            "notes": [f"drives in more than one split: {', '.join(shared)}"] if shared else [],
        }
