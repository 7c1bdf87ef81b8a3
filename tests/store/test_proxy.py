"""The study store behind ``hpo store serve`` (``grpc://``): connecting, the study lock the proxy
holds for its clients, heartbeats and stale trials handled on the server. A SQLite store behind
the proxy, so no database server is needed; tests/deploy/test_grpc_proxy.py runs whole studies
through it on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from clusters import StoreProxy, free_port
from optuna.trial import TrialState

from hpo_vidpred.errors import HpoError
from hpo_vidpred.store import lifecycle, open_storage, study_lock

grpc = pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")


@pytest.fixture
def proxy(tmp_path: Path):
    server = StoreProxy(f"sqlite:///{tmp_path / 'store.db'}")
    yield server
    server.stop()


def test_nothing_listening_is_one_line_within_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(HpoError) as info:
        open_storage(f"grpc://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 8
    text = str(info.value)
    assert text.startswith("cannot reach the study store grpc://127.0.0.1:") and "\n" not in text
    assert "hpo store serve" in text


def test_opening_waits_for_a_proxy_that_is_still_starting(tmp_path: Path) -> None:
    """A worker may open the store while ``hpo store serve`` is still starting (its imports take
    a second or more): the open waits for it instead of failing."""
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo_vidpred.cli", "store", "serve",
                               "--storage", f"sqlite:///{tmp_path / 's.db'}", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}")  # started before it listens
        assert storage.get_all_studies() == []
        storage.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)


def test_a_bare_optuna_proxy_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Optuna's own proxy has no study lock and no heartbeats: --trials could not be exact."""
    from optuna.storages._grpc.server import make_server

    port = free_port()
    server = make_server(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'bare.db'}"),
                         "127.0.0.1", port)
    server.start()
    try:
        with pytest.raises(HpoError, match="is a bare Optuna gRPC proxy, without hpo's study "
                                           "lock and heartbeats; serve the store with 'hpo "
                                           "store serve' instead"):
            open_storage(f"grpc://127.0.0.1:{port}")
    finally:
        server.stop(0)


def test_the_lock_through_the_proxy_is_exclusive_across_processes(proxy, tmp_path) -> None:
    from test_connect import _lock_is_exclusive

    _lock_is_exclusive(proxy.url, tmp_path / "counter")


def _hold_the_lock(url: str, held: str) -> None:
    with study_lock(open_storage(url), "held"):
        Path(held).write_text("held")
        time.sleep(120)


def test_a_killed_holder_releases_the_lock_at_once(proxy, tmp_path) -> None:
    import threading

    held = tmp_path / "held"
    holder = mp.get_context("spawn").Process(target=_hold_the_lock, args=(proxy.url, str(held)))
    holder.start()
    try:
        deadline = time.time() + 60
        while not held.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert held.exists()
        got = threading.Event()

        def take() -> None:
            with study_lock(open_storage(proxy.url), "held"):
                got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(2.0)  # held by the other process: not granted meanwhile
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert got.wait(20.0)  # the server saw its client go and let the lock go
        assert time.monotonic() - killed < 5
        waiter.join(10)
    finally:
        holder.kill()
        holder.join()


def test_heartbeats_reach_the_store_and_the_server_fails_stale_trials(proxy) -> None:
    storage = open_storage(proxy.url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="beats", storage=storage)
    silent = lifecycle.ask(study)  # one heartbeat, then none: its worker "died"
    silent.suggest_float("x", 0.0, 1.0)
    beating = lifecycle.ask(study)
    beating.suggest_float("x", 0.0, 1.0)
    beat = lifecycle.Heartbeat(study, beating, 1)
    try:
        time.sleep(3.5)
        lifecycle.fail_stale(study, orphan_age_s=8)
    finally:
        beat.stop()
    trials = study.get_trials(deepcopy=False)
    assert trials[silent.number].state == TrialState.FAIL
    assert trials[beating.number].state == TrialState.RUNNING  # its heartbeats arrived
    (retry_,) = [t for t in trials if t.system_attrs.get("failed_trial") == silent.number]
    assert retry_.state == TrialState.WAITING and retry_.params == trials[silent.number].params
    # what the database holds, read without the proxy
    direct = optuna.load_study(study_name="beats", storage=proxy.store_url)
    assert [t.state for t in direct.get_trials()] == [t.state for t in trials]


@pytest.mark.slow
def test_hpo_run_through_the_proxy_finishes_exactly_n_trials(proxy, tmp_path) -> None:
    import subprocess
    import sys

    from hpo_vidpred.store.records import trial_counts

    (tmp_path / "tiny.yaml").write_text(
        "fixed: {depth: 1, hidden: 4, kernel: 3, batch_size: 4}\n"
        "params:\n  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n")
    done = subprocess.run(
        [sys.executable, "-m", "hpo_vidpred.cli", "run", "--arch", "autoencoder", "--data",
         "mmnist", "--budget", "smoke", "--trials", "5", "--search-space", "tiny.yaml",
         "--storage", proxy.url, "--workers", "2", "--threads", "1", "--heartbeat", "2",
         "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"storage": "grpc://127.0.0.1:' in done.stdout  # the summary names the proxy
    study = optuna.load_study(study_name="autoencoder-mmnist", storage=proxy.store_url)
    counts = trial_counts(study.get_trials())
    assert counts["finished"] == len(study.trials) == 5 and counts["failed"] == 0
    with open_storage(proxy.store_url).engine.connect() as conn:  # beats went through the proxy
        beats = conn.exec_driver_sql("SELECT count(*) FROM trial_heartbeats").scalar()
    assert beats == 5
