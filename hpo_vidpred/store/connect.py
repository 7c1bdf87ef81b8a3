"""Storage URL -> Optuna storage (docs/design.md section 8). The URL is the only thing passed
around.

SQLite: every transaction that writes starts with ``BEGIN IMMEDIATE`` (the write lock is taken up
front, so a read that later writes can never fail with "database is locked"; :mod:`.rdb`), a
60 s busy timeout and WAL journaling let several local worker processes share one file.
PostgreSQL (psycopg 3) gets a small pool with ``pool_pre_ping`` and a 5 s connect timeout. Both
get heartbeats: a trial whose process stopped beating is failed after the grace period and
re-queued with its parameters (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`).
:func:`study_lock` serializes the "count finished trials, then start one" step of every worker of
a study (a file lock beside a SQLite store, an advisory lock on PostgreSQL), which is what keeps
``--trials`` exact. Store calls ride out a lost connection (a database restart) for a while
(:mod:`.retry`); ``grpc://host:port`` reaches the store through ``hpo store serve``
(:mod:`.grpc_client`, served by :mod:`.grpc_server`).

Passwords never reach a log: print URLs through :func:`mask_url`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.artifacts import FileSystemArtifactStore
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ..errors import HpoError
from ..paths import default_storage
from ..registry import Registry
from . import rdb, retry, sqlite_file
from .urls import CONNECT_TIMEOUT_S, mask_url, normalize_url, sqlite_path
from .rdb import SQLITE_BUSY_TIMEOUT_S
from .lifecycle import RequeueOnce

__all__ = [
    "MAX_RETRIES",
    "artifact_dir",
    "mask_url",
    "normalize_url",
    "open_artifact_store",
    "open_storage",
    "sqlite_path",
    "store_failure",
    "study_lock",
]

MAX_RETRIES = 3  # a trial whose worker died is re-run at most this many times
def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    must_exist: bool = False,
    create_tables: bool = True,
    read_only: bool = False,
    pool: tuple[int, int] = (2, 3),
    requeue: bool = True,
    ride_out: bool = False,
) -> optuna.storages.BaseStorage:
    """Open (and create where needed) the study store at ``url``.

    With ``heartbeat_interval`` (seconds) running trials record heartbeats; a trial silent for
    ``grace_period`` (default twice the interval) is failed and re-queued up to
    :data:`MAX_RETRIES` times (``requeue=False``: failed only; a fixed run's trial, which the
    next run asks for anew). ``must_exist`` refuses to create a new SQLite file (the dashboard);
    ``read_only`` (report, export) also writes nothing: a SQLite file is opened ``mode=ro`` (or
    ``immutable`` when its folder is read-only), without lock file or journal change.
    ``create_tables=False`` skips the schema check for a store known to exist (a worker whose
    parent opened it). Creating the schema of a new store is serialized (a file lock beside a
    SQLite file, an advisory lock on PostgreSQL), so several processes may be the first at once.
    Fails within seconds with one line when the store cannot be used (:func:`store_failure`).
    ``grpc://host:port``: the store behind ``hpo store serve`` (:func:`.grpc_client.connect`).
    ``pool``: PostgreSQL connections kept and added at peaks (the proxy serves many workers).
    ``ride_out``: a lost or refused connection is retried until the outage's deadline, like every
    store call (:func:`.retry.call`), instead of failing at once: for a worker of a study its
    parent opened, which may start while the database restarts.
    """
    url = typed = normalize_url(url)
    label = mask_url(typed)  # what every line names: the URL as given, never a read-only form
    parsed = make_url(url)
    if parsed.drivername == "grpc":
        return _open_proxy(url, heartbeat_interval, grace_period)
    sqlite, db = parsed.drivername.startswith("sqlite"), sqlite_path(url)
    engine_kwargs: dict = {}
    if db is not None and (must_exist or read_only):
        sqlite_file.check_readable(db)
    if db is not None and (create_tables or must_exist or read_only):
        sqlite_file.check_not_foreign(db, reading=must_exist or read_only)
    if read_only:
        create_tables = False
        if db is not None:
            url = sqlite_file.read_only_url(db)
    elif db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HpoError(f"cannot create the folder for {db}: {exc.strerror}") from None
    if parsed.drivername.startswith("postgresql"):
        engine_kwargs.update(pool_pre_ping=True, pool_size=pool[0], max_overflow=pool[1],
                             connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    rdb_kwargs: dict = {"skip_table_creation": not create_tables}
    if heartbeat_interval:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            on_stale = RequeueOnce(max_retry=MAX_RETRIES) if requeue else None
        rdb_kwargs.update(
            heartbeat_interval=int(heartbeat_interval),
            grace_period=int(grace_period or 2 * heartbeat_interval),
            heartbeat_stale_trial_callback=on_stale,
        )
    # On PostgreSQL even an open without table creation may write the schema: Optuna stamps
    # alembic_version on a store that has none, racing a first `hpo run` creating it
    guard = create_tables or parsed.drivername.startswith("postgresql")
    attempt = lost = 0
    while True:
        try:
            with _schema_guard(url, db) if guard else nullcontext(), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = rdb.Storage(url, engine_kwargs=engine_kwargs, **rdb_kwargs)
                if db is not None and not read_only:
                    with storage.engine.connect() as conn:  # WAL: readers never block the writer
                        raw = conn.connection.driver_connection  # not inside a transaction
                        raw.execute("PRAGMA journal_mode=WAL").fetchall()
            break
        except HpoError:
            raise
        except Exception as exc:  # sqlalchemy OperationalError and friends: one line, no password
            if ride_out and retry.transient(exc):
                retry.wait(exc, lost, label)  # StoreUnreachable once the deadline has passed
                lost += 1
                continue
            failure = store_failure(exc, label)
            if sqlite and failure and "disk I/O error" in failure and attempt < SQLITE_IO_RETRIES:
                attempt += 1
                time.sleep(1.0)  # seen once after an hour of `hpo matrix`; a second later it opened
                continue
            hint = ("check the file and its folder" if sqlite else
                    "check that the database server runs and the URL is right")
            raise HpoError(failure or f"cannot open the study store {label}: "
                           f"{retry.reason(exc)}; {hint}") from None
    if lost:
        retry.answered()
    storage.hpo_url = label  # for the lines that name the store (retry.py)
    return storage


def _open_proxy(url: str, heartbeat_interval: int | None, grace_period: int | None):  # noqa: ANN202
    try:
        from .grpc_client import connect
    except ImportError:
        raise HpoError("a grpc:// study store needs grpcio and protobuf: pip install "
                       "'hpo-vidpred[grpc]'") from None
    return connect(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)


SQLITE_IO_RETRIES = 3  # opening a SQLite store that met a disk I/O error: tries after a second


@contextmanager
def _schema_guard(url: str, db: Path | None) -> Iterator[None]:
    """Hold a lock while the schema of a possibly new store is created: two processes creating
    it at once collide ("relation alembic_version already exists")."""
    if db is not None:
        with _file_lock(db):
            yield
        return
    if not make_url(url).drivername.startswith("postgresql"):
        yield
        return
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_KEY})
    finally:
        engine.dispose()


_SCHEMA_KEY = int.from_bytes(hashlib.blake2b(b"hpo:schema", digest_size=8).digest(), "big",
                             signed=True)

# (fragments of a database error, what it means) -- see store_failure
_FAILURES = (
    (("database or disk is full", "no space left on device", "could not extend file",
      "disk full"), "the disk holding {store} is full ({reason}); free space and rerun the "
     "same command (finished trials are kept)"),
    (("attempt to write a readonly database", "readonly database", "permission denied",
      "read-only file system"), "{store} cannot be written (read-only file or folder, or no "
     "permission: {reason}); fix the permissions or pass another --storage URL"),
    (("database disk image is malformed", "file is not a database", "not a database"),
     "{store} is damaged ({reason}); restore a copy or pass another --storage URL"),
    (("unable to open database file",), "cannot open {store}: its folder is missing or not "
     "accessible ({reason})"),
    (("disk i/o error",), "{store} met a disk I/O error ({reason}); check the disk (dmesg) and "
     "that the file is not on a network file system shared by machines (use PostgreSQL for "
     "that), then rerun the same command (finished trials are kept)"),
    (("could not connect", "connection refused", "timeout expired", "server closed the "
      "connection", "name or service not known", "terminating connection", "failed to connect "
      "to all addresses", "statuscode.unavailable"), "cannot reach {store} ({reason}); check "
     "that the database server (or hpo store serve) runs and the URL is right"),
)


def store_failure(exc: BaseException, where: str = "") -> str | None:
    """One line saying what a database error means and what to do, for the errors a user can
    cause or meet (full disk, read-only or damaged file, unreachable server); None for others.
    Looks through the exception's causes (Optuna wraps SQLAlchemy, which wraps the driver)."""
    seen: list[BaseException] = []
    first = exc
    while exc is not None and exc not in seen:
        if isinstance(exc, retry.StoreUnreachable):  # its line names the store and the wait
            return str(exc)
        seen.append(exc)
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    text_ = " ".join(str(e) for e in seen).lower()
    for fragments, message in _FAILURES:
        if any(f in text_ for f in fragments):
            store = "the study store" + (f" {where}" if where else "")
            return message.format(store=store, reason=retry.reason(first))
    return None


def artifact_dir(url: str | None = None, override: str | Path | None = None) -> Path:
    """Where trial artifacts (prediction strips) go: ``override``, else ``$HPO_ARTIFACTS``, else
    ``artifacts/`` beside a SQLite store, else ``studies/artifacts``.

    Workers on other machines need the same folder (a shared mount) for the dashboard to show
    all artifacts of a PostgreSQL study.
    """
    if override:
        return Path(override)
    if os.environ.get("HPO_ARTIFACTS"):
        return Path(os.environ["HPO_ARTIFACTS"])
    db = sqlite_path(url or default_storage())
    return (db.parent if db is not None else Path("studies")) / "artifacts"


def open_artifact_store(
    url: str | None = None, override: str | Path | None = None, create: bool = True
) -> FileSystemArtifactStore:
    """The artifact store that belongs to the study store at ``url`` (see :func:`artifact_dir`)."""
    path = artifact_dir(url, override)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


# --- one worker at a time may decide whether a study needs another trial -----------------------

_NO_LOCK = threading.Lock()  # in-memory SQLite and unknown databases: one process only
STUDY_LOCKS: Registry = Registry("database for study locks")


class LockHold:
    """What :func:`study_lock` yields. ``lost`` turns true when the block ends if the lock did not
    hold all through it: a PostgreSQL session-level lock ends with its session, so a database
    restart inside the block frees it, and another worker may have held it meanwhile."""

    lost = False


def _file_lock(db: Path) -> FileLock:
    # "<file>.db-lock" matches the .gitignore's studies/*.db-* pattern.
    return FileLock(str(db) + "-lock", timeout=SQLITE_BUSY_TIMEOUT_S)


@STUDY_LOCKS.register("sqlite")
@contextmanager
def _sqlite_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[LockHold]:
    db = sqlite_path(storage.url)
    with _file_lock(db) if db is not None else _NO_LOCK:
        yield LockHold()


@STUDY_LOCKS.register("postgresql")
@contextmanager
def _postgres_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[LockHold]:
    # A session-level advisory lock, held on its own connection; if the process dies the server
    # closes the session and releases it.
    # Taking it rides out a database restart like every store call (retry.call).
    key = int.from_bytes(hashlib.blake2b(f"hpo:{study_name}".encode(), digest_size=8).digest(),
                         "big", signed=True)

    def connect_and_lock():  # noqa: ANN202
        conn = storage.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    hold = LockHold()
    with retry.call(connect_and_lock, store=getattr(storage, "hpo_url", None)) as conn:
        try:
            yield hold
        finally:
            try:  # false: the lock was gone (its backend was restarted or ended)
                held = conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar()
                conn.commit()
                hold.lost = not held
            except Exception:  # a broken connection: drop it, the server frees the lock
                conn.invalidate()
                hold.lost = True


@contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[LockHold]:
    """Hold the study's cross-process lock (all workers, all machines sharing the store; through
    ``hpo store serve``, the lock the proxy holds for its clients). The :class:`LockHold` it
    yields says, once the block has ended, whether the lock was lost inside it."""
    if callable(getattr(storage, "study_lock", None)):  # a grpc:// store (grpc_client.ProxyStorage)
        with storage.study_lock(study_name):
            yield LockHold()
        return
    dialect = storage.engine.dialect.name
    if dialect in STUDY_LOCKS:
        with STUDY_LOCKS.get(dialect)(storage, study_name) as hold:
            yield hold
    else:  # e.g. MySQL: no lock; --trials may overshoot by up to (workers - 1)
        with _NO_LOCK:
            yield LockHold()
