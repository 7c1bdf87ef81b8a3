"""Study-store URLs: the one to use (default and ``HPO_STORAGE``), with its password masked for
anything printed, and a SQLite URL's file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import HpoError
from ..paths import default_storage

__all__ = ["CONNECT_TIMEOUT_S", "mask_url", "normalize_url", "sqlite_path"]

CONNECT_TIMEOUT_S = 5


def normalize_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``$HPO_STORAGE``, else ``sqlite:///studies/hpo.db``.

    ``postgresql://`` URLs are routed to psycopg 3 (``postgresql+psycopg://``); ``grpc://host:port``
    is a store served by ``hpo store serve``.
    """
    url = url or default_storage()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HpoError(
            f"{url!r} is not a storage URL; use e.g. sqlite:///studies/hpo.db or "
            "postgresql+psycopg://user@host/dbname or grpc://host:13000"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs, reports and errors)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid storage URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for other databases and in-memory SQLite."""
    parsed = make_url(normalize_url(url))
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
