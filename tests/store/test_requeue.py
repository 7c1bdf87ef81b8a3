"""An interrupted trial (a cancelled Slurm task, a deleted pod) is re-queued without a moment in
which it counts as finished, and never twice."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hpo_vidpred.store import lifecycle, open_storage, retry
from hpo_vidpred.store.records import trial_counts


def test_the_retry_is_queued_before_the_trial_counts_as_finished(monkeypatch) -> None:
    storage = open_storage("sqlite:///studies/hpo.db", heartbeat_interval=1)
    study = optuna.create_study(study_name="requeue", storage=storage)
    trial = lifecycle.ask(study)
    trial.suggest_float("x", 0.0, 1.0)
    seen = []
    tell = study.tell

    def watched_tell(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(trial_counts(study.get_trials(deepcopy=False)))  # what a worker counts now
        return tell(*args, **kwargs)

    monkeypatch.setattr(study, "tell", watched_tell)
    lifecycle.fail_and_requeue(study, trial, "interrupted")
    # just before the trial became FAIL, it counted as running and its retry was waiting
    assert seen[0]["finished"] == 0 and seen[0]["running"] == seen[0]["waiting"] == 1
    counts = trial_counts(study.get_trials())
    assert counts["finished"] == 0 and counts["retried"] == counts["waiting"] == 1


def test_a_stale_trial_with_its_retry_queued_is_not_queued_again(monkeypatch) -> None:
    """The process died between queueing the retry and failing the trial: the trial goes stale,
    and the stale check fails it without a second retry."""
    storage = open_storage("sqlite:///studies/hpo.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="once", storage=storage)
    trial = lifecycle.ask(study)
    trial.suggest_float("x", 0.0, 1.0)
    frozen = study._storage.get_trial(trial._trial_id)
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)  # the retry, then death
    time.sleep(2.5)
    monkeypatch.setitem(retry._outage, "at", float("-inf"))  # no outage seen by this process
    lifecycle.fail_stale(study, orphan_age_s=10)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # one retry, not two
    assert trial_counts(study.get_trials())["retried"] == 1


@pytest.mark.parametrize("how", ["interrupted", "died"])
def test_a_retry_keeps_where_its_parameters_came_from_and_none_of_the_attempts_results(
        how: str) -> None:
    """Ctrl-C's retry lost its warm_start label (every attribute was cleared); a killed worker's
    retry carried the attempt's results. Both keep the provenance and drop the rest."""
    storage = open_storage("sqlite:///studies/hpo.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="provenance", storage=storage)
    study.enqueue_trial({"x": 0.5}, user_attrs={"warm_start": "study first trial 3"})
    trial = lifecycle.ask(study)
    trial.suggest_float("x", 0.0, 1.0)
    lifecycle.set_user_attrs(trial, {"worker": "host:1", "val_mse_curve": [0.1]})
    if how == "interrupted":
        lifecycle.fail_and_requeue(study, trial, "interrupted")
    else:
        time.sleep(2.5)  # its one heartbeat is older than the grace period
        lifecycle.fail_stale(study, orphan_age_s=10)
    attempt, retry_ = study.get_trials()
    assert attempt.state == TrialState.FAIL and attempt.user_attrs["worker"] == "host:1"
    assert retry_.state == TrialState.WAITING and retry_.params == {"x": 0.5}
    assert retry_.user_attrs == {"warm_start": "study first trial 3"}
