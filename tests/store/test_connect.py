"""Study stores: URLs, masking, fail-fast, SQLite under concurrent writers, the study lock."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from contextlib import closing
from pathlib import Path

import optuna
import pytest

from hpo_vidpred.errors import HpoError
from hpo_vidpred.store import (
    artifact_dir,
    mask_url,
    normalize_url,
    open_storage,
    sqlite_path,
    study_lock,
)


def test_mask_url_hides_the_password_only() -> None:
    masked = mask_url("postgresql+psycopg://alice:s3cret@db.example:5432/hpo")
    assert "s3cret" not in masked
    assert masked == "postgresql+psycopg://alice:***@db.example:5432/hpo"
    assert mask_url("sqlite:///studies/hpo.db") == "sqlite:///studies/hpo.db"


def test_urls_default_override_and_route_postgres_to_psycopg(monkeypatch) -> None:
    assert normalize_url(None) == "sqlite:///studies/hpo.db"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///elsewhere.db")
    assert normalize_url(None) == "sqlite:///elsewhere.db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(HpoError, match="is not a storage URL"):
        normalize_url("no url at all")


def test_default_sqlite_store_is_created_on_first_use_in_wal_mode() -> None:
    storage = open_storage()
    assert Path("studies/hpo.db").is_file()
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM studies")  # a read sees the file's mode
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert sqlite_path("sqlite:///studies/hpo.db") == Path("studies/hpo.db")


def test_a_reader_refuses_to_create_a_store() -> None:
    with pytest.raises(HpoError, match="no study store at studies/hpo.db; run 'hpo run' first"):
        open_storage(must_exist=True)
    assert not Path("studies/hpo.db").exists()


def test_an_unreachable_database_fails_within_seconds_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(HpoError) as info:
        open_storage("postgresql://alice:s3cret@127.0.0.1:1/hpo")
    assert time.monotonic() - started < 8
    text = str(info.value)
    assert text.startswith("cannot reach the study store postgresql+psycopg://alice:***@")
    assert "s3cret" not in text and "\n" not in text


def test_artifacts_live_beside_the_store(monkeypatch, tmp_path) -> None:
    assert artifact_dir("sqlite:///runs/x.db") == Path("runs/artifacts")
    assert artifact_dir("postgresql+psycopg://u@h/db") == Path("studies/artifacts")
    assert artifact_dir("sqlite:///runs/x.db", tmp_path) == tmp_path
    monkeypatch.setenv("HPO_ARTIFACTS", str(tmp_path / "shared"))
    assert artifact_dir("sqlite:///runs/x.db") == tmp_path / "shared"


# --------------------------------------------------------------------------- concurrency
def _ask_and_tell(url: str, name: str, n: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    for _ in range(n):
        trial = study.ask()
        trial.set_user_attr("worker", mp.current_process().name)
        study.tell(trial, trial.suggest_float("x", 0, 1))


def test_sqlite_survives_four_concurrent_writers() -> None:
    url = "sqlite:///studies/hpo.db"
    optuna.create_study(study_name="busy", storage=open_storage(url))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ask_and_tell, args=(url, "busy", 15)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]  # a "database is locked" would fail one
    trials = optuna.load_study(study_name="busy", storage=url).get_trials()
    assert len(trials) == 60 and sorted(t.number for t in trials) == list(range(60))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def _bump_under_lock(url: str, name: str, counter: str, n: int) -> None:
    storage = open_storage(url)
    for _ in range(n):
        with study_lock(storage, name):  # read-modify-write: loses updates without the lock
            value = int(Path(counter).read_text())
            time.sleep(0.002)
            Path(counter).write_text(str(value + 1))


def _lock_is_exclusive(url: str, counter: Path) -> None:
    counter.write_text("0")
    name = f"lock-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_bump_under_lock, args=(url, name, str(counter), 20))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "60"


def test_the_study_lock_is_exclusive_across_processes_on_sqlite(tmp_path) -> None:
    _lock_is_exclusive("sqlite:///studies/hpo.db", tmp_path / "counter")


@pytest.mark.postgres
def test_the_study_lock_is_exclusive_across_processes_on_postgres(postgres_url, tmp_path) -> None:
    _lock_is_exclusive(postgres_url, tmp_path / "counter")


# --------------------------------------------------------------------------- reliability
def _first_use(url: str, ready, name: str) -> None:
    ready.wait()
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage)


def _all_at_once(url: str, n: int = 4) -> list[int]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    procs = [ctx.Process(target=_first_use, args=(url, ready, f"s{i}")) for i in range(n)]
    for p in procs:
        p.start()
    time.sleep(3)  # every process imported and waiting
    ready.set()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


@pytest.mark.postgres
def test_several_processes_can_be_first_on_a_fresh_postgres_database(fresh_postgres) -> None:
    """Two hpo run on a fresh database used to collide creating the schema (duplicate key in
    pg_type_typname_nsp_index / relation alembic_version already exists)."""
    assert _all_at_once(fresh_postgres) == [0, 0, 0, 0]
    assert len(optuna.get_all_study_names(fresh_postgres)) == 4


def _poll(url: str, ready, stop) -> None:
    """A reader (hpo report, a test waiting for trials) opening the store until it can."""
    ready.wait()
    while not stop.is_set():
        try:
            open_storage(url, create_tables=False)
        except Exception:  # noqa: BLE001 (no schema yet)
            pass


@pytest.mark.postgres
def test_readers_polling_a_fresh_postgres_database_do_not_break_its_first_use(
        fresh_postgres) -> None:
    """An open without table creation still stamped alembic_version, unguarded: a reader polling
    a fresh database made the first hpo run fail (duplicate key in pg_type_typname_nsp_index)."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    pollers = [ctx.Process(target=_poll, args=(fresh_postgres, ready, stop)) for _ in range(3)]
    first = ctx.Process(target=_first_use, args=(fresh_postgres, ready, "s"))
    for p in (*pollers, first):
        p.start()
    time.sleep(3)  # every process imported and waiting
    ready.set()
    first.join(120)
    stop.set()
    for p in pollers:
        p.join(60)
    assert first.exitcode == 0
    assert optuna.get_all_study_names(fresh_postgres) == ["s"]


def test_several_processes_can_be_first_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
    assert _all_at_once(url) == [0, 0, 0, 0]
    assert len(optuna.get_all_study_names(url)) == 4


def _without_dac(cmd: list[str]) -> list[str]:
    """``cmd`` run as root without the capabilities that override file permissions (CI runs as
    root, for which a read-only folder would be no obstacle)."""
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]


def test_read_only_commands_read_a_store_in_a_read_only_folder(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "store.db", folder)
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)
    (folder / "store.db").chmod(0o444)
    try:
        url = f"sqlite:///{folder / 'store.db'}"
        for args in (["report", "--storage", url, "--out", str(tmp_path / "rep")],
                     ["export", "--study", "autoencoder-mmnist", "--storage", url]):
            done = subprocess.run(_without_dac([sys.executable, "-m", "hpo_vidpred.cli", *args]),
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in folder.iterdir()) == before  # no lock file, no journal
        # a writing command says what is wrong in one line
        done = subprocess.run(_without_dac([sys.executable, "-m", "hpo_vidpred.cli", "run",
                                            "--arch", "autoencoder", "--data", "mmnist",
                                            "--budget", "smoke", "--trials", "1", "--storage",
                                            url]), capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: ")
    finally:
        folder.chmod(0o755)


def test_an_empty_file_is_not_turned_into_a_store(tmp_path: Path, capsys) -> None:
    from hpo_vidpred.cli import main

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert main(["report", "--storage", f"sqlite:///{empty}", "--out", str(tmp_path / "r")]) == 2
    assert "is empty, not a study store" in capsys.readouterr().err
    assert empty.stat().st_size == 0 and not (tmp_path / "r").exists()
    import sqlite3

    with closing(sqlite3.connect(empty)) as conn:  # a SQLite database without a table
        conn.execute("PRAGMA user_version = 1")
    assert main(["export", "--study", "x", "--storage", f"sqlite:///{empty}"]) == 2
    assert capsys.readouterr().err == (f"error: {empty} is an empty SQLite database, not a study "
                                       "store; run 'hpo run' first or pass the right --storage "
                                       "URL\n")


def test_a_foreign_sqlite_file_is_neither_misreported_nor_modified(tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:
    """A SQLite database that is not a study store: readers said "An exception is raised during
    the commit ... exceeding max length" (naming the internal read-only URL), hpo run added
    Optuna's tables to it. Now one line, and the file and its folder are left as they were
    unless the user asks for the tables."""
    import hashlib
    import sqlite3

    from hpo_vidpred.cli import main

    db = tmp_path / "notes.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    before = hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(tmp_path))
    url = f"sqlite:///{db}"
    run = ["store", "prepare", "run", "--arch", "autoencoder", "--data", "mmnist", "--budget",
           "smoke", "--storage", url]
    for args in (["report", "--storage", url, "--out", str(tmp_path / "r")],
                 ["export", "--study", "x", "--storage", url], run):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {db} is a SQLite database, but not a study store (its "
                              "tables: notes); pass the right --storage URL") and \
            err.count("\n") == 1, err
        assert (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(tmp_path))) == \
            before
    assert "set HPO_ADD_TO_FOREIGN_DB=1" in err  # a writer says how to add the tables anyway
    monkeypatch.setenv("HPO_ADD_TO_FOREIGN_DB", "1")
    assert main(run) == 0
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("keep me",)]
        assert conn.execute("SELECT COUNT(*) FROM studies").fetchone() == (1,)


def test_read_only_commands_name_the_store_as_the_user_gave_it(tmp_path: Path, capsys) -> None:
    """Not the read-only URL they open it with (sqlite:///file%3A...?mode=ro&uri=true)."""
    from hpo_vidpred.cli import main

    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x01" * 5000)
    for args in (["report", "--out", str(tmp_path / "r")], ["export", "--study", "x"]):
        assert main([*args, "--storage", f"sqlite:///{damaged}"]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: the study store sqlite:///{damaged} is damaged (file is not a "
                       "database); restore a copy or pass another --storage URL\n")


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    """A 1 MB tmpfs holding the store fills up during a study (after a few trials)."""
    import sqlite3
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hpo_vidpred.cli", "run", "--arch", "autoencoder", "--data",
             "mmnist", "--trials", "500", "--budget", "smoke", "--workers", "1", "--quiet",
             "--storage", f"sqlite:///{disk / 's.db'}"], capture_output=True, text=True,
            timeout=600, cwd=disk)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.count("\n") == 1 and "is full" in done.stderr, done.stderr[-2000:]
        conn = sqlite3.connect(disk / "s.db")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        conn.close()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _disk_io_error() -> Exception:
    """What SQLAlchemy raises when SQLite reports SQLITE_IOERR (seen once opening a store after an
    hour of ``hpo matrix``)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    return OperationalError("PRAGMA journal_mode=WAL", {}, sqlite3.OperationalError("disk I/O error"))


def test_a_disk_io_error_is_its_own_line_and_opening_tries_again(monkeypatch) -> None:
    from hpo_vidpred.store import connect, rdb, store_failure

    line = store_failure(_disk_io_error(), "sqlite:///studies/hpo.db")
    assert line.startswith("the study store sqlite:///studies/hpo.db met a disk I/O error")
    assert "database server" not in line and "finished trials are kept" in line
    real, failures, sleeps = rdb.Storage, [], []

    def flaky(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise _disk_io_error()
        return real(*args, **kwargs)

    monkeypatch.setattr(connect.time, "sleep", sleeps.append)
    monkeypatch.setattr(rdb, "Storage", flaky)
    storage = open_storage("sqlite:///studies/flaky.db")  # a second later it opened
    assert len(failures) == 2 and sleeps == [1.0, 1.0]
    optuna.create_study(study_name="s", storage=storage)

    def broken(*args, **kwargs):
        raise _disk_io_error()

    monkeypatch.setattr(rdb, "Storage", broken)
    with pytest.raises(HpoError) as info:
        open_storage("sqlite:///studies/broken.db")
    assert "met a disk I/O error" in str(info.value) and "database server" not in str(info.value)
    assert len(sleeps) == 2 + connect.SQLITE_IO_RETRIES
