"""A trial's life in a shared study, as the workers of ``hpo run`` need it: asking for a trial
under the study lock, its heartbeat, failing and re-queueing a trial whose worker stopped.

What it needs of Optuna's private names (a study's storage and id, a trial's id, the heartbeat
table and the stale check) it reaches through :mod:`.optuna_private`, the one module that names
them.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select

from .optuna_private import (backend_of, cached_frozen_trial, heartbeat_enabled, heartbeat_table,
                             stale_trial_ids, storage_of, study_id_of, trial_id_of)
from .records import PAUSED, STATUS, SURPLUS
from .retry import last_outage

__all__ = ["EPOCHS", "PAUSED", "PROVENANCE", "STATUS", "TRAINING", "UNTIL", "Heartbeat",
           "RequeueOnce", "ask", "beat", "fail_and_requeue", "fail_stale", "set_system_attrs",
           "set_user_attrs", "trial_of", "trials"]

# A configuration that trains in segments (hpo_vidpred.study.segments) keeps its state in these
# system attributes of its (RUNNING) trial: status (STATUS, records), the epoch its segment
# trains to, the epochs in its paused run.
UNTIL, EPOCHS = "hpo:until", "hpo:epochs"
TRAINING = "training"


def trials(study: optuna.Study, states: Sequence[TrialState] | None = None
           ) -> list[FrozenTrial]:
    """The study's trials read from its storage without copies (one query)."""
    return storage_of(study).get_all_trials(study_id_of(study), deepcopy=False, states=states)


def set_user_attrs(trial: Any, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr(key, value)`` for each item, in one round trip where the store can
    (:meth:`hpo_vidpred.store.rdb.Storage.set_trial_user_attrs`), one call each elsewhere (the
    gRPC proxy, a fixed or frozen trial)."""
    if not attrs:
        return
    storage = getattr(trial, "storage", None)
    batch = getattr(backend_of(storage), "set_trial_user_attrs", None)
    if batch is None or not isinstance(trial, optuna.Trial):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    batch(trial_id_of(trial), attrs)
    cached_frozen_trial(trial).user_attrs.update(attrs)


def ask(study: optuna.Study, distributions: dict[str, Any] | None = None) -> optuna.Trial:
    """A new trial (or a queued one), with a first heartbeat so that it is stale-detectable;
    ``distributions``: fixed ones, as ``Study.ask`` takes them (``hpo fixed``)."""
    with warnings.catch_warnings():  # the caller beats, not optimize()
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed")
        trial = study.ask(distributions)
    storage_of(study).record_heartbeat(trial_id_of(trial))
    return trial


def fail_stale(study: optuna.Study, orphan_age_s: float) -> None:
    """Fail (and re-queue) trials whose worker stopped: those whose heartbeat went stale, and
    RUNNING trials older than ``orphan_age_s`` that never recorded a heartbeat (their process died
    between creating them and the first beat, which Optuna's stale check does not see).

    Not within ``orphan_age_s`` seconds after this process saw the store unreachable: the other
    workers' heartbeats could not reach it either, and their trials are alive. Through
    ``hpo store serve`` (a ``grpc://`` store) the server does this, with this store's heartbeat
    interval and grace period."""
    if time.monotonic() - last_outage() < orphan_age_s:
        return
    storage = storage_of(study)
    if callable(getattr(storage, "fail_stale", None)):  # grpc_client.ProxyStorage
        storage.fail_stale(study.study_name, orphan_age_s)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _fail_stale_trials(study)
    cutoff = datetime.now() - timedelta(seconds=orphan_age_s)
    old = [trial_id_of(t) for t in trials(study, (TrialState.RUNNING,))
           if t.datetime_start is not None and t.datetime_start < cutoff]
    retry = storage.get_heartbeat_stale_trial_callback()
    rdb = backend_of(storage)  # Optuna wraps the RDB storage in a cache
    for trial_id in _without_heartbeat(rdb, old):
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # it ended meanwhile
            continue
        if failed and retry is not None:
            retry(study, copy.deepcopy(storage.get_trial(trial_id)))


def _fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, for trials that train in segments too: a configuration
    paused at a rung has no worker and no heartbeat, and is left alone; one whose worker died
    while it trained a segment after a pause goes back to paused at its rung (its paused run is
    still there), losing only that segment; every other stale trial is failed and re-queued."""
    storage = storage_of(study)
    if not heartbeat_enabled(storage):
        return
    failed = []
    for trial_id in stale_trial_ids(storage, study_id_of(study)):
        attrs = storage.get_trial(trial_id).system_attrs
        if attrs.get(STATUS) == PAUSED:
            continue
        if attrs.get(STATUS) == TRAINING and attrs.get(EPOCHS):
            storage.set_trial_system_attr(trial_id, STATUS, PAUSED)
            continue
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:  # failed by another process
            pass
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial_id in failed if callback is not None else ():
        callback(study, copy.deepcopy(storage.get_trial(trial_id)))


def _without_heartbeat(storage: Any, trial_ids: list[int]) -> list[int]:
    """The trials among ``trial_ids`` that never recorded a heartbeat (Optuna's heartbeat table,
    a private model: on a schema it does not know, [])."""
    if not trial_ids:
        return []
    try:
        table = heartbeat_table()
        with storage.engine.connect() as conn:
            beating = {row[0] for row in conn.execute(
                select(table.c.trial_id).where(table.c.trial_id.in_(trial_ids)))}
    except Exception:  # noqa: BLE001 (a changed private schema must not stop a study)
        return []
    return [t for t in trial_ids if t not in beating]


def fail_and_requeue(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Mark a trial that never got to its end FAIL and queue its parameters again.

    The retry is queued first: a trial already FAIL without its retry counts as finished, and a
    worker counting in between could end the study one trial short (the retry, queued after it
    left, would never run). Queued first, the trial counts as running until it is FAIL. If the
    process dies in between, the trial goes stale and :class:`RequeueOnce` sees its retry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        trial.set_user_attr("fail_reason", reason)
        frozen = _retry_of(copy.deepcopy(storage_of(study).get_trial(trial_id_of(trial))))
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)
        study.tell(trial, state=TrialState.FAIL)


# User attributes that say where a trial's parameters came from: its retry keeps them. The
# attempt's own (fail_reason, worker, results so far) stay with the failed attempt.
PROVENANCE = ("warm_start",)


def _retry_of(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` as its retry is queued: its parameters and provenance, none of its results (a
    Ctrl-C's retry lost its warm_start label, a killed worker's carried its results)."""
    retry = copy.copy(trial)
    retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in PROVENANCE}
    return retry


class RequeueOnce(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's re-queueing of a stale trial (at most ``max_retry`` times), unless the trial has
    a retry queued already (:func:`fail_and_requeue` queues it before failing the trial)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if any((t.system_attrs.get("retry_history") or [None])[-1] == trial.number
               for t in trials(study)):
            return
        super().__call__(study, _retry_of(trial))


class Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds on a thread until stopped; as a
    context manager, for as long as its block runs (stopped on every way out)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(storage_of(study), trial_id_of(trial), interval), daemon=True)
        self._thread.start()

    def _beat(self, storage: Any, trial_id: int, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 (a transient database error; the next beat retries)
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def beat(study: optuna.Study, trial: Any) -> None:
    """Record a heartbeat of ``trial`` now (a paused configuration that a worker resumes: before
    the study lock is released, so that no stale check sees it training without one)."""
    storage_of(study).record_heartbeat(trial_id_of(trial))


def hand_back_surplus(study: optuna.Study, trial: optuna.Trial) -> None:
    """End an untrained trial that was asked beyond ``--trials`` (two workers asked at once: the
    study lock was lost in a database restart): FAIL, marked so that no count includes it."""
    storage_of(study).set_trial_system_attr(trial_id_of(trial), SURPLUS, True)
    trial.set_user_attr("fail_reason", "not trained: one trial over --trials (the study lock was "
                        "lost in a database restart while it was asked)")
    study.tell(trial, state=TrialState.FAIL)


def set_system_attrs(study: optuna.Study, trial: Any, attrs: dict[str, Any]) -> None:
    """Set system attributes of a running trial (the promotion scheduler's records,
    :mod:`hpo_vidpred.study.segments`)."""
    for key, value in attrs.items():
        storage_of(study).set_trial_system_attr(trial_id_of(trial), key, value)


def trial_of(study: optuna.Study, number: int) -> optuna.Trial:
    """The running trial ``number`` of ``study`` as a live trial (to report to and tell), from
    any process: a paused configuration resumed by another worker."""
    trial_id = storage_of(study).get_trial_id_from_study_id_trial_number(study_id_of(study),
                                                                         number)
    return optuna.trial.Trial(study, trial_id)
