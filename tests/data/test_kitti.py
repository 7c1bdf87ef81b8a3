"""KITTI from PredNet-style hickle files written here: windows stay inside one drive."""

from __future__ import annotations

from pathlib import Path

import h5py
import hickle
import numpy as np
import pytest

from hpo_vidpred.data import default_spec, info, load
from hpo_vidpred.data.kitti import load_hickle
from hpo_vidpred.errors import HpoError

DRIVES = {  # split -> [(drive, frames)]
    "train": [("city-2011_09_26_drive_0001_sync", 7), ("road-2011_09_26_drive_0015_sync", 5),
              ("residential-2011_09_26_drive_0019_sync", 9)],
    "val": [("city-2011_09_26_drive_0005_sync", 8)],
    "test": [("city-2011_09_26_drive_0002_sync", 6), ("road-2011_09_26_drive_0027_sync", 4)],
}
TASK = {"height": 16, "width": 20, "n_in": 3, "n_out": 1}  # windows of 4 frames


def write_kitti(folder: Path, writer=hickle.dump) -> Path:
    """X_<split>.hkl: uint8 (N, 16, 20, 3); channel 0 = 10 * drive number, channel 1 = 5 * frame
    number within the drive. sources_<split>.hkl: the drive of every frame."""
    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for split, drives in DRIVES.items():
        frames, sources = [], []
        for drive, count in drives:
            number += 1
            x = np.zeros((count, 16, 20, 3), dtype=np.uint8)
            x[..., 0] = 10 * number
            x[..., 1] = (5 * np.arange(count))[:, None, None]
            frames.append(x)
            sources += [drive] * count
        writer(np.concatenate(frames), str(folder / f"X_{split}.hkl"))
        writer(sources, str(folder / f"sources_{split}.hkl"))
    return folder


def test_windows_never_cross_a_source_boundary(tmp_path: Path) -> None:
    write_kitti(tmp_path / "kitti")
    data = load(default_spec("kitti", root=str(tmp_path), **TASK), "cpu")
    assert data.size("train") == (7 - 3) + (5 - 3) + (9 - 3)  # stride 1 inside each drive
    assert data.size("val") == 2 and data.size("test") == 1 + 1  # non-overlapping windows of 4
    for split in ("train", "val", "test"):
        windows = data.split(split).numpy().astype(int)  # (N, T, 3, H, W)
        assert windows.shape[1:] == (4, 3, 16, 20)
        drive = windows[:, :, 0, 0, 0]  # (N, T)
        step = windows[:, :, 1, 0, 0]
        assert (drive == drive[:, :1]).all()  # one drive per window
        assert (np.diff(step, axis=1) == 5).all()  # consecutive frames of that drive
    train = data.train_batch(5, data.generator(0))
    assert train.shape == (5, 4, 3, 16, 20) and 0 <= train.min() and train.max() <= 1


def test_default_frame_size_resize_and_luma(tmp_path: Path) -> None:
    write_kitti(tmp_path)
    spec = default_spec("kitti", root=str(tmp_path), height=8, width=10, channels=1, n_in=3)
    assert spec.n_out == 1  # KITTI's default task is 10 -> 1
    frames = load(spec, "cpu").split("val")
    assert frames.shape == (2, 4, 1, 8, 10)
    # luma of a flat (R, G, 0) frame survives the antialiased resize
    assert abs(int(frames[0, 0, 0, 4, 5]) - round(0.299 * 40 + 0.587 * 0)) <= 1
    report = info(spec)
    assert report["cache"]["state"] == "ready"
    assert report["splits"]["train"] == {"drives": 3, "segments": 3, "frames": 21,
                                         "windows": 12, "stride": 1}


def test_old_hickle_files_are_read_with_h5py(tmp_path: Path) -> None:
    def plain_hdf5(value, path: str) -> None:  # no hickle attributes, like PredNet's Python 2
        with h5py.File(path, "w") as handle:
            handle["data_0"] = np.asarray(value, dtype="S") if isinstance(value, list) else value

    write_kitti(tmp_path, writer=plain_hdf5)
    assert load_hickle(tmp_path / "sources_val.hkl")[0] == "city-2011_09_26_drive_0005_sync"
    data = load(default_spec("kitti", root=str(tmp_path), **TASK), "cpu")
    assert data.size("train") == 12


def test_bad_kitti_input(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="KITTI files missing in .*X_train.hkl.*process_kitti"):
        info(default_spec("kitti", root=str(tmp_path)))
    write_kitti(tmp_path)
    hickle.dump(["one-drive"] * 3, str(tmp_path / "sources_test.hkl"))
    with pytest.raises(HpoError, match="names 3 sources for 10 frames"):
        load(default_spec("kitti", root=str(tmp_path), **TASK), "cpu").split("test")
    write_kitti(tmp_path)
    with pytest.raises(HpoError, match="split 'train' has no windows of 12 frames .*21 frames "
                                       "in 3 drives"):
        load(default_spec("kitti", root=str(tmp_path), height=16, width=20, n_in=11), "cpu")
