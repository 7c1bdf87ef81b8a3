"""Storage URL -> Optuna storage (DESIGN section 8). The URL is the only thing passed around.

SQLite gets a busy timeout and WAL journaling so that several local worker processes can share one
file; PostgreSQL (psycopg 3) gets a small pool with ``pool_pre_ping``. Passwords never reach a log:
print URLs through :func:`mask_url`.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import HpoError
from .paths import default_storage

__all__ = ["open_storage", "mask_url", "normalize_url"]


def normalize_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``$HPO_STORAGE``, else ``sqlite:///studies/hpo.db``.

    ``postgresql://`` URLs are routed to psycopg 3 (``postgresql+psycopg://``).
    """
    url = url or default_storage()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HpoError(
            f"{url!r} is not a storage URL; use e.g. sqlite:///studies/hpo.db or "
            "postgresql+psycopg://user@host/dbname"
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


def open_storage(url: str | None = None, **rdb_kwargs) -> optuna.storages.RDBStorage:
    """Open (and create where needed) the study store at ``url``.

    Fails within seconds with one line when the database cannot be reached.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    engine_kwargs: dict = {}
    if parsed.drivername.startswith("sqlite"):
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif parsed.drivername.startswith("postgresql"):
        engine_kwargs.update(pool_pre_ping=True, pool_size=2, max_overflow=2,
                             connect_args={"connect_timeout": 5})
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **rdb_kwargs)
    except Exception as exc:  # sqlalchemy OperationalError and friends: one line, no URL password
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise HpoError(f"cannot open the study store {mask_url(url)}: {reason}") from None
    if parsed.drivername.startswith("sqlite"):
        with storage.engine.connect() as conn:  # WAL: readers never block the one writer
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    return storage
