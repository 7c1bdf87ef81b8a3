"""The RDB storage hpo opens (``store/rdb.py``) where Optuna's contract does not look: a study
deleted and created again by another process, what ``reading_once`` does with a bad parameter
and with an error, and SQLite transactions (reads never wait for this thread's own write; a
pickled storage still takes the write lock up front)."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from sqlalchemy import event

from hpo_vidpred.store import open_storage
from hpo_vidpred.store.rdb import reading_once

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "proxy"]

# What another process does to the store: `optuna delete-study`, the dashboard, or a run that
# deletes the study it created when it could not start.
_SWAP = """
import sys, optuna
url = sys.argv[1]
optuna.delete_study(study_name="x", storage=url)
optuna.create_study(study_name="other", storage=url)  # SQLite: takes x's id (the highest)
optuna.create_study(study_name="x", storage=url)
"""


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """(the database URL another process uses, the URL this process opens)"""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        yield url, url
    elif request.param == "postgres":
        url = request.getfixturevalue("fresh_postgres")
        yield url, url
    else:
        pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")
        from clusters import StoreProxy

        url = f"sqlite:///{tmp_path / 'store.db'}"
        proxy = StoreProxy(url)  # a long-lived server: what it remembers outlives the swap
        yield url, proxy.url
        proxy.stop()


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_a_study_deleted_and_created_again_by_another_process_gets_its_own_trials(store) -> None:
    database, url = store
    storage = open_storage(url)  # the long-lived process (a worker pool, hpo store serve)
    study = optuna.create_study(study_name="x", storage=storage)
    study.optimize(lambda t: t.suggest_float("p", 0, 1), n_trials=1)
    assert optuna.load_study(study_name="x", storage=storage).trials[0].params
    done = subprocess.run([sys.executable, "-c", _SWAP, database], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    again = optuna.load_study(study_name="x", storage=storage)
    again.ask()
    fresh = open_storage(database)  # what a new process reads
    assert len(optuna.load_study(study_name="x", storage=fresh).trials) == 1
    assert optuna.load_study(study_name="other", storage=fresh).trials == []
    assert optuna.load_study(study_name="other", storage=open_storage(url)).trials == []


def _study_with_history(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    study = optuna.create_study(study_name="s", storage=storage,  # TPE reads the trials
                                sampler=optuna.samplers.TPESampler(seed=0))
    first = study.ask()
    first.suggest_float("x", 0.0, 1.0)
    study.tell(first, 0.1)
    return study


def test_in_reading_once_a_parameter_that_does_not_fit_raises_at_once_and_the_others_stay(
        tmp_path: Path) -> None:
    """As Optuna without the block: the wrong one raises where it is suggested, the ones
    suggested before and after it are written."""
    study = _study_with_history(tmp_path)
    trial = study.ask()
    with reading_once():
        y = trial.suggest_float("y", 0.0, 1.0)
        with pytest.raises(ValueError, match="Cannot set different distribution kind"):
            trial.suggest_categorical("x", ["a", "b"])  # x is a float in this study
        z = trial.suggest_int("z", 1, 3)
        other = open_storage(f"sqlite:///{tmp_path / 'store.db'}")
        assert other.get_trial(trial._trial_id).params == {}  # written when the block ends
    stored = optuna.load_study(study_name="s", storage=study._storage).trials[1]
    assert stored.params == {"y": y, "z": z}


def test_an_error_inside_reading_once_is_the_one_that_leaves_it(tmp_path: Path) -> None:
    study = _study_with_history(tmp_path)
    other = open_storage(f"sqlite:///{tmp_path / 'store.db'}")  # another worker
    for inside in (True, False):  # the block's end fails too: its trial was failed meanwhile
        trial = study.ask()
        with pytest.raises(ValueError if inside else optuna.exceptions.UpdateFinishedTrialError):
            with reading_once():
                trial.suggest_float("y", 0.0, 1.0)
                other.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
                if inside:
                    raise ValueError("inside the block")


def test_a_sqlite_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Reads begin a plain transaction (WAL readers never wait); only writes take the write lock
    up front. With every transaction taking it, a read waited out the busy timeout (60 s) while
    another connection -- another worker, or this thread's own open write -- held it."""
    db = tmp_path / "store.db"
    storage = open_storage(f"sqlite:///{db}")
    optuna.create_study(study_name="s", storage=storage)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE studies SET study_name = study_name")  # the write lock is held
    read: list = []
    reader = threading.Thread(target=lambda: read.append(storage.get_all_studies()),
                              daemon=True)
    reader.start()
    reader.join(10)
    writer.rollback()
    writer.close()
    assert read and read[0][0].study_name == "s"


def test_a_pickled_sqlite_storage_still_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    restored = pickle.loads(pickle.dumps(storage))
    begun: list[str] = []
    event.listen(restored.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: begun.append(statement)
                 if statement.startswith("BEGIN") else None)
    restored.set_study_user_attr(study_id, "k", 1)
    assert restored.get_study_user_attrs(study_id) == {"k": 1}
    assert begun == ["BEGIN IMMEDIATE", "BEGIN"]
