"""One trial's life in a shared study, in one place: under the study lock a worker fails stale
trials and takes the next task (:func:`take`: a new trial, a queued one, or with ``--scheduler
promote`` a configuration's next segment); it trains it while a heartbeat keeps it alive
(:func:`run_task`, with the objective of :mod:`.objective`), and tells the study how it ended.

A trial that cannot finish for a reason outside its configuration (Ctrl-C, SIGTERM, the data, a
full disk) is given back: failed and queued again to run first, or, a configuration resumed from
a paused run, paused again at its rung. A trial failed meanwhile by another worker (its
heartbeat came late) is dropped here; its retry runs it. ``--trials N`` is the number of
configurations of the whole study, over all workers and machines, never overshot: a fifo
worker starts a trial only while finished + running + waiting is below N (a failed trial that
was queued again counts once, by its retry); a promotion study counts its configurations the
same way (:mod:`.promote`).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from ..errors import HpoError
from ..interrupts import take_interrupt
from ..specs import RunSpec
from ..store import lifecycle, mask_url, store_failure, study_lock
from ..store.records import trained_params, trial_counts
from . import segments
from .objective import Outcome, TrainObjective
from .plan import StudyPlan
from .progress import Eta, TrialEnded, TrialStarted
from .promote import Promotion, Step
from .summary import eta_line

__all__ = ["Job", "Objective", "STOP", "run_task", "take"]

STOP = "stop"  # what take() returns when the study needs nothing more


class Objective(Protocol):
    """What a worker runs per trial (:class:`~hpo_vidpred.study.objective.TrainObjective`)."""

    def check(self, plan: StudyPlan) -> None: ...
    def prepare(self, plan: StudyPlan, device: str) -> None: ...
    def baselines(self, plan: StudyPlan, device: str) -> dict[str, Any] | None: ...
    def __call__(self, trial: optuna.Trial, plan: StudyPlan, device: str, artifact_store: Any,
                 eta: Callable[[float], None] | None = None) -> Outcome: ...


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs (picklable: it crosses the spawn boundary): the plan,
    the run's settings as the command line gave them, and what the run resolved."""

    plan: StudyPlan
    run: RunSpec
    artifacts: str  # the artifact folder (paused runs live below it too)
    deadline: float | None = None  # time.time() after which no trial starts
    objective: Any = field(default_factory=TrainObjective)
    seed_base: int = 0  # trials in the study when the run began (fresh sampler seeds on resume)

    @property
    def poll_s(self) -> float:
        return min(2.0, self.run.heartbeat / 2)


@dataclass
class Stale:
    """When this worker last looked for dead trials (once per heartbeat interval: they show
    after their grace period anyway)."""

    checked: float = -math.inf


def take(study: optuna.Study, storage: Any, job: Job, scheduler: Promotion | None,
         stale: Stale, ended: Callable[[list[int]], None] = lambda numbers: None
         ) -> optuna.Trial | segments.Segment | str | None:
    """Under the study lock: fail stale trials, then the next task -- a trial (fifo), a
    segment (promote), None (wait: a running trial may still come back), or :data:`STOP`
    (``ended`` is told the configurations a promotion study's end stopped)."""
    run, plan = job.run, job.plan
    task: Any = None
    try:
        with study_lock(storage, plan.name) as hold:
            if time.monotonic() - stale.checked >= run.heartbeat:
                lifecycle.fail_stale(study, 2 * (run.grace or 2 * run.heartbeat))
                stale.checked = time.monotonic()
            if scheduler is not None:
                task = segments.begin(study, scheduler, plan.sample_space.sample,
                                      ask=lifecycle.ask, beat=lifecycle.beat)
                if isinstance(task, Step):
                    if task.kind == "finish":
                        stopped = segments.finish(study)
                        _remove_paused(job, stopped)
                        ended(stopped)
                        return STOP
                    return None
                return task
            counts = trial_counts(lifecycle.trials(study))
            if counts["finished"] >= run.trials:
                return STOP
            if counts["waiting"] or counts["finished"] + counts["running"] < run.trials:
                task = lifecycle.ask(study)
        if hold.lost and task is not None:
            task = _within_trials(study, storage, job, task)
        return task
    except KeyboardInterrupt:
        take_interrupt()
        if task is not None and task != STOP and not isinstance(task, Step):
            _give_back(study, task, "interrupted")  # taken but not started
        raise


def _within_trials(study: optuna.Study, storage: Any, job: Job,
                   trial: optuna.Trial) -> optuna.Trial | None:
    """The study lock was lost while this worker counted and asked (a database restart ends the
    session that held it), so another worker may have asked too: count again under the lock and
    hand this trial back untrained if it is one over ``--trials`` (None: wait, then take again).
    A queued trial (a retry, whose failure does not count; a warm start) is never over: a worker
    takes it whatever the count, and handing it back would lose its parameters."""
    with study_lock(storage, job.plan.name):
        trials = lifecycle.trials(study)
        counts = trial_counts(trials)
        queued = {"failed_trial", "fixed_params"} & set(trials[trial.number].system_attrs)
        if queued or counts["finished"] + counts["running"] <= job.run.trials:
            return trial
        lifecycle.hand_back_surplus(study, trial)
        return None


def run_task(study: optuna.Study, task: optuna.Trial | segments.Segment,
             scheduler: Promotion | None, job: Job, index: int, device: str, artifacts: Any,
             emit: Callable[[Any], None]) -> Outcome:
    """Train ``task`` with a heartbeat and end it: told (fifo), or paused, completed or stopped
    at its rung (promote). Never raises for the configuration's own failures."""
    segment = task if isinstance(task, segments.Segment) else None
    trial = segment.trial if segment else task
    started = time.time()
    emit(TrialStarted(index, trial.number, device, segment.start if segment else 0,
                      segment.until if segment else 0))

    def eta(seconds: float) -> None:
        emit(Eta(index, trial.number, eta_line(seconds, job.plan.spec.budget, device)))

    try:
        with lifecycle.Heartbeat(study, trial, job.run.heartbeat):
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            if segment is not None:
                outcome = job.objective.segment(trial, job.plan, device, artifacts, segment,
                                                scheduler, _paused_path(job, trial.number))
            else:
                outcome = _tell(study, trial, _objective(job, trial, device, artifacts, eta))
    except (optuna.exceptions.UpdateFinishedTrialError, _TakenOver):
        outcome = Outcome(TrialState.FAIL, reason=(
            "declared dead by another worker (its heartbeat came late; on a loaded machine "
            "raise --heartbeat); its retry runs it again"))
    except KeyboardInterrupt:
        take_interrupt()
        _give_back(study, task, "interrupted")
        raise
    except HpoError as exc:  # the environment, not the configuration: run it again later
        _give_back(study, task, str(exc))
        raise
    except Exception as exc:  # a bug or an unexpected failure: recorded, the study goes on
        failure = store_failure(exc, mask_url(job.run.storage_url))
        if failure:  # a full disk or a read-only store: the environment again
            _give_back(study, task, failure)
            raise HpoError(failure) from None
        outcome = _failed(study, task, scheduler, f"{type(exc).__name__}: {exc}")
    if segment is not None and outcome.state != TrialState.RUNNING:
        _remove_paused(job, [trial.number])
    emit(TrialEnded(index, trial.number, device, "PAUSED" if outcome.state ==
                    TrialState.RUNNING else outcome.state.name, outcome.value, outcome.reason,
                    time.time() - started, trained_params(trial), outcome.epochs))
    return outcome


class _TakenOver(Exception):
    """The study refused a result: the trial had been failed by another worker meanwhile."""


def _objective(job: Job, trial: optuna.Trial, device: str, artifacts: Any,
               eta: Callable[[float], None]) -> Outcome:
    try:
        return job.objective(trial, job.plan, device, artifacts, eta)
    except optuna.TrialPruned:
        return Outcome(TrialState.PRUNED, reason="pruned")


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> Outcome:
    """Tell the study how a (fifo) trial ended; a store that refuses is the environment's
    failure (the trial is re-run after the heartbeat grace)."""
    try:
        if outcome.state == TrialState.FAIL:
            trial.set_user_attr("fail_reason", outcome.reason)
        study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None,
                   state=outcome.state)
    except ValueError as exc:
        if "Cannot tell a" in str(exc):
            raise _TakenOver() from None
        raise
    return outcome


def _failed(study: optuna.Study, task: Any, scheduler: Promotion | None,
            reason: str) -> Outcome:
    """A configuration whose training raised: FAIL with the reason (the study goes on)."""
    trial = task.trial if isinstance(task, segments.Segment) else task
    trial.set_user_attr("fail_reason", reason)
    if isinstance(task, segments.Segment):
        segments.end(study, scheduler, task, "failed")
    else:
        study.tell(trial, state=TrialState.FAIL)
    return Outcome(TrialState.FAIL, reason=reason, attrs={"error": True})


def _give_back(study: optuna.Study, task: Any, reason: str) -> None:
    """Fail a trial that could not finish for a reason outside its configuration and queue it
    again; a configuration interrupted after a pause goes back to its paused run instead.
    Where the store itself refuses (full disk), the trial is re-run (or paused again) after the
    heartbeat grace."""
    try:
        if isinstance(task, segments.Segment):
            if task.start:  # its paused run at the rung is intact
                lifecycle.set_system_attrs(study, task.trial,
                                           {lifecycle.STATUS: lifecycle.PAUSED})
                return
            task = task.trial
        lifecycle.fail_and_requeue(study, task, reason)
    except Exception as exc:  # noqa: BLE001
        if store_failure(exc) is None:
            raise


def _paused_path(job: Job, number: int) -> Path:
    """Where configuration ``number`` keeps its paused run: beside the artifacts, which every
    machine of a study shares."""
    return Path(job.artifacts) / "paused" / job.plan.name / f"trial-{number}.pt"


def _remove_paused(job: Job, numbers: list[int]) -> None:
    for number in numbers:
        _paused_path(job, number).unlink(missing_ok=True)
