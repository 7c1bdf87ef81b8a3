"""Where things live by default. Each location can be overridden by a flag or an ``HPO_*`` variable.

The top-level ``studies/``, ``datasets/`` and ``models/`` folders of a checkout (or of the current
directory when the package is installed elsewhere) are where a user's own files go; the default study
YAMLs and the bundled MNIST digits travel inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "PACKAGE_DIR",
    "BUNDLED_MNIST",
    "BUNDLED_STUDIES",
    "data_root",
    "models_root",
    "default_storage",
    "studies_file",
]

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_MNIST = PACKAGE_DIR / "data" / "mnist"
BUNDLED_STUDIES = PACKAGE_DIR / "studies"


def data_root() -> Path:
    """Data root: ``$HPO_DATA_DIR`` or ``./datasets``."""
    return Path(os.environ.get("HPO_DATA_DIR", "datasets"))


def models_root() -> Path:
    """Checkpoint root: ``$HPO_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get("HPO_MODELS_DIR", "models"))


def default_storage() -> str:
    """Study store URL: ``$HPO_STORAGE`` or ``sqlite:///studies/hpo.db`` (relative to the cwd)."""
    return os.environ.get("HPO_STORAGE", "sqlite:///studies/hpo.db")


def studies_file(name: str) -> Path:
    """A study YAML (``autoencoder.yaml``, ``fixed/autoencoder.yaml``...):
    ``$HPO_STUDIES_DIR/name`` when that exists, else ``./studies/name`` when that exists, else the
    copy bundled with the package (each file on its own: an override folder holds only the files
    it changes)."""
    for folder in (os.environ.get("HPO_STUDIES_DIR"), "studies"):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return BUNDLED_STUDIES / name
