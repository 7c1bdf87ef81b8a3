"""What ``hpo run`` shows while it runs: a line per finished trial and an overall bar (finished /
target, counted from the store, so trials of other machines move it too), on stderr."""

from __future__ import annotations

import time
from typing import Any

import optuna

from .storage import mask_url
from .study import trial_counts

__all__ = ["StudyProgress"]


class StudyProgress:
    """A line per finished trial and an overall bar (finished / target) on stderr."""

    def __init__(self, enabled: bool, study: optuna.Study, target: int, workers: int,
                 devices: list[str], storage_url: str) -> None:
        self.enabled, self.study, self.target = enabled, study, target
        self._header = (f"study {study.study_name} on {mask_url(storage_url)}: {workers} "
                        f"worker(s) on {', '.join(devices)}, target {target} finished trials")
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self.ended = 0  # trials this run's workers finished (shown or not)

    def __enter__(self) -> StudyProgress:
        if self.enabled:
            from rich import progress as rp
            from rich.console import Console

            self._bar = rp.Progress(rp.TextColumn("trials"), rp.BarColumn(),
                                    rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[counts]}"),
                                    rp.TimeElapsedColumn(), console=Console(stderr=True))
            self._bar.start()
            self._bar.console.print(self._header)
            self._task = self._bar.add_task("", total=self.target, counts="")
            self.refresh(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self.refresh(force=True)
            self._bar.stop()

    def event(self, event: dict) -> None:
        if event["event"] != "end":
            return
        self.ended += 1
        if self._bar is None:
            return
        value = f"val_mse {event['value']:.5g}" if event["value"] is not None else ""
        what = {"COMPLETE": f"complete  {value}", "PRUNED": event["reason"] or "pruned",
                "FAIL": f"failed: {event['reason']}"}[event["state"]]
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in event["params"].items())
        self._bar.console.print(f"trial {event['number']:>3} {what}  [{event['seconds']:.1f} s, "
                                f"worker {event['worker']}, {event['device']}]  {params}",
                                highlight=False, markup=False, soft_wrap=True)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if self._bar is None or (not force and time.time() - self._last < 2.0):
            return
        self._last = time.time()
        counts = trial_counts(self.study.get_trials(deepcopy=False))
        self._bar.update(self._task, completed=min(counts["finished"], self.target),
                         counts=f"{counts['complete']} complete, {counts['pruned']} pruned, "
                                f"{counts['failed']} failed, {counts['running']} running")
