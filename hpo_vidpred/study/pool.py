"""The worker pool behind ``hpo run``: N processes share one study.

:func:`run` checks the run's settings, loads (or checks) the data before any study exists,
opens the study once (:func:`~hpo_vidpred.study.plan.open_run_study`: one spec check, warm starts
queued), and starts the workers -- in this process with one worker -- each of which repeats one
trial's life (:mod:`.trial`) until the study has its configurations or the deadline passes. A
worker killed mid-trial leaves a trial that another worker fails after the grace period and runs
again (a promotion study's resumed segment goes back to its rung instead); a worker with nothing
to start waits while others run, in case one of them dies. Ctrl-C or SIGTERM stops every worker:
what finished is stored and interrupted trials are queued to run first next time.

Workers start from a fork server (:data:`PRELOAD` imported there once, CUDA never initialized
there, so a worker may use it; the run's environment, folder and ``sys.path`` are handed to each
worker), where the platform has one; elsewhere they are spawned. With more workers than cores a
spawned worker spent seconds importing torch and Optuna before its first trial.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

import optuna

from ..devices import resolve_devices, resolve_workers, torch_threads
from ..errors import HpoError
from ..interrupts import install_interrupts, interrupts, take_interrupt
from ..specs import RunSpec
from ..store import (artifact_dir, mask_url, open_artifact_store, open_storage, store_failure,
                     study_lock)
from ..store.records import trial_counts
from .objective import TrainObjective
from .plan import StudyPlan, check_flags, open_run_study
from .progress import StudyEnded, StudyProgress, WorkerError
from .strategy import make_pruner, make_sampler, make_scheduler
from .summary import summarize
from .trial import STOP, Job, Stale, run_task, take

__all__ = ["Job", "run", "work"]

MAX_CONSECUTIVE_ERRORS = 3  # a worker whose objective raises this often in a row stops
# torch._dynamo: torch.optim imports it at an optimizer's first step (1.7 s of CPU), once here
# instead of once in every worker
PRELOAD = ["torch", "torch._dynamo", "optuna", "hpo_vidpred.study.trial",
           "hpo_vidpred.study.objective"]


def work(job: Job, index: int, device: str, emit: Callable[[Any], None]) -> int:
    """Run trials for ``job`` until the study needs no more or the deadline passes. ``emit``
    receives the trials' events. Returns the trials (segments) run."""
    plan, run = job.plan, job.run
    storage = open_storage(run.storage_url, heartbeat_interval=run.heartbeat,
                           grace_period=run.grace, create_tables=False, ride_out=True)
    seed = (plan.spec.seed * 1_000_003 + job.seed_base * 101 + index) % 2**31
    study = optuna.load_study(study_name=plan.name, storage=storage,
                              sampler=make_sampler(plan, seed), pruner=make_pruner(plan))
    artifacts = open_artifact_store(run.storage_url, job.artifacts)
    job.objective.prepare(plan, device)
    if "baselines" not in study.user_attrs:  # first worker of the study (a repeat is harmless)
        baselines = job.objective.baselines(plan, device)
        if baselines is not None:
            study.set_user_attr("baselines", baselines)
    scheduler = make_scheduler(plan, run.trials) if plan.scheduler == "promote" else None
    stale, ran, errors = Stale(), 0, 0
    while job.deadline is None or time.time() < job.deadline:
        if not _parent_alive():
            break
        task = take(study, storage, job, scheduler, stale,
                    lambda stopped: emit(StudyEnded(index, tuple(stopped))))
        if task == STOP:
            break
        if task is None:  # all slots taken: wait, a running trial may still fail and come back
            time.sleep(job.poll_s)
            continue
        outcome = run_task(study, task, scheduler, job, index, device, artifacts, emit)
        ran += 1
        errors = errors + 1 if outcome.attrs.get("error") else 0
        if errors >= MAX_CONSECUTIVE_ERRORS:
            raise HpoError(f"worker {index}: {errors} trials in a row raised an error, the last: "
                           f"{outcome.reason}; see the trials' fail_reason")
    return ran


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _context() -> Any:
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when this process starts its server
    return ctx


def _worker_main(job: Job, index: int, device: str, threads: int, events: Any,
                 environ: dict[str, str]) -> None:
    """Entry point of a worker process. ``environ``: the run's environment (a fork server's
    children inherit the server's, which may be older)."""
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
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
        events.put(WorkerError(index, str(exc)))
    except Exception as exc:
        failure = store_failure(exc, mask_url(job.run.storage_url))
        events.put(WorkerError(index, failure or
                               f"worker {index} crashed: {type(exc).__name__}: {exc}"))
        if failure is None:
            raise
    finally:
        take_interrupt()  # the parent may still signal while this process exits


# --------------------------------------------------------------------------- the pool
def run(plan: StudyPlan, spec: RunSpec, objective: Any = None) -> dict[str, Any]:
    """Run (or continue) the plan's study until it has ``spec.trials`` configurations.

    ``spec.workers`` processes share the study (with 1 it runs in this process; 0: the
    devices' default, :func:`hpo_vidpred.devices.resolve_workers`), spread round-robin over
    ``spec.devices``. Returns the summary (:func:`hpo_vidpred.study.summary.summarize`); prints a
    line per trial and a bar on stderr when ``spec.progress``. ``objective``: what each trial
    runs (default :class:`~hpo_vidpred.study.objective.TrainObjective`; tests pass their own).
    """
    check_flags(trials=spec.trials, timeout=spec.timeout, heartbeat=spec.heartbeat,
                grace=spec.grace, threads=spec.threads, warm_top=spec.warm_top)
    started = time.time()
    device_list = resolve_devices(spec.devices)
    workers = resolve_workers(spec.workers, device_list)
    objective = objective if objective is not None else TrainObjective()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if workers == 1:  # missing data fails here, before the store is opened (and stays loaded)
        objective.prepare(plan, device_list[0])
    else:  # the same check without loading the data here
        objective.check(plan)
    storage = open_storage(spec.storage_url, heartbeat_interval=spec.heartbeat,
                           grace_period=spec.grace)
    study, plan, warmed, existed = open_run_study(plan, storage, spec.trials, spec.warm,
                                                  spec.warm_top)
    before = study.get_trials(deepcopy=False)
    job = Job(plan=plan, run=spec, artifacts=str(artifact_dir(spec.storage_url, spec.artifacts)),
              deadline=started + spec.timeout if spec.timeout else None, objective=objective,
              seed_base=len(before))
    notes: list[str] = list(warmed)
    if study.user_attrs.get("seed", plan.spec.seed) != plan.spec.seed:
        notes.append(f"note: the study was started with --seed {study.user_attrs['seed']}; "
                     f"this run's trials derive their seeds from --seed {plan.spec.seed}")
    view = StudyProgress(spec.progress, study, spec.trials, workers, device_list,
                         spec.storage_url)
    finished = trial_counts(before)["finished"]
    if finished >= spec.trials:
        notes.append(f"the study already has {finished} finished trials; nothing to run (--trials "
                     "is the study's total: raise it to add trials)")
    else:
        try:
            with view, interrupts():
                if workers == 1:
                    with torch_threads(spec.threads if device_list[0] == "cpu" else 0):
                        work(job, 0, device_list[0], view.event)
                else:
                    notes += _pool(job, workers, device_list, view, spec.threads)
        except BaseException:
            if not existed:  # a run that could not start leaves no study behind
                with study_lock(storage, plan.name):
                    if not study.get_trials(deepcopy=False):
                        optuna.delete_study(study_name=plan.name, storage=storage)
            raise
    notes += view.notes
    summary = summarize(study, spec.storage_url, spec.trials, time.time() - started, view.ended,
                        notes)
    return {**summary, "workers": workers, "devices": device_list}


def _pool(job: Job, workers: int, devices: list[str], view: StudyProgress,
          threads: int) -> list[str]:
    """Start the worker processes, relay their events, wait for them; returns notes."""
    ctx = _context()
    events = ctx.Queue()
    cpu_workers = sum(1 for i in range(workers) if devices[i % len(devices)] == "cpu")
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    procs = [ctx.Process(target=_worker_main, name=f"hpo-worker-{i}",
                         args=(job, i, devices[i % len(devices)],
                               threads if devices[i % len(devices)] == "cpu" else 0, events,
                               dict(os.environ)))
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
        if isinstance(event, WorkerError):
            errors.append(event.message)
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
