"""Optuna's own storage contract (``optuna.testing.pytest_storages.StorageTestCase``, the tests
Optuna runs against each of its storages) run against the storage ``hpo`` opens
(``store.open_storage``: ``rdb.Storage`` on SQLite and PostgreSQL, ``ProxyStorage`` through
``hpo store serve``), plain, inside ``rdb.reading_once()`` (what a trial's sampling runs in) and
through Optuna's cache; and the heartbeat contract Optuna tests its RDB storage for (a silent
trial failed and retried with its parameters, a beating one left alone)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.testing.pytest_storages import StorageTestCase

from hpo_vidpred.store import open_storage
from hpo_vidpred.store.rdb import reading_once


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store with its schema, copied for each test (creating the schema takes longer
    than the test)."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    open_storage(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One ``hpo store serve`` (in front of SQLite) for the module's tests."""
    pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")
    from clusters import StoreProxy

    proxy = StoreProxy(f"sqlite:///{tmp_path_factory.mktemp('served') / 'store.db'}")
    yield proxy
    proxy.stop()


def _empty(storage) -> None:  # noqa: ANN001
    for study in storage.get_all_studies():
        storage.delete_study(study._study_id)


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path):
    shutil.copy(sqlite_template, tmp_path / "store.db")
    storage = open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    yield storage
    storage.engine.dispose()


@pytest.fixture(scope="module")
def _postgres_storage(module_postgres: str):
    """One storage for the module's tests (opening one checks the schema: longer than a test)."""
    storage = open_storage(module_postgres)
    yield storage
    storage.engine.dispose()


@pytest.fixture
def postgres_store(_postgres_storage):  # noqa: ANN001
    _empty(_postgres_storage)
    yield _postgres_storage


@pytest.fixture
def proxy_store(served):  # noqa: ANN001
    storage = open_storage(served.url)
    _empty(storage)
    yield storage
    storage.close()


# The ways ``hpo`` uses the storage: plain, inside reading_once (a trial's sampling), and wrapped
# in Optuna's cache inside reading_once (what a study object's sampler reads through). The
# storage code is the same for both databases: SQLite runs it plain and through the cache,
# PostgreSQL inside reading_once (its writes are the plain ones; the end-to-end tests on
# PostgreSQL run it plain). Through the proxy the client is ProxyStorage, which reading_once
# does not touch: plain only.
MODES = {"sqlite": ("plain", "cached"), "postgres": ("reading_once",), "proxy": ("plain",)}


@pytest.fixture(params=[pytest.param((b, m), id=f"{b}-{m}", marks=[pytest.mark.postgres]
                                     if b == "postgres" else [])
                        for b, modes in MODES.items() for m in modes])
def storage(request: pytest.FixtureRequest):
    kind, mode = request.param
    backend = request.getfixturevalue(f"{kind}_store")
    if mode == "plain":
        yield backend
        return
    with reading_once():
        yield optuna.storages.get_storage(backend) if mode == "cached" else backend


class TestStorageContract(StorageTestCase):
    """Every test of Optuna's storage contract on each backend and in each mode."""

    @pytest.mark.parametrize("param_names", [["a", "b"], ["b", "a"]])
    def test_get_all_trials_params_order(self, storage, param_names: list[str]) -> None:
        if not isinstance(storage, optuna.storages.GrpcStorageProxy):
            super().test_get_all_trials_params_order(storage, param_names)
            return
        # Optuna's gRPC proxy carries a trial's parameters in a protobuf map, which keeps their
        # values but not their order (Optuna's own GrpcStorageProxy fails this test too)
        study_id = storage.create_new_study(directions=[StudyDirection.MINIMIZE])
        trial_id = storage.create_new_trial(study_id)
        for name in param_names:
            storage.set_trial_param(trial_id, name, 1.0, FloatDistribution(0.0, 2.0))
        assert storage.get_all_trials(study_id)[0].params == dict.fromkeys(param_names, 1.0)


# --------------------------------------------------------------------------- heartbeats
@pytest.fixture(params=[pytest.param(("sqlite", m), id=f"sqlite-{m}") for m in MODES["sqlite"]
                        if m != "cached"]
                + [pytest.param(("postgres", m), id=f"postgres-{m}", marks=pytest.mark.postgres)
                   for m in MODES["postgres"]])
def heartbeat_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A store URL with no study in it, plain or inside reading_once."""
    kind, mode = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("module_postgres")
        cleaner = open_storage(url)
        _empty(cleaner)
        cleaner.engine.dispose()
    if mode == "plain":
        yield url
        return
    with reading_once():
        yield url


def _beating(url: str, callback) -> optuna.storages.BaseStorage:  # noqa: ANN001
    return open_storage(url, heartbeat_interval=1, grace_period=2) if callback is None else \
        _with_callback(open_storage(url, heartbeat_interval=1, grace_period=2), callback)


def _with_callback(storage, callback):  # noqa: ANN001, ANN202
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = callback
    return storage


def test_a_silent_trial_is_failed_and_retried_and_a_beating_one_is_left(heartbeat_url) -> None:
    """Optuna's heartbeat contract (its RDB storage's tests): after the grace period a trial
    whose heartbeat stopped is stale, failed, and retried with its parameters, distributions
    and user attributes (not its intermediate values, unless asked); a trial that beats, and
    the trials of other studies, are left running; max_retry=0 fails without a retry."""
    import warnings

    from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
    from optuna.trial import TrialState

    from hpo_vidpred.store import lifecycle

    seen = []

    def watch(study, trial) -> None:  # noqa: ANN001
        seen.append((study.study_name, trial.user_attrs["origin"]))
        RetryHeartbeatStaleTrialCallback()(study, trial)

    callbacks = {"retried": watch, "kept": RetryHeartbeatStaleTrialCallback(
        inherit_intermediate_values=True), "once": RetryHeartbeatStaleTrialCallback(max_retry=0)}
    studies, silent = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, callback in callbacks.items():
            study = optuna.create_study(study_name=name, storage=_beating(heartbeat_url,
                                                                            callback))
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            trial.report(0.5, 1)
            trial.set_user_attr("origin", name)
            study._storage.record_heartbeat(trial._trial_id)
            studies[name], silent[name] = study, trial
        alive = studies["retried"].ask()
        beat = lifecycle.Heartbeat(studies["retried"], alive, 1)
        other = optuna.create_study(study_name="other", storage=_beating(heartbeat_url, None))
        elsewhere = other.ask()
        other._storage.record_heartbeat(elsewhere._trial_id)
        try:
            time.sleep(3.5)
            stale = studies["retried"]._storage._get_stale_trial_ids(studies["retried"]._study_id)
            assert stale == [silent["retried"]._trial_id]
            for study in studies.values():
                fail_stale_trials(study)
        finally:
            beat.stop()
    assert seen == [("retried", "retried")]
    for name, study in studies.items():
        trials = study.get_trials()
        assert trials[0].state == TrialState.FAIL
        if name == "once":
            assert len(trials) == 1
            continue
        retry = trials[-1]
        assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
        assert retry.params == trials[0].params and retry.distributions == trials[0].distributions
        assert retry.user_attrs == {"origin": name}
        assert retry.intermediate_values == ({1: 0.5} if name == "kept" else {})
    assert studies["retried"].trials[1].state == TrialState.RUNNING  # it beat
    assert other.trials[0].state == TrialState.RUNNING  # another study: not this check's
