"""The worker pool behind ``hpo run``: N processes (spawned, so CUDA works) share one study.

Every worker repeats one step under the study's cross-process lock
(:func:`hpo_vidpred.store.study_lock`): fail stale trials (their retry is queued; at most once
per heartbeat interval), count the finished trials, and start a trial only while ``finished +
running + waiting`` is below the target. So ``--trials N`` is the number of finished trials of the whole study -- over all workers
and all machines sharing the store -- and is never overshot. A trial's heartbeat thread keeps it
alive in the store; a worker killed mid-trial leaves a trial that another worker fails after the
grace period and runs again with the same parameters. A worker with nothing to start waits while
others run, in case one of them dies.

``finished`` counts COMPLETE, PRUNED and FAIL trials (a diverged or out-of-memory trial is an
outcome of its configuration), except failures that were queued again: a trial whose worker died
or was interrupted is counted once, by its retry.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from ..devices import resolve_devices, resolve_workers, torch_threads
from ..errors import HpoError
from ..interrupts import install_interrupts, interrupts, take_interrupt
from ..store import (artifact_dir, mask_url, open_artifact_store, open_storage, store_failure,
                     study_lock)
from ..store import lifecycle
from ..store.records import trained_params, trial_counts
from .progress import StudyProgress
from . import segments
from .promote import Promotion, Step
from .samplers import make_pruner, make_sampler, make_scheduler
from .prepare import check_flags, open_run_study
from .search import Outcome, StudyPlan, TrainObjective, eta_line, summarize

__all__ = ["Job", "Objective", "run", "work"]

DEFAULT_HEARTBEAT_S = 30  # a dead worker's trial is failed and re-run after twice this
MAX_CONSECUTIVE_ERRORS = 3  # a worker whose objective raises this often in a row stops


class Objective(Protocol):
    """What a worker runs per trial (:class:`~hpo_vidpred.jobs.search.TrainObjective`)."""

    def check(self, plan: StudyPlan) -> None:
        """Fail with one line if ``prepare`` would fail, without loading anything (run before
        a multi-worker study is created)."""

    def prepare(self, plan: StudyPlan, device: str) -> None:
        """Once per worker, before the first trial (load the data)."""

    def baselines(self, plan: StudyPlan, device: str) -> dict[str, Any] | None:
        """The trivial predictors' metrics the study records (None: none)."""

    def __call__(self, trial: optuna.Trial, plan: StudyPlan, device: str, artifact_store: Any,
                 eta: Callable[[float], None] | None = None) -> Outcome: ...


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs (picklable: it crosses the spawn boundary)."""

    plan: StudyPlan
    storage_url: str
    target: int  # finished trials the study should have
    deadline: float | None = None  # time.time() after which no trial starts
    heartbeat: int = DEFAULT_HEARTBEAT_S
    grace: int | None = None  # default: twice the heartbeat
    artifacts: str | None = None  # artifact folder; None: no artifacts
    objective: Any = field(default_factory=TrainObjective)
    seed_base: int = 0  # trials in the study when the run began (fresh sampler seeds on resume)
    poll_s: float = 2.0


# --------------------------------------------------------------------------- one worker
def work(job: Job, index: int, device: str, emit: Callable[[dict], None]) -> int:
    """Run trials for ``job`` until the study has ``job.target`` finished trials or the deadline
    passes. ``emit`` receives one event dict per trial start and end. Returns trials run."""
    plan = job.plan
    storage = open_storage(job.storage_url, heartbeat_interval=job.heartbeat,
                           grace_period=job.grace, create_tables=False)
    seed = (plan.spec.seed * 1_000_003 + job.seed_base * 101 + index) % 2**31
    study = optuna.load_study(study_name=plan.name, storage=storage,
                              sampler=make_sampler(plan, seed), pruner=make_pruner(plan))
    artifacts = open_artifact_store(job.storage_url, job.artifacts) if job.artifacts else None
    job.objective.prepare(plan, device)
    if "baselines" not in study.user_attrs:  # first worker of the study (a repeat is harmless)
        baselines = job.objective.baselines(plan, device)
        if baselines is not None:
            study.set_user_attr("baselines", baselines)
    orphan_age = 2 * (job.grace or 2 * job.heartbeat)
    stale_checked = -math.inf  # dead trials show after their grace: look once per heartbeat
    scheduler = make_scheduler(plan, job.target) if plan.scheduler == "promote" else None
    ran = errors = 0
    while job.deadline is None or time.time() < job.deadline:
        if not _parent_alive():
            break
        trial = None
        try:
            with study_lock(storage, plan.name):
                if time.monotonic() - stale_checked >= job.heartbeat:
                    lifecycle.fail_stale(study, orphan_age)
                    stale_checked = time.monotonic()
                if scheduler is not None:  # a segment to train, a wait, or the end
                    trial = segments.begin(study, scheduler, plan.sample_space.sample,
                                           ask=lifecycle.ask, beat=lifecycle.beat)
                    if isinstance(trial, Step):
                        if trial.kind == "finish":
                            _remove_paused(job, segments.finish(study))
                            break
                        trial = None
                else:
                    counts = trial_counts(lifecycle.trials(study))
                    if counts["finished"] >= job.target:
                        break
                    if counts["waiting"] or counts["finished"] + counts["running"] < job.target:
                        trial = lifecycle.ask(study)
        except KeyboardInterrupt:
            take_interrupt()
            if trial is not None:  # asked but not started: give it back
                _give_back(study, trial, "interrupted", None)
            raise
        if trial is None:  # all slots taken: wait, a running trial may still fail and come back
            time.sleep(job.poll_s)
            continue
        if isinstance(trial, segments.Segment):
            outcome = _run_segment(study, trial, scheduler, job, index, device, artifacts, emit)
        else:
            outcome = _run_trial(study, trial, job, index, device, artifacts, emit)
        ran += 1
        errors = errors + 1 if outcome.attrs.get("error") else 0
        if errors >= MAX_CONSECUTIVE_ERRORS:
            raise HpoError(f"worker {index}: {errors} trials in a row raised an error, the last: "
                           f"{outcome.reason}; see the trials' fail_reason")
    return ran


def _run_trial(study: optuna.Study, trial: optuna.Trial, job: Job, index: int, device: str,
               artifacts: Any, emit: Callable[[dict], None]) -> Outcome:
    started = time.time()
    emit({"event": "start", "worker": index, "number": trial.number, "device": device})
    beat = lifecycle.Heartbeat(study, trial, job.heartbeat)

    def eta(seconds: float) -> None:
        emit({"event": "eta", "worker": index, "number": trial.number, "device": device,
              "line": eta_line(seconds, job.plan.spec.budget, device)})

    try:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        outcome = job.objective(trial, job.plan, device, artifacts, eta)
    except optuna.exceptions.UpdateFinishedTrialError:  # failed meanwhile by another worker
        return _taken_over(trial, index, device, started, beat, emit)
    except optuna.TrialPruned:
        outcome = Outcome(TrialState.PRUNED, reason="pruned")
    except KeyboardInterrupt:
        take_interrupt()
        _give_back(study, trial, "interrupted", beat)
        raise
    except HpoError as exc:  # the environment, not the configuration: run it again later
        _give_back(study, trial, str(exc), beat)
        raise
    except Exception as exc:  # a bug or an unexpected failure: recorded, the study goes on
        failure = store_failure(exc, mask_url(job.storage_url))
        if failure:  # a full disk or a read-only store: the environment again
            _give_back(study, trial, failure, beat)
            raise HpoError(failure) from None
        outcome = Outcome(TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}",
                          attrs={"error": True})
    try:
        if outcome.state == TrialState.FAIL:
            trial.set_user_attr("fail_reason", outcome.reason)
        study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None,
                   state=outcome.state)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        if isinstance(exc, ValueError) and "Cannot tell a" not in str(exc):
            raise
        return _taken_over(trial, index, device, started, beat, emit)
    except Exception as exc:  # the store refused the result (full disk, read-only, ...)
        failure = store_failure(exc, mask_url(job.storage_url))
        if failure is None:
            raise
        raise HpoError(failure) from None  # the trial is re-run after the heartbeat grace
    finally:
        beat.stop()
    emit({"event": "end", "worker": index, "number": trial.number, "state": outcome.state.name,
          "value": outcome.value, "reason": outcome.reason, "seconds": time.time() - started,
          "params": trained_params(trial), "device": device})
    return outcome


def _run_segment(study: optuna.Study, segment: segments.Segment, scheduler: Promotion,
                 job: Job, index: int, device: str, artifacts: Any,
                 emit: Callable[[dict], None]) -> Outcome:
    """Train one segment of a configuration (``--scheduler promote``): from its paused run (or
    from scratch) to its rung, where it pauses, completes or is stopped."""
    started = time.time()
    trial = segment.trial
    emit({"event": "start", "worker": index, "number": trial.number, "device": device,
          "from": segment.start, "until": segment.until})
    beat = lifecycle.Heartbeat(study, trial, job.heartbeat)
    try:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        outcome = job.objective.segment(trial, job.plan, device, artifacts, segment, scheduler,
                                        _paused_path(job, trial.number))
    except optuna.exceptions.UpdateFinishedTrialError:  # ended meanwhile by another worker
        return _taken_over(trial, index, device, started, beat, emit)
    except KeyboardInterrupt:
        take_interrupt()
        _give_back(study, segment, "interrupted", beat)
        raise
    except HpoError as exc:  # the environment, not the configuration
        _give_back(study, segment, str(exc), beat)
        raise
    except Exception as exc:  # a bug or an unexpected failure: recorded, the study goes on
        failure = store_failure(exc, mask_url(job.storage_url))
        if failure:
            _give_back(study, segment, failure, beat)
            raise HpoError(failure) from None
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
        segments.end(study, scheduler, segment, "failed")
        outcome = Outcome(TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}",
                          attrs={"error": True})
    finally:
        beat.stop()
    if outcome.state != TrialState.RUNNING:
        _remove_paused(job, [trial.number])
    emit({"event": "end", "worker": index, "number": trial.number,
          "state": "PAUSED" if outcome.state == TrialState.RUNNING else outcome.state.name,
          "value": outcome.value, "reason": outcome.reason, "seconds": time.time() - started,
          "params": trained_params(trial), "device": device, "epochs": outcome.epochs})
    return outcome


def _paused_path(job: Job, number: int) -> Path:
    """Where configuration ``number`` keeps its paused run: beside the artifacts, which every
    machine of a study shares."""
    return Path(job.artifacts or "artifacts") / "paused" / job.plan.name / f"trial-{number}.pt"


def _remove_paused(job: Job, numbers: list[int]) -> None:
    for number in numbers:
        _paused_path(job, number).unlink(missing_ok=True)


def _taken_over(trial: optuna.Trial, index: int, device: str, started: float,
                beat: lifecycle.Heartbeat, emit: Callable[[dict], None]) -> Outcome:
    """The trial was failed by another worker while this one trained it: its heartbeats came
    later than the grace period (an overloaded machine, a paused process), so it was declared
    dead and its parameters queued again. This attempt's result is dropped and the worker goes
    on; the retry runs the configuration to its end."""
    beat.stop()
    reason = ("declared dead by another worker (its heartbeat came late; on a loaded machine "
              "raise --heartbeat); its retry runs it again")
    emit({"event": "end", "worker": index, "number": trial.number, "state": "FAIL",
          "value": None, "reason": reason, "seconds": time.time() - started,
          "params": trial.params, "device": device})
    return Outcome(TrialState.FAIL, reason=reason)


def _give_back(study: optuna.Study, trial: optuna.Trial | segments.Segment, reason: str,
               beat: lifecycle.Heartbeat | None) -> None:
    """Fail a trial that could not finish for a reason outside its configuration and queue it
    again; a configuration interrupted after a pause goes back to its paused run instead.
    Where the store itself refuses (full disk), the trial is re-run (or paused again) after the
    heartbeat grace."""
    if beat is not None:
        beat.stop()
    try:
        if isinstance(trial, segments.Segment):
            if trial.start:  # its paused run at the rung is intact
                lifecycle.set_system_attrs(study, trial.trial, {lifecycle.STATUS:
                                                                lifecycle.PAUSED})
                return
            trial = trial.trial
        lifecycle.fail_and_requeue(study, trial, reason)
    except Exception as exc:  # noqa: BLE001
        if store_failure(exc) is None:
            raise


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _worker_main(job: Job, index: int, device: str, threads: int, events: Any) -> None:
    """Entry point of a spawned worker process."""
    if threads:  # CPU workers share the cores
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for what starts OpenMP from here on
        # torch was imported when this process unpickled the job (the objective's module), so
        # it read the variable before it was set: tell it directly. Two workers with all cores
        # each made every step 2-3x slower on 2 cores.
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    install_interrupts()
    try:
        work(job, index, device, events.put)
    except KeyboardInterrupt:
        pass
    except HpoError as exc:
        events.put({"event": "error", "worker": index, "message": str(exc)})
    except Exception as exc:
        failure = store_failure(exc, mask_url(job.storage_url))
        events.put({"event": "error", "worker": index, "message": failure or
                    f"worker {index} crashed: {type(exc).__name__}: {exc}"})
        if failure is None:
            raise
    finally:
        take_interrupt()  # the parent may still signal while this process exits


# --------------------------------------------------------------------------- the pool
def run(plan: StudyPlan, *, storage_url: str, trials: int, timeout: float | None = None,
        workers: int = 1, devices: str = "auto", heartbeat: int = DEFAULT_HEARTBEAT_S,
        grace: int | None = None, artifacts: str | None = None, progress: bool = True,
        threads: int = 0, objective: Any = None, warm: Sequence[str] = (),
        warm_top: int = 3) -> dict[str, Any]:
    """Run (or continue) the plan's study until it has ``trials`` finished trials.

    ``workers`` processes share the study (with 1 it runs in this process; 0: the devices'
    default, :func:`hpo_vidpred.devices.resolve_workers`), spread round-robin over ``devices``;
    prediction strips go to ``artifacts`` (default: beside a SQLite store). Returns the summary
    (:func:`hpo_vidpred.jobs.search.summarize`); prints a line per trial and a bar on stderr when
    ``progress``. ``threads``: torch threads of each CPU worker (0: the cores shared out among
    the CPU workers). ``warm``: studies whose ``warm_top`` best configurations run first
    (:mod:`hpo_vidpred.jobs.warm`). Ctrl-C (or SIGTERM) stops every worker; what finished is
    stored and interrupted trials are queued to run first next time.
    """
    check_flags(trials=trials, timeout=timeout, heartbeat=heartbeat, grace=grace,
                threads=threads, warm_top=warm_top)
    started = time.time()
    device_list = resolve_devices(devices)
    workers = resolve_workers(workers, device_list)
    objective = objective if objective is not None else TrainObjective()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if workers == 1:  # missing data fails here, before the store is opened (and stays loaded)
        objective.prepare(plan, device_list[0])
    else:  # the same check without loading the data here
        objective.check(plan)
    storage = open_storage(storage_url, heartbeat_interval=heartbeat, grace_period=grace)
    study, plan, warmed, existed = open_run_study(plan, storage, trials, warm, warm_top)
    before = study.get_trials(deepcopy=False)
    job = Job(plan=plan, storage_url=storage_url, target=trials,
              deadline=started + timeout if timeout else None, heartbeat=heartbeat, grace=grace,
              artifacts=str(artifact_dir(storage_url, artifacts)), objective=objective,
              seed_base=len(before), poll_s=min(2.0, heartbeat / 2))
    notes: list[str] = list(warmed)
    if study.user_attrs.get("seed", plan.spec.seed) != plan.spec.seed:
        notes.append(f"note: the study was started with --seed {study.user_attrs['seed']}; "
                     f"this run's trials derive their seeds from --seed {plan.spec.seed}")
    view = StudyProgress(progress, study, trials, workers, device_list, storage_url)
    finished = trial_counts(before)["finished"]
    if finished >= trials:
        notes.append(f"the study already has {finished} finished trials; nothing to run (--trials "
                     "is the study's total: raise it to add trials)")
    else:
        try:
            with view, interrupts():
                if workers == 1:
                    with torch_threads(threads if device_list[0] == "cpu" else 0):
                        work(job, 0, device_list[0], view.event)
                else:
                    notes += _pool(job, workers, device_list, view, threads)
        except BaseException:
            if not existed:  # a run that could not start leaves no study behind
                with study_lock(storage, plan.name):
                    if not study.get_trials(deepcopy=False):
                        optuna.delete_study(study_name=plan.name, storage=storage)
            raise
    notes += view.notes
    summary = summarize(study, storage_url, trials, time.time() - started, view.ended, notes)
    return {**summary, "workers": workers, "devices": device_list}


def _pool(job: Job, workers: int, devices: list[str], view: StudyProgress,
          threads: int) -> list[str]:
    """Start the worker processes, relay their events, wait for them; returns notes."""
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    cpu_workers = sum(1 for i in range(workers) if devices[i % len(devices)] == "cpu")
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    procs = [ctx.Process(target=_worker_main, name=f"hpo-worker-{i}",
                         args=(job, i, devices[i % len(devices)],
                               threads if devices[i % len(devices)] == "cpu" else 0, events))
             for i in range(workers)]
    errors: list[str] = []
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            errors += _relay(events, view, timeout=0.5)
            if errors:  # a worker could not start (data, device, store): stop the others
                break
            view.refresh()
    except KeyboardInterrupt:
        take_interrupt()
        _stop(procs, signal.SIGINT)
        raise
    finally:
        if errors:
            _stop(procs, signal.SIGINT)
        for p in procs:
            p.join()
        errors += _relay(events, view, timeout=0.0)
    if errors:
        raise HpoError(errors[0])
    return [f"worker {i} ended with exit code {p.exitcode} (its trial, if any, is re-run "
            "after the heartbeat grace period)" for i, p in enumerate(procs) if p.exitcode]


def _relay(events: Any, view: StudyProgress, timeout: float) -> list[str]:
    errors = []
    while True:
        try:
            event = events.get(timeout=timeout)
        except queue.Empty:
            return errors
        timeout = 0.0
        if event["event"] == "error":
            errors.append(event["message"])
        else:
            view.event(event)


def _stop(procs: list, sig: int, wait_s: float = 30.0) -> None:
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, sig)
    deadline = time.time() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.time()))
        if p.is_alive():  # stuck: its trial is re-run after the heartbeat grace period
            p.kill()
