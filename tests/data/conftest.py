"""Fixtures for the data tests (helpers live in ``data_fixtures.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest
from data_fixtures import REAL_CLIP, REAL_SEQUENCES, coded_frames, write_avi

from hpo_vidpred.data import clear_cache


@pytest.fixture(autouse=True)
def _fresh_loads() -> None:
    """Every test starts without datasets loaded by an earlier test (the per-process cache)."""
    clear_cache()


@pytest.fixture
def kth_writer() -> Callable[..., Path]:
    """``write(folder, name, count, video_id, layout="flat"|"action")`` -> the AVI written."""

    def write(folder: Path, name: str, count: int, video_id: int, layout: str = "action") -> Path:
        action = name.split("_")[1]
        where = folder / action if layout == "action" else folder
        return write_avi(where / f"{name}_uncomp.avi", coded_frames(count, video_id))

    return write


@pytest.fixture
def real_kth_dir(tmp_path: Path) -> Path:
    """A folder holding the real KTH clip and the real 00sequences.txt."""
    folder = tmp_path / "kth_real"
    folder.mkdir()
    shutil.copy(REAL_CLIP, folder)
    shutil.copy(REAL_SEQUENCES, folder)
    return folder
