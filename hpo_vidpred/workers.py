"""The worker pool behind ``hpo run``: N processes (spawned, so CUDA works) share one study.

Every worker repeats one step under the study's cross-process lock
(:func:`hpo_vidpred.storage.study_lock`): fail stale trials (their retry is queued), count the
finished trials, and start a trial only while ``finished + running + waiting`` is below the
target. So ``--trials N`` is the number of finished trials of the whole study -- over all workers
and all machines sharing the store -- and is never overshot. A trial's heartbeat thread keeps it
alive in the store; a worker killed mid-trial leaves a trial that another worker fails after the
grace period and runs again with the same parameters. A worker with nothing to start waits while
others run, in case one of them dies.

``finished`` counts COMPLETE, PRUNED and FAIL trials (a diverged or out-of-memory trial is an
outcome of its configuration), except failures that were queued again: a trial whose worker died
or was interrupted is counted once, by its retry.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from .errors import HpoError
from .interrupts import install_interrupts, interrupts, take_interrupt
from .progress import StudyProgress
from .storage import (
    artifact_dir,
    open_artifact_store,
    open_storage,
    study_lock,
    without_heartbeat,
)
from .study import (
    Outcome,
    StudyPlan,
    make_pruner,
    make_sampler,
    open_study,
    summarize,
    train_trial,
    trial_counts,
)

__all__ = ["Job", "Objective", "TrainObjective", "resolve_devices", "run", "work"]

DEFAULT_HEARTBEAT_S = 30  # a dead worker's trial is failed and re-run after twice this
MAX_CONSECUTIVE_ERRORS = 3  # a worker whose objective raises this often in a row stops


class Objective(Protocol):
    """What a worker runs per trial. ``prepare`` runs once per worker, before the first trial."""

    def prepare(self, plan: StudyPlan, device: str) -> None: ...

    def check(self, plan: StudyPlan) -> None:
        """Fail with one line if ``prepare`` would fail, without loading anything (run before
        a multi-worker study is created)."""

    def __call__(self, trial: optuna.Trial, plan: StudyPlan, device: str,
                 artifact_store: Any) -> Outcome: ...


class TrainObjective:
    """The real objective: :func:`hpo_vidpred.study.train_trial`, data loaded up front."""

    def prepare(self, plan: StudyPlan, device: str) -> None:
        from . import data, train

        data.load(plan.data, train.resolve_device(device))

    def check(self, plan: StudyPlan) -> None:
        """Fail with one line if the data is missing, without loading it (``data info``)."""
        from . import data

        data.info(plan.data)

    def __call__(self, trial: optuna.Trial, plan: StudyPlan, device: str,
                 artifact_store: Any) -> Outcome:
        return train_trial(trial, plan, device, artifact_store)


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
    store = open_artifact_store(job.storage_url, job.artifacts) if job.artifacts else None
    job.objective.prepare(plan, device)
    ran = errors = 0
    while job.deadline is None or time.time() < job.deadline:
        if not _parent_alive():
            break
        trial = None
        try:
            with study_lock(storage, plan.name):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                    _fail_orphans(study, storage, 2 * (job.grace or 2 * job.heartbeat))
                counts = trial_counts(storage.get_all_trials(study._study_id, deepcopy=False))
                if counts["finished"] >= job.target:
                    break
                if counts["waiting"] or counts["finished"] + counts["running"] < job.target:
                    with warnings.catch_warnings():  # we beat ourselves, not optimize()
                        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed")
                        trial = study.ask()
                    storage.record_heartbeat(trial._trial_id)  # stale-detectable from now on
        except KeyboardInterrupt:
            take_interrupt()
            if trial is not None:  # asked but not started: give it back
                _fail_and_requeue(study, trial, "interrupted")
            raise
        if trial is None:  # all slots taken: wait, a running trial may still fail and come back
            time.sleep(job.poll_s)
            continue
        outcome = _run_trial(study, storage, trial, job, index, device, store, emit)
        ran += 1
        errors = errors + 1 if outcome.attrs.get("error") else 0
        if errors >= MAX_CONSECUTIVE_ERRORS:
            raise HpoError(f"worker {index}: {errors} trials in a row raised an error, the last: "
                           f"{outcome.reason}; see the trials' fail_reason")
    return ran


def _run_trial(study: optuna.Study, storage: Any, trial: optuna.Trial, job: Job, index: int,
               device: str, store: Any, emit: Callable[[dict], None]) -> Outcome:
    started = time.time()
    emit({"event": "start", "worker": index, "number": trial.number, "device": device})
    beat = _Heartbeat(storage, trial._trial_id, job.heartbeat)
    try:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        outcome = job.objective(trial, job.plan, device, store)
    except optuna.TrialPruned:
        outcome = Outcome(TrialState.PRUNED, reason="pruned")
    except KeyboardInterrupt:
        take_interrupt()
        _fail_and_requeue(study, trial, "interrupted")
        beat.stop()
        raise
    except HpoError as exc:  # the environment, not the configuration: run it again later
        _fail_and_requeue(study, trial, str(exc))
        beat.stop()
        raise
    except Exception as exc:  # a bug or an unexpected failure: recorded, the study goes on
        outcome = Outcome(TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}",
                          attrs={"error": True})
    try:
        if outcome.state == TrialState.FAIL:
            trial.set_user_attr("fail_reason", outcome.reason)
        study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None,
                   state=outcome.state)
    finally:
        beat.stop()
    emit({"event": "end", "worker": index, "number": trial.number, "state": outcome.state.name,
          "value": outcome.value, "reason": outcome.reason, "seconds": time.time() - started,
          "params": trial.params, "device": device})
    return outcome


def _fail_orphans(study: optuna.Study, storage: Any, age_s: float) -> None:
    """Fail and re-queue RUNNING trials older than ``age_s`` that never recorded a heartbeat
    (their process died between creating them and the first beat)."""
    cutoff = datetime.now() - timedelta(seconds=age_s)
    old = [t._trial_id for t in storage.get_all_trials(study._study_id, deepcopy=False,
                                                         states=(TrialState.RUNNING,))
           if t.datetime_start is not None and t.datetime_start < cutoff]
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in without_heartbeat(storage, old):
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # it ended meanwhile
            continue
        if failed and retry is not None:
            retry(study, copy.deepcopy(storage.get_trial(trial_id)))


def _fail_and_requeue(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Mark a trial that never got to its end FAIL and queue its parameters again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        frozen = copy.deepcopy(study._storage.get_trial(trial._trial_id))
        frozen.user_attrs = {}  # the retry starts clean (no fail_reason of this attempt)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)


class _Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds on a thread until stopped."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval),
                                        daemon=True)
        self._thread.start()

    def _beat(self, storage: Any, trial_id: int, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a transient database error; the next beat tries again
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _worker_main(job: Job, index: int, device: str, threads: int, events: Any) -> None:
    """Entry point of a spawned worker process."""
    if threads:  # CPU workers share the cores; read by torch when the objective imports it
        os.environ["OMP_NUM_THREADS"] = str(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    install_interrupts()
    try:
        work(job, index, device, events.put)
    except KeyboardInterrupt:
        pass
    except HpoError as exc:
        events.put({"event": "error", "worker": index, "message": str(exc)})
    except Exception as exc:
        events.put({"event": "error", "worker": index,
                    "message": f"worker {index} crashed: {type(exc).__name__}: {exc}"})
        raise
    finally:
        take_interrupt()  # the parent may still signal while this process exits


# --------------------------------------------------------------------------- the pool
def resolve_devices(devices: str = "auto") -> list[str]:
    """``auto`` -> every visible GPU (``cuda:0``, ...) or ``cpu``; else a comma list of ``cpu``,
    ``cuda``, ``cuda:N`` or ``N`` (GPU N). Unusable devices are an :class:`HpoError`."""
    import torch

    from .train import resolve_device

    if devices.strip() in ("", "auto"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    out = []
    for name in devices.split(","):
        name = name.strip()
        name = f"cuda:{name}" if name.isdigit() else name
        device = resolve_device(name)
        if device.type == "cuda" and device.index is not None \
                and device.index >= torch.cuda.device_count():
            raise HpoError(f"device {name} does not exist; this machine has "
                           f"{torch.cuda.device_count()} GPU(s)")
        out.append(name)
    return out


# Workers per device when --workers is not given (benchmarks/workers_per_device.py measures them).
CUDA_WORKERS = 4  # trials at once per GPU (to be confirmed on a GPU with workers_per_device.py)
CPU_MAX_WORKERS = 4  # one per core, at most this many (memory: every worker holds its data)


def default_workers(device: str = "auto") -> int:
    """How many trials ``hpo run`` trains at once on ``device`` when ``--workers`` is not given
    (see benchmarks/workers_per_device.py and benchmarks/RESULTS.md)."""
    from .train import resolve_device

    cores = os.cpu_count() or 1
    if resolve_device(device).type == "cuda":
        # Not measured yet (no GPU in the sessions so far): small recurrent models leave a GPU
        # mostly idle and are bound by Python and kernel launches, which several processes
        # overlap; each worker needs a core or two for that.
        return max(1, min(CUDA_WORKERS, cores // 2))
    # Measured on 2 cores (benchmarks/RESULTS.md): one single-threaded worker per core finished
    # more trials per hour than one worker using every core; more workers than cores fell back.
    return max(1, min(cores, CPU_MAX_WORKERS))


def resolve_workers(workers: int, device_list: list[str]) -> int:
    """``workers`` (0: the default of the devices: one pool per GPU, or the CPU's)."""
    if workers < 0:
        raise HpoError("--workers must be at least 1 (or 0 for the device's default)")
    if workers:
        return workers
    return sum(default_workers(d) for d in dict.fromkeys(device_list))


def run(plan: StudyPlan, *, storage_url: str, trials: int, timeout: float | None = None,
        workers: int = 1, devices: str = "auto", heartbeat: int = DEFAULT_HEARTBEAT_S,
        grace: int | None = None, artifacts: str | None = None, progress: bool = True,
        threads: int = 0, objective: Any = None) -> dict[str, Any]:
    """Run (or continue) the plan's study until it has ``trials`` finished trials.

    ``workers`` processes share the study (with 1 it runs in this process; 0: the devices'
    default, :func:`resolve_workers`), spread round-robin over ``devices``; prediction strips go to ``artifacts`` (default: beside a SQLite store). Returns
    the summary (:func:`hpo_vidpred.study.summarize`); prints a line per trial and a bar on stderr
    when ``progress``. ``threads``: torch threads of each CPU worker (0: the cores shared out
    among the CPU workers). Ctrl-C (or SIGTERM) stops every worker; what finished is stored and
    interrupted trials are queued to run first next time.
    """
    if trials < 1:
        raise HpoError("--trials must be at least 1")
    if timeout is not None and timeout <= 0:
        raise HpoError("--timeout must be a positive number of seconds")
    started = time.time()
    device_list = resolve_devices(devices)
    workers = resolve_workers(workers, device_list)
    objective = objective if objective is not None else TrainObjective()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, heartbeat_interval=heartbeat, grace_period=grace)
    if workers == 1:  # missing data fails here, before the study exists (and it stays loaded)
        objective.prepare(plan, device_list[0])
    else:  # the same check without loading the data here
        objective.check(plan)
    with study_lock(storage, plan.name):
        study = open_study(plan, storage)
    before = study.get_trials(deepcopy=False)
    job = Job(plan=plan, storage_url=storage_url, target=trials,
              deadline=started + timeout if timeout else None, heartbeat=heartbeat, grace=grace,
              artifacts=str(artifact_dir(storage_url, artifacts)), objective=objective,
              seed_base=len(before), poll_s=min(2.0, heartbeat / 2))
    notes: list[str] = []
    view = StudyProgress(progress, study, trials, workers, device_list, storage_url)
    finished = trial_counts(before)["finished"]
    if finished >= trials:
        notes.append(f"the study already has {finished} finished trials; nothing to run (--trials "
                     "is the study's total: raise it to add trials)")
    else:
        with view, interrupts():
            if workers == 1:
                with _torch_threads(threads if device_list[0] == "cpu" else 0):
                    work(job, 0, device_list[0], view.event)
            else:
                notes += _pool(job, workers, device_list, view, threads)
    summary = summarize(study, storage_url, trials, time.time() - started, view.ended, notes)
    return {**summary, "workers": workers, "devices": device_list}


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads (0: leave them), restored afterwards."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pool(job: Job, workers: int, devices: list[str], view: StudyProgress, threads: int) -> list[str]:
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
