"""Store calls ride out a lost connection (hpo_vidpred/store/retry.py): which errors are retried,
the backoff's limits, a state change whose commit was lost, no trial declared dead right after an
outage, and a real PostgreSQL restart under the storage and the study lock (a throwaway cluster,
tests/clusters.py; the whole-study version is tests/deploy/test_db_restart.py)."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from hpo_vidpred.errors import HpoError
from hpo_vidpred.store import lifecycle, open_storage, retry, store_failure, study_lock
from hpo_vidpred.store.records import trial_counts


def _wrapped(message: str) -> Exception:
    """A driver error as Optuna raises it: StorageInternalError from SQLAlchemy's error."""
    try:
        try:
            raise OperationalError("SELECT ...", {}, Exception(message))
        except OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("commit failed") from exc
    except Exception as exc:  # noqa: BLE001
        return exc


def test_store_failures_are_classified() -> None:
    """What a full, read-only or damaged store answers is said in one line (and not retried)."""
    assert "is full" in store_failure(_wrapped("database or disk is full"), "s.db")
    assert "cannot be written" in store_failure(_wrapped("attempt to write a readonly database"))
    assert "is damaged" in store_failure(_wrapped("file is not a database"))
    assert store_failure(_wrapped("UNIQUE constraint failed")) is None


def test_lost_and_refused_connections_are_retried_other_errors_are_not() -> None:
    for message in ("connection failed: connection to server at \"127.0.0.1\", port 5440 "
                    "failed: Connection refused", "FATAL:  terminating connection due to "
                    "administrator command", "server closed the connection unexpectedly",
                    "FATAL:  the database system is starting up", "consuming input failed"):
        assert retry.transient(_wrapped(message)), message
    for message in ("database or disk is full", "UNIQUE constraint failed: trials.number",
                    "attempt to write a readonly database", "database is locked"):
        assert not retry.transient(_wrapped(message)), message

    class Unavailable_(Exception):  # what grpc.RpcError answers for a proxy that is away
        def code(self):  # noqa: ANN202
            return type("Code", (), {"name": "UNAVAILABLE"})()

    assert retry.transient(Unavailable_("connection reset"))
    assert retry.transient(Unavailable_("x"))


def test_a_call_is_retried_until_the_connection_is_back(monkeypatch) -> None:
    monkeypatch.setattr(retry, "BACKOFF_S", (0.01,))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _wrapped("server closed the connection unexpectedly")
        return "ok"

    assert retry.call(flaky) == "ok" and len(calls) == 4
    assert retry.last_outage() > float("-inf")  # remembered: stale checks wait a while

    def broken() -> None:
        calls.append(1)
        raise _wrapped("database or disk is full")

    calls.clear()
    with pytest.raises(optuna.exceptions.StorageInternalError):
        retry.call(broken)
    assert len(calls) == 1  # not a connection error: at once

    monkeypatch.setattr(retry, "RECONNECT_S", 0.0)
    calls.clear()
    with pytest.raises(retry.StoreUnreachable) as info:
        retry.call(flaky, store="postgresql+psycopg://u:***@db/hpo")
    assert len(calls) == 1  # the time for retries is up
    assert str(info.value).startswith("cannot reach the study store postgresql+psycopg://u:***@db"
                                      "/hpo (server closed the connection unexpectedly) for 0 s;")
    assert isinstance(info.value.__cause__, optuna.exceptions.StorageInternalError)


def test_an_outage_has_one_deadline_said_when_it_starts_and_when_it_ends(monkeypatch,
                                                                          capsys) -> None:
    """The clean-up after an outage (failing and re-queueing the trial, the lock) does not wait
    its own retry time again: every call gives up at the deadline of the first one that met the
    outage (a dead proxy kept a run silent for 8 minutes, 120 s per clean-up call)."""
    monkeypatch.setattr(retry, "RECONNECT_S", 0.5)
    monkeypatch.setattr(retry, "BACKOFF_S", (0.05,))
    down, calls = True, []

    def store_call() -> str:
        calls.append(time.monotonic())
        if down:
            raise _wrapped("server closed the connection unexpectedly")
        return "ok"

    started = time.monotonic()
    with pytest.raises(retry.StoreUnreachable):
        retry.call(store_call, store="grpc://127.0.0.1:13101")
    assert 0.5 <= time.monotonic() - started < 5 and len(calls) > 2
    for _ in range(3):  # the clean-up: one attempt each, no new wait
        calls.clear()
        with pytest.raises(retry.StoreUnreachable, match="grpc://127.0.0.1:13101"):
            retry.call(store_call, store="grpc://127.0.0.1:13101")
        assert len(calls) == 1
    down = False
    assert retry.call(store_call) == "ok"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(
        "warning: the study store grpc://127.0.0.1:13101 is unreachable (server closed the "
        "connection unexpectedly); retrying until ")
    assert err[1].startswith("note: the study store grpc://127.0.0.1:13101 answers again")


def test_a_state_change_whose_commit_was_lost_counts_as_done(monkeypatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)
    storage = optuna.storages.RDBStorage("sqlite:///studies.db")
    study = optuna.create_study(study_name="lost-commit", storage=storage)
    trial_id = study.ask()._trial_id
    attempts = []

    def commit_then_lose_the_connection(*args):  # noqa: ANN002, ANN202
        attempts.append(1)
        done = storage.set_trial_state_values(*args)
        if len(attempts) == 1:  # committed, but the answer never came back
            raise _wrapped("server closed the connection unexpectedly")
        return done

    settled = lambda: storage.get_trial(trial_id).state == TrialState.COMPLETE  # noqa: E731
    assert retry.call(commit_then_lose_the_connection, trial_id, TrialState.COMPLETE, [1.0],
                      settled=settled) is True
    assert len(attempts) == 2 and storage.get_trial(trial_id).value == 1.0
    # a trial someone else finished otherwise is still an error
    other = study.ask()._trial_id
    storage.set_trial_state_values(other, TrialState.FAIL)
    attempts.clear()
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        retry.call(storage.set_trial_state_values, other, TrialState.COMPLETE, [1.0],
                   settled=lambda: storage.get_trial(other).state == TrialState.COMPLETE)


def test_no_trial_is_declared_dead_right_after_an_outage(monkeypatch) -> None:
    storage = open_storage("sqlite:///studies/hpo.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="quiet", storage=storage)
    trial = lifecycle.ask(study)  # one heartbeat, then silence
    time.sleep(2.2)
    monkeypatch.setitem(retry._outage, "at", time.monotonic())  # the store was just away
    lifecycle.fail_stale(study, orphan_age_s=4)
    assert study.trials[trial.number].state == TrialState.RUNNING  # its beats could not land
    monkeypatch.setitem(retry._outage, "at", time.monotonic() - 5)  # long enough ago
    lifecycle.fail_stale(study, orphan_age_s=4)
    assert study.trials[trial.number].state == TrialState.FAIL


def test_optunas_fallback_warning_is_dropped_for_a_lost_connection_only() -> None:
    """Optuna logs a lost connection in its trial query as "Caught an error from sqlalchemy ...
    Falling back" with the whole SQL: dropped (the outage is noted and the call retried); the
    same warning for another error still reaches the user."""
    logger = logging.getLogger("optuna.storages._rdb.storage")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, (), None)

    lost = record("Caught an error from sqlalchemy: (psycopg.errors.AdminShutdown) terminating "
                  "connection due to administrator command [SQL: SELECT ...]. Falling back to a "
                  "slower alternative.")
    assert retry.last_outage() == float("-inf")
    assert not logger.filter(lost)
    assert retry.last_outage() > float("-inf")
    other = record("Caught an error from sqlalchemy: too many SQL variables. Falling back to a "
                   "slower alternative.")
    assert logger.filter(other)


@pytest.mark.slow
def test_storage_calls_and_the_study_lock_wait_for_a_restarted_postgres(pg_cluster) -> None:
    storage = open_storage(pg_cluster.url, heartbeat_interval=2)
    study = optuna.create_study(study_name="restart", storage=storage)
    first = lifecycle.ask(study)
    study.tell(first, 0.5)
    running = lifecycle.ask(study)
    with study_lock(storage, "restart"):
        pass  # a pooled connection that the restart will kill
    pg_cluster.stop()
    threading.Timer(3.0, pg_cluster.start).start()
    started = time.monotonic()
    with study_lock(storage, "restart"):  # refused at first, then granted
        study.tell(running, 0.25)
        second = lifecycle.ask(study)
    study.tell(second, 0.75)
    waited = time.monotonic() - started
    assert 2.5 < waited < 60, waited
    assert time.monotonic() - retry.last_outage() < 60
    fresh = optuna.load_study(study_name="restart", storage=pg_cluster.url)
    assert [(t.state, t.value) for t in fresh.trials] == [
        (TrialState.COMPLETE, 0.5), (TrialState.COMPLETE, 0.25), (TrialState.COMPLETE, 0.75)]
    # a worker starting while the database restarts: its open waits (a user's first open of a
    # store that is not there fails at once)
    pg_cluster.stop()
    with pytest.raises(HpoError, match="cannot reach"):
        open_storage(pg_cluster.url, create_tables=False)
    threading.Timer(3.0, pg_cluster.start).start()
    started = time.monotonic()
    late = open_storage(pg_cluster.url, create_tables=False, ride_out=True)
    assert 2.5 < time.monotonic() - started < 60
    assert len(optuna.load_study(study_name="restart", storage=late).trials) == 3


def _end_the_lock_session(url: str) -> None:
    """What a database restart does to a session-level advisory lock: its session ends."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        ended = conn.execute(sqlalchemy.text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())")).scalars().all()
    engine.dispose()
    assert ended == [True]


@pytest.mark.postgres
def test_a_lock_lost_inside_its_block_says_so_and_a_trial_asked_over_the_count_is_handed_back(
        fresh_postgres, monkeypatch) -> None:
    from hpo_vidpred.study import trial as trial_path

    storage = open_storage(fresh_postgres)
    with study_lock(storage, "held") as hold:
        pass
    assert not hold.lost
    with study_lock(storage, "held") as hold:
        _end_the_lock_session(fresh_postgres)
    assert hold.lost

    # Worker A counts 1 finished of --trials 2 under the lock; the lock's session ends and
    # worker B (another store connection) counts and asks the second trial; then A asks.
    study = optuna.create_study(study_name="count", storage=storage)
    study.tell(lifecycle.ask(study), 0.5)
    b_storage = open_storage(fresh_postgres)
    other = optuna.load_study(study_name="count", storage=b_storage)
    real_ask = lifecycle.ask

    def ask_after_another_worker(s: optuna.Study) -> optuna.Trial:
        _end_the_lock_session(fresh_postgres)
        with study_lock(b_storage, "count"):  # granted: A no longer holds it
            real_ask(other)
        return real_ask(s)

    monkeypatch.setattr(trial_path.lifecycle, "ask", ask_after_another_worker)
    job = SimpleNamespace(run=SimpleNamespace(trials=2, heartbeat=60, grace=None),
                          plan=SimpleNamespace(name="count"))
    got = trial_path.take(study, storage, job, None, trial_path.Stale(time.monotonic()))
    assert got is None  # A's trial was one over: handed back, A waits
    trials = optuna.load_study(study_name="count", storage=fresh_postgres).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL]
    counts = trial_counts(trials)
    assert (counts["finished"], counts["running"], counts["surplus"]) == (1, 1, 1)
    assert trials[2].user_attrs["fail_reason"].startswith("not trained: one trial over --trials")
    # a queued trial (here a warm start's) is kept even over the count: its parameters stay
    study.enqueue_trial({})
    queued = real_ask(study)
    over = SimpleNamespace(run=SimpleNamespace(trials=1), plan=SimpleNamespace(name="count"))
    assert trial_path._within_trials(study, storage, over, queued) is queued
    assert trial_path._within_trials(study, storage, over, real_ask(study)) is None
