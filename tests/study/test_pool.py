"""The worker pool: exact trial counts over processes, killed workers, interrupts, errors.

Most tests here are about the runner, so they use a cheap objective (it samples the real search
space and sleeps instead of training); the end-to-end one runs ``hpo run`` with real training.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
from objectives import Stub
from optuna.trial import TrialState

from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import RunSpec, StudySpec
from hpo_vidpred.store import lifecycle, open_storage
from hpo_vidpred.study.objective import Outcome
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.store.records import trial_counts
from hpo_vidpred.devices import resolve_devices
from hpo_vidpred.study.pool import run

SQLITE = "sqlite:///studies/hpo.db"


class Sleepy(Stub):
    """Samples the search space, reports two 'epochs' of ``seconds`` each, completes."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds

    def __call__(self, trial, plan, device, artifact_store, eta=None) -> Outcome:
        values = plan.space.sample(trial)
        for epoch in (1, 2):
            time.sleep(self.seconds)
            trial.report(values["lr"] / epoch, epoch)
        return Outcome(TrialState.COMPLETE, value=values["lr"] / 2)


class Scripted(Sleepy):
    """Raises ``errors[i]`` (an exception instance, or None: complete) at the i-th call."""

    def __init__(self, errors) -> None:
        super().__init__(0.0)
        self.errors, self.calls = list(errors), 0

    def __call__(self, trial, plan, device, artifact_store, eta=None) -> Outcome:
        error = self.errors[self.calls] if self.calls < len(self.errors) else None
        self.calls += 1
        if error is not None:
            plan.space.sample(trial)
            raise error
        return super().__call__(trial, plan, device, artifact_store)


class DeclaredDead(Sleepy):
    """Its first trial is failed and re-queued by "another worker" (as a stale heartbeat would
    have it) while it trains: ``when`` "report" (the next report raises) or "tell" (it returns a
    result for a trial that is no longer running)."""

    def __init__(self, when: str) -> None:
        super().__init__(0.0)
        self.when, self.calls = when, 0

    def __call__(self, trial, plan, device, artifact_store, eta=None) -> Outcome:
        self.calls += 1
        if self.calls > 1:
            return super().__call__(trial, plan, device, artifact_store)
        values = plan.space.sample(trial)
        study = trial.study
        frozen = study._storage.get_trial(trial._trial_id)
        lifecycle.RequeueOnce()(study, frozen)  # what fail_stale does in another worker
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if self.when == "report":
            trial.report(values["lr"], 1)
        return Outcome(TrialState.COMPLETE, value=values["lr"])


def _plan(name: str | None = None):
    return plan_study(StudySpec(budget="smoke", pruner="none",
                                name=name or f"test-{uuid.uuid4().hex[:8]}"))


def _trials(url: str, name: str):
    storage = open_storage(url)  # like the workers: never races them creating a new file
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _assert_exact(url: str, name: str, target: int, retried: int = 0) -> None:
    trials = _trials(url, name)
    counts = trial_counts(trials)
    assert counts["finished"] == target and counts["complete"] == target
    assert counts["running"] == counts["waiting"] == 0
    assert counts["retried"] == retried and len(trials) == target + retried
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none twice or lost


def _run_killing_one_worker(url: str, name: str, target: int) -> dict:
    """Run 4 workers in a thread; SIGKILL the process of the first trial seen running."""
    plan = _plan(name)
    result: dict = {}
    settings = RunSpec(storage_url=url, trials=target, workers=4, heartbeat=1, grace=3,
                       progress=False)
    # (a trial long enough that the one seen running is still running when the kill lands,
    # also on a loaded machine)
    thread = threading.Thread(target=lambda: result.update(run(plan, settings,
                                                               objective=Sleepy(1.5))))
    thread.start()
    killed = None
    deadline = time.time() + 90
    while killed is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            running = [t for t in _trials(url, name) if t.state == TrialState.RUNNING
                       and "worker" in t.user_attrs and t.params]  # inside the objective
        except KeyError:  # the study is not created yet
            continue
        if running:
            killed = running[0]
            os.kill(int(killed.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    thread.join(180)
    assert killed is not None and not thread.is_alive()
    result["killed"] = killed
    return result


def _check_killed_run(url: str, name: str, target: int, result: dict) -> None:
    _assert_exact(url, name, target, retried=1)
    trials = _trials(url, name)
    killed = trials[result["killed"].number]
    assert killed.state == TrialState.FAIL  # failed after the grace period, not RUNNING forever
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert killed.params.items() <= retry[0].params.items()  # re-run with the same parameters
    assert any("exit code -9" in note for note in result["notes"])
    # the killed trial never finished in this run: counted once, by its retry
    assert result["ran_this_run"] == target


# --------------------------------------------------------------------------- SQLite
def test_four_workers_finish_exactly_the_requested_trials_on_sqlite() -> None:
    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=10, workers=4, heartbeat=2,
                                progress=False), objective=Sleepy(0.2))
    _assert_exact(SQLITE, plan.name, 10)
    assert summary["trials"]["finished"] == 10 and summary["ran_this_run"] == 10
    workers = {t.user_attrs["worker"] for t in _trials(SQLITE, plan.name)}
    assert len(workers) > 1  # the trials really were shared between processes


@pytest.mark.slow
def test_a_killed_worker_trial_is_failed_and_rerun_on_sqlite() -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    result = _run_killing_one_worker(SQLITE, name, 6)
    _check_killed_run(SQLITE, name, 6, result)


@pytest.mark.slow
def test_hpo_run_with_four_real_workers_on_sqlite() -> None:
    """End to end: real training in 4 spawned processes, one SQLite file, no lock errors."""
    proc = subprocess.run(
        [sys.executable, "-m", "hpo_vidpred.cli", "run", "--arch", "autoencoder", "--data",
         "mmnist", "--trials", "6", "--budget", "smoke", "--workers", "4", "--quiet", "--json"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "locked" not in proc.stderr
    trials = _trials(SQLITE, "autoencoder-mmnist")
    counts = trial_counts(trials)
    assert counts["finished"] == 6 and len(trials) == 6 and counts["running"] == 0
    assert all(t.user_attrs.get("stop_reason") for t in trials)


# --------------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_four_workers_finish_exactly_the_requested_trials_on_postgres(postgres_url) -> None:
    plan = _plan()
    try:
        run(plan, RunSpec(storage_url=postgres_url, trials=12, workers=4, heartbeat=2,
                          progress=False), objective=Sleepy(0.2))
        _assert_exact(postgres_url, plan.name, 12)
    finally:
        optuna.delete_study(study_name=plan.name, storage=postgres_url)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_worker_trial_is_failed_and_rerun_on_postgres(postgres_url) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        result = _run_killing_one_worker(postgres_url, name, 6)
        _check_killed_run(postgres_url, name, 6, result)
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.postgres
def test_a_second_run_joins_the_study_on_postgres(postgres_url) -> None:
    """What another machine does: the same plan and URL continue the same study."""
    plan = _plan()
    try:
        run(plan, RunSpec(storage_url=postgres_url, trials=2,
                          progress=False), objective=Sleepy(0.0))
        summary = run(_plan(plan.name), RunSpec(storage_url=postgres_url, trials=5,
                                                progress=False), objective=Sleepy(0.0))
        assert summary["ran_this_run"] == 3
        _assert_exact(postgres_url, plan.name, 5)
    finally:
        optuna.delete_study(study_name=plan.name, storage=postgres_url)


# --------------------------------------------------------------------------- in one process
def test_an_interrupted_trial_is_queued_and_runs_first_next_time() -> None:
    plan = _plan()
    with pytest.raises(KeyboardInterrupt):
        run(plan, RunSpec(storage_url=SQLITE, trials=3,
                          progress=False), objective=Scripted([None, KeyboardInterrupt()]))
    trials = _trials(SQLITE, plan.name)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.WAITING]
    assert trials[1].user_attrs["fail_reason"] == "interrupted"
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=3,
                                progress=False), objective=Sleepy(0.0))
    trials = _trials(SQLITE, plan.name)
    assert trials[2].state == TrialState.COMPLETE and trials[2].params == trials[1].params
    assert summary["trials"]["finished"] == 3 and summary["trials"]["retried"] == 1


def test_a_trial_left_running_without_a_heartbeat_is_failed_and_rerun() -> None:
    """A process that died between creating a trial and its first heartbeat."""
    plan = _plan()
    run(plan, RunSpec(storage_url=SQLITE, trials=1, progress=False), objective=Sleepy(0.0))
    orphan = optuna.load_study(study_name=plan.name, storage=open_storage(SQLITE)).ask()
    orphan.suggest_float("lr", 1e-4, 1e-2, log=True)
    time.sleep(2.5)  # older than twice the grace period
    # without the orphan check: waits, fails
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=2, heartbeat=1, grace=1,
                                progress=False, timeout=30), objective=Sleepy(0.0))
    trials = _trials(SQLITE, plan.name)
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[-1].system_attrs["failed_trial"] == orphan.number
    assert trials[-1].params["lr"] == orphan.params["lr"]
    assert summary["trials"]["finished"] == 2 and summary["trials"]["retried"] == 1


def test_an_objective_error_is_recorded_and_the_study_goes_on() -> None:
    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=3,
                                progress=False), objective=Scripted([ValueError("bad shape")]))
    assert (summary["trials"]["failed"], summary["trials"]["complete"]) == (1, 2)
    assert summary["failures"] == [{"number": 0, "reason": "ValueError: bad shape"}]


@pytest.mark.parametrize("when", ["report", "tell"])
def test_a_trial_declared_dead_meanwhile_is_dropped_and_the_worker_goes_on(when) -> None:
    """A live trial whose heartbeat came late is failed by another worker and re-queued; its
    worker must not crash when it next writes (a run that lost a worker this way exited 2)."""
    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=3, workers=1,
                                progress=False), objective=DeclaredDead(when))
    trials = _trials(SQLITE, plan.name)
    counts = trial_counts(trials)
    assert (counts["complete"], counts["failed"], counts["retried"]) == (3, 0, 1)
    assert trials[0].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert summary["trials"]["complete"] == 3


def test_a_worker_stops_after_repeated_errors() -> None:
    plan = _plan()
    with pytest.raises(HpoError, match="3 trials in a row raised an error, the last: "
                                       "RuntimeError: boom"):
        run(plan, RunSpec(storage_url=SQLITE, trials=10,
                          progress=False), objective=Scripted([RuntimeError("boom")] * 5))
    assert len(_trials(SQLITE, plan.name)) == 3


def test_no_trial_starts_after_the_timeout() -> None:
    plan = _plan()
    started = time.time()
    # one worker, in this process: no worker start-up (seconds on a loaded machine) in the way
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=50, timeout=3.0, workers=1,
                                progress=False), objective=Sleepy(0.5))
    assert time.time() - started < 8
    assert 1 <= summary["trials"]["finished"] <= 3, summary["trials"]


def test_default_workers_follow_the_device(monkeypatch) -> None:
    from hpo_vidpred.devices import CPU_MAX_WORKERS, default_workers, resolve_workers

    for cores, expected in ((1, 1), (2, 2), (16, CPU_MAX_WORKERS)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers("cpu") == expected == resolve_workers(0, ["cpu"])
    assert resolve_workers(3, ["cpu"]) == 3
    # on GPUs: 4 per GPU while there are two cores for each, summed over the GPUs
    import torch

    from hpo_vidpred import devices

    monkeypatch.setattr(devices, "resolve_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default_workers("cuda:0") == 4 and resolve_workers(0, ["cuda:0", "cuda:1"]) == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert default_workers("cuda:0") == 2
    with pytest.raises(HpoError, match="--workers must be at least 1"):
        resolve_workers(-1, ["cpu"])


def test_devices() -> None:
    assert resolve_devices("cpu,cpu") == ["cpu", "cpu"]
    if not __import__("torch").cuda.is_available():
        assert resolve_devices("auto") == ["cpu"]
        with pytest.raises(HpoError, match="CUDA is not available"):
            resolve_devices("0")
    with pytest.raises(HpoError, match="unknown device"):
        resolve_devices("tpu")


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_hpo_run_and_queues_the_running_trial(workers: str) -> None:
    # The small budget's epochs with a tiny network: a trial takes seconds, steps are short.
    with open("space.yaml", "w") as f:
        f.write("fixed: {depth: 1, hidden: 4, kernel: 3, batch_size: 4}\n"
                "params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo_vidpred.cli", "run", "--arch", "autoencoder", "--data",
         "mmnist", "--trials", "3", "--budget", "small", "--search-space", "space.yaml",
         "--workers", workers, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                if any(t.state == TrialState.RUNNING for t in _trials(SQLITE, "autoencoder-mmnist")):
                    break
            except (KeyError, HpoError):  # no store or no study yet
                continue
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; everything finished so far is stored" in err
    trials = _trials(SQLITE, "autoencoder-mmnist")
    # every trial that was running is failed as interrupted and queued again with its parameters
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert 1 <= len(failed) <= int(workers) and len(waiting) == len(failed)
    assert all(t.user_attrs["fail_reason"] == "interrupted" for t in failed)
    assert sorted(t.params["lr"] for t in waiting) == sorted(t.params["lr"] for t in failed)
    assert all("fail_reason" not in t.user_attrs for t in waiting)
    assert trial_counts(trials)["running"] == 0
