"""A SQLite file before it is opened as a study store: does it exist and hold a SQLite database
(a reader's store), is it someone else's database (tables, none of them Optuna's), and how to read
it without writing anything beside it."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from ..errors import HpoError

__all__ = ["FOREIGN_OK", "check_not_foreign", "check_readable", "read_only_url"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_readable(db: Path) -> None:
    """A reader's store must exist and be a SQLite database (an empty file is not: opening it
    would turn it into one)."""
    if not db.is_file():
        raise HpoError(f"no study store at {db}; run 'hpo run' first or pass --storage URL")
    try:
        with open(db, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise HpoError(f"cannot read the study store {db}: {exc.strerror}") from None
    if head != _SQLITE_MAGIC:
        what = "is empty" if not head else "is not a SQLite database"
        raise HpoError(f"{db} {what}, not a study store; pass the right --storage URL")


def _read_only_uri(db: Path) -> str:
    """A SQLite URI that reads ``db`` without writing anything beside it: ``mode=ro``, or
    ``immutable=1`` where the folder (or file) is read-only and no lock or WAL index could be
    made."""
    writable = os.access(db.parent, os.W_OK) and os.access(db, os.W_OK)
    return f"file:{quote(str(db.resolve()))}?{'mode=ro' if writable else 'immutable=1'}"


def read_only_url(db: Path) -> str:
    """The SQLAlchemy URL of :func:`_read_only_uri`."""
    return f"sqlite:///{_read_only_uri(db)}&uri=true"


_OPTUNA_TABLES = {"studies", "version_info", "alembic_version"}
FOREIGN_OK = "HPO_ADD_TO_FOREIGN_DB"  # =1: add the study tables to a database with other tables


def check_not_foreign(db: Path, reading: bool) -> None:
    """A SQLite file that holds tables, none of them a study store's, is someone else's database:
    a reader says so (not Optuna's "exceeding max length"), a writer adds no tables to it unless
    $HPO_ADD_TO_FOREIGN_DB=1. A file SQLite cannot read is left to the open (its own line)."""
    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(_read_only_uri(db), uri=True, timeout=5)) as conn:
            tables = sorted(row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
    except sqlite3.Error:
        return
    if _OPTUNA_TABLES & set(tables):
        return
    if not tables:
        if reading:
            raise HpoError(f"{db} is an empty SQLite database, not a study store; run 'hpo run' "
                           "first or pass the right --storage URL")
        return
    if reading or os.environ.get(FOREIGN_OK) != "1":
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise HpoError(f"{db} is a SQLite database, but not a study store (its tables: {shown}); "
                       "pass the right --storage URL" + ("" if reading else
                       f", or set {FOREIGN_OK}=1 to add the study tables to it"))
