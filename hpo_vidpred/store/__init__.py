"""The study store: connecting to it (:mod:`.connect`), what studies record (:mod:`.records`) and
a trial's life in a shared study (:mod:`.lifecycle`). The only package that touches Optuna's
private names."""

from __future__ import annotations

from .connect import (
    MAX_RETRIES,
    artifact_dir,
    mask_url,
    normalize_url,
    open_artifact_store,
    open_storage,
    sqlite_path,
    study_lock,
)

__all__ = [
    "MAX_RETRIES",
    "artifact_dir",
    "mask_url",
    "normalize_url",
    "open_artifact_store",
    "open_storage",
    "sqlite_path",
    "study_lock",
]
