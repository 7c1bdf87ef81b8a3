"""Files: the prepared-data cache (keyed by settings), atomic writes, checked downloads."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import HpoError

__all__ = [
    "CACHE_VERSION",
    "cache_dir",
    "settings_key",
    "stamp",
    "save_npy",
    "save_json",
    "load_json",
    "md5sum",
    "fetch",
    "Offline",
]

CACHE_VERSION = 1  # bump when the prepared format changes: old caches are then ignored


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of the preprocessing settings (the cache folder's name)."""
    text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_dir(data_dir: Path, name: str, settings: dict[str, Any], create: bool = False) -> Path:
    """Where the prepared arrays for ``settings`` live: ``<data_dir>/cache/<name>-<key>``.

    When ``data_dir`` is read-only the cache goes to ``$HPO_CACHE_DIR`` (default
    ``~/.cache/hpo-vidpred``), in a folder named after ``data_dir``. With ``create`` the folder is
    made; without, the existing one is returned (or where it would be made).
    """
    leaf = f"{name}-{settings_key(settings)}"
    local = data_dir / "cache" / leaf
    fallback_root = Path(os.environ.get("HPO_CACHE_DIR", Path.home() / ".cache" / "hpo-vidpred"))
    where = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:8]
    fallback = fallback_root / f"{data_dir.resolve().name}-{where}" / leaf
    if not create:
        return fallback if fallback.is_dir() and not local.is_dir() else local
    for candidate in (local, fallback):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise HpoError(f"cannot write a data cache in {local} or {fallback}; "
                   "set HPO_CACHE_DIR to a writable folder")


def stamp(path: Path) -> list[int]:
    """What identifies a source's content cheaply: size and mtime (a folder: file count, total size
    and newest mtime). A changed stamp makes the cached copy stale."""
    if path.is_dir():
        files = [p.stat() for p in path.iterdir() if p.is_file()]
        return [len(files), sum(s.st_size for s in files), max((s.st_mtime_ns for s in files),
                                                               default=0)]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _atomic(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; caches and downloads are shared files
        os.replace(tmp, path)  # concurrent workers: the last complete write wins, none is torn
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write an ``.npy`` file atomically."""
    _atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


def save_json(path: Path, obj: Any) -> None:
    """Write a JSON file atomically."""
    _atomic(path, lambda handle: handle.write(json.dumps(obj, indent=1).encode()))


def load_json(path: Path) -> Optional[Any]:
    """A JSON file's content, or None when it is missing or unreadable (stale/torn entry)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def md5sum(path: Path) -> str:
    """MD5 of a file, read in blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Offline(Exception):
    """The source could not be reached (no network, refused, timed out)."""


def fetch(url: str, dest: Path, md5: str, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` and check its MD5; only a verified file is kept.

    Raises :class:`Offline` when the source cannot be reached, :class:`HpoError` on a checksum
    mismatch (the download is discarded).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()

    def copy(handle) -> None:  # type: ignore[no-untyped-def]
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                handle.write(block)
        if digest.hexdigest() != md5:
            raise HpoError(f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected "
                           f"{md5}; the download was discarded, try again or fetch the file "
                           "by hand")

    try:
        _atomic(dest, copy)
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
        raise Offline(f"{url}: {getattr(exc, 'reason', exc)}") from None
