"""What ``hpo run`` shows while it runs: a line per finished trial and an overall bar (finished /
target, counted from the store, so trials of other machines move it too), on stderr."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..store import mask_url
from ..store.records import trial_counts
from ..ui import Bar

__all__ = ["Eta", "StudyEnded", "StudyProgress", "TrialEnded", "TrialStarted",
           "WorkerError"]


# What workers tell the process that shows the study (through a queue from spawned workers).
@dataclass(frozen=True)
class TrialStarted:
    worker: int
    number: int
    device: str
    start: int = 0  # a segment of a promotion study: from this epoch ...
    until: int = 0  # ... to this one


@dataclass(frozen=True)
class TrialEnded:
    worker: int
    number: int
    device: str
    state: str  # COMPLETE | PRUNED | FAIL | PAUSED (at a rung, a promotion study)
    value: Any
    reason: str
    seconds: float
    params: dict = field(default_factory=dict)  # as trained
    epochs: int = 0


@dataclass(frozen=True)
class StudyEnded:
    """A promotion study is done: the configurations still paused at a rung were stopped
    (PRUNED, not promoted); they count as finished by this run."""

    worker: int
    stopped: tuple[int, ...]


@dataclass(frozen=True)
class Eta:
    """A trial projected to run long: said once per run."""

    worker: int
    number: int
    line: str


@dataclass(frozen=True)
class WorkerError:
    """A worker that cannot go on (the environment: data, device, store)."""

    worker: int
    message: str


class StudyProgress:
    """A line per finished trial and an overall bar (finished / target) on stderr; the first
    long-run warning of any worker (``eta`` events) is printed once and kept in :attr:`notes`."""

    def __init__(self, enabled: bool, study: optuna.Study, target: int, workers: int,
                 devices: list[str], storage_url: str) -> None:
        self.study, self.target = study, target
        self._header = (f"study {study.study_name} on {mask_url(storage_url)}: {workers} "
                        f"worker(s) on {', '.join(devices)}, target {target} finished trials")
        self._bar = Bar(enabled, "{task.fields[counts]}")
        self._last = 0.0
        self.ended = 0  # trials this run's workers finished (shown or not)
        self.notes: list[str] = []  # said once, and repeated in the summary

    def __enter__(self) -> StudyProgress:
        self._bar.__enter__()
        self._bar.print(self._header)
        self._bar.add(self.target, "trials", counts="")
        self.refresh(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh(force=True)
        self._bar.__exit__(*exc)

    def event(self, event: Any) -> None:
        if isinstance(event, Eta):
            if not self.notes:
                self.notes.append(event.line)
                self._bar.print(event.line)
            return
        if isinstance(event, StudyEnded):
            self.ended += len(event.stopped)
            return
        if not isinstance(event, TrialEnded):
            return
        self.ended += event.state != "PAUSED"  # a paused configuration is not finished
        value = event.value
        value = ("" if value is None else f"val_mse {value:.5g}" if not isinstance(value, list)
                 else "values " + ", ".join(f"{v:.5g}" for v in value))
        what = {"COMPLETE": f"complete  {value}", "PRUNED": event.reason or "pruned",
                "FAIL": f"failed: {event.reason}",
                "PAUSED": f"paused at epoch {event.epochs}  {value}"}[event.state]
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in event.params.items())
        self._bar.print(f"trial {event.number:>3} {what}  [{event.seconds:.1f} s, "
                        f"worker {event.worker}, {event.device}]  {params}")
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if not self._bar.enabled or (not force and time.time() - self._last < 2.0):
            return
        self._last = time.time()
        counts = trial_counts(self.study.get_trials(deepcopy=False))
        self._bar.update(completed=min(counts["finished"], self.target),
                         counts=f"{counts['complete']} complete, {counts['pruned']} pruned, "
                                f"{counts['failed']} failed, {counts['running']} running")
