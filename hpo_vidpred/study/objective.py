"""What a trial trains: the objective of ``hpo run`` (:class:`TrainObjective`). It samples the
space (or reads a resumed configuration's parameters), builds the model and training specs,
trains with :func:`hpo_vidpred.train.train_and_evaluate` -- the whole run, or one segment of a
promotion study -- records the trial's attributes and its prediction strip, and says how the
trial ended (:class:`Outcome`). Data is loaded once per worker process."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .. import archs
from .. import data as data_mod
from .. import train as train_mod
from ..devices import seed_everything
from ..errors import HpoError
from ..metrics import split_baselines
from ..specs import DataSpec, to_dict
from ..store.lifecycle import set_user_attrs
from ..store.rdb import reading_once
from ..store.records import study_baselines
from ..strip import frame_rows
from . import segments
from .goals import Guard, trivial_floor, values_of
from .plan import StudyPlan

__all__ = ["Outcome", "TrainObjective"]


@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its state, its value (COMPLETE; a list with several objectives), a
    reason (PRUNED, FAIL), epochs run."""

    state: TrialState
    value: float | list[float] | None = None
    reason: str = ""
    epochs: int = 0
    attrs: Mapping[str, Any] = field(default_factory=dict)


# stop_reason of train_and_evaluate -> (state, reason shown for FAIL and PRUNED)
_ENDINGS: dict[str, tuple[TrialState, str]] = {
    "completed": (TrialState.COMPLETE, ""),
    "early_stopped": (TrialState.COMPLETE, ""),
    "pruned": (TrialState.PRUNED, "pruned after epoch {epochs}"),
    "diverged": (TrialState.FAIL, "diverged: non-finite loss in epoch {epochs}"),
    "out_of_memory": (TrialState.FAIL, "out of memory on {device}"),
}


class TrainObjective:
    """The real objective: sample, build, train, record; the data is loaded once per process.

    A worker calls :meth:`prepare` once (or :meth:`check`, which loads nothing, before a
    multi-worker study is created), :meth:`baselines` once, then the objective per trial.
    """

    _baselines: dict[str, Any] | None = None  # the study's, once this worker has read them

    def check(self, plan: StudyPlan) -> None:
        """Fail with one line if the data is missing, without loading it (``data info``)."""
        data_mod.info(plan.data)

    def prepare(self, plan: StudyPlan, device: str) -> None:
        data_mod.load(plan.data, device)

    def baselines(self, plan: StudyPlan, device: str) -> dict[str, Any]:
        """The trivial predictors on the validation split (what the study records)."""
        return split_baselines(data_mod.load(plan.data, device), "val",
                               plan.train.val_batch_size)

    def __call__(self, trial: optuna.Trial, plan: StudyPlan, device: str, artifact_store: Any,
                 eta: Callable[[float], None] | None = None) -> Outcome:
        """One trial. Records the effective specs and the training result's attributes, and a
        prediction strip (input | true future | predicted future) in ``artifact_store``. Never
        raises for a trial that went wrong: diverged, out of memory or an invalid configuration
        end as FAIL."""
        with reading_once():  # TPE with Hyperband would read the study's trials per parameter
            values = plan.sample_space.sample(trial)
        model_spec, train_spec = plan.trial_specs(values, trial.number, device)
        set_user_attrs(trial, {"model_spec": to_dict(model_spec),
                               "train_spec": to_dict(train_spec)})
        data = data_mod.load(plan.data, device)
        seed_everything(train_spec.seed)  # initial weights repeat (hpo fixed --config)
        try:
            model = archs.create_model(model_spec)
        except HpoError as exc:  # a sampled combination the architecture rejects
            return Outcome(TrialState.FAIL, reason=f"invalid configuration: {exc}")
        goals = plan.spec.objectives
        if self._baselines is None:  # read once per worker (a worker records them first)
            self._baselines = study_baselines(trial.study.user_attrs) or {}
        guard = Guard(trial, self._baselines, train_spec.epochs, multi=len(goals) > 1,
                      prune=plan.spec.pruner != "none")
        result = train_mod.train_and_evaluate(model, data, train_spec, trial=guard,
                                              data_spec=plan.data, eta=eta)
        attrs = result.user_attrs()
        if plan.spec.record_test and result.best_epoch > 0:  # the best epoch's weights
            tested = train_mod.evaluate(model, data, "test", train_spec.val_batch_size,
                                        data_spec=plan.data)
            attrs.update({f"test_{k}": _finite(tested[k]) for k in ("mse", "mae", "ssim", "psnr")})
        if artifact_store is not None and result.best_epoch > 0:
            attrs["prediction_artifact"] = _upload_strip(trial, model, data, plan.data,
                                                         artifact_store)
        set_user_attrs(trial, attrs)  # one round trip
        state, reason = _ENDINGS[result.stop_reason]
        if guard.tripped:
            reason = "pruned after epoch {epochs}: no better than a trivial predictor"
        value = values_of(goals, result) if state == TrialState.COMPLETE else None
        if state == TrialState.COMPLETE and value is None:
            state, reason = TrialState.FAIL, f"an objective of {', '.join(goals)} is not finite"
        return Outcome(state, value=value[0] if value and len(goals) == 1 else value,
                       epochs=result.epochs,
                       reason=reason.format(epochs=result.epochs, device=result.device))


    def segment(self, trial: optuna.Trial, plan: StudyPlan, device: str, artifact_store: Any,
                segment: Any, scheduler: Any, paused: Path) -> Outcome:
        """One segment of a configuration of ``--scheduler promote``
        (:mod:`hpo_vidpred.study.segments`): train from its paused run (or from scratch) to its
        rung, reporting each epoch (the guard and the curve rule may stop it), then pause it
        there, complete it at the last rung, or stop it. Outcome state RUNNING: paused."""
        values = plan.sample_space.sample(optuna.trial.FixedTrial(trial.params))
        model_spec, train_spec = plan.trial_specs(values, trial.number, device)
        if segment.start == 0:
            set_user_attrs(trial, {"model_spec": to_dict(model_spec),
                                   "train_spec": to_dict(train_spec)})
        data = data_mod.load(plan.data, device)
        seed_everything(train_spec.seed)
        try:
            model = archs.create_model(model_spec)
        except HpoError as exc:
            trial.set_user_attr("fail_reason", f"invalid configuration: {exc}")
            segments.end(trial.study, scheduler, segment, "failed")
            return Outcome(TrialState.FAIL, reason=f"invalid configuration: {exc}")
        if self._baselines is None:
            self._baselines = study_baselines(trial.study.user_attrs) or {}
        reporter = _SegmentReporter(trial.study, scheduler, segment, math.inf if
                                    plan.spec.pruner == "none" else trivial_floor(self._baselines))
        result = train_mod.train_and_evaluate(
            model, data, train_spec, trial=reporter, data_spec=plan.data,
            resume_from=paused if segment.start else None, pause_at=segment.until,
            pause_to=paused)
        how = {"paused": "paused", "completed": "paused", "pruned": "stopped",
               "early_stopped": "stopped"}.get(result.stop_reason, "failed")
        attrs = result.user_attrs()
        if how == "failed":
            attrs["fail_reason"] = _ENDINGS[result.stop_reason][1].format(
                epochs=result.epochs, device=result.device) or result.stop_reason
        if how == "paused" and len(segment.curve) >= scheduler.rungs.last \
                and artifact_store is not None:  # it completes: its strip
            attrs["prediction_artifact"] = _upload_strip(trial, model, data, plan.data,
                                                         artifact_store)
        if reporter.tripped:
            attrs["stop_reason"] = "no better than a trivial predictor"
        set_user_attrs(trial, attrs)  # while it runs: a finished trial takes no attributes
        state = segments.end(trial.study, scheduler, segment, how)
        reason = {TrialState.PRUNED: f"stopped after epoch {result.epochs}" + (
            ": no better than a trivial predictor" if reporter.tripped else ""),
            TrialState.FAIL: attrs.get("fail_reason", "")}.get(state, "")
        best = result.best_val_mse if math.isfinite(result.best_val_mse) else None
        return Outcome(state, value=best, reason=reason, epochs=result.epochs)


class _SegmentReporter:
    """The ``trial`` a segment's training loop reports to (``report`` / ``should_prune``)."""

    def __init__(self, study: optuna.Study, scheduler: Any, segment: Any, floor: float) -> None:
        self.study, self.scheduler, self.segment, self.floor = study, scheduler, segment, floor
        self.how, self.tripped = "go", False

    def report(self, value: float, step: int) -> None:
        self.how = segments.report(self.study, self.scheduler, self.segment, step, value,
                                   self.floor)
        self.tripped = self.how == "stop" and value >= self.floor

    def should_prune(self) -> bool:
        return self.how == "stop"


def _upload_strip(trial: optuna.Trial, model: Any, data: Any, data_spec: DataSpec,
                  artifact_store: Any) -> str:
    """Upload the trial's prediction strip; its artifact id."""
    image = prediction_strip(model, data, data_spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial-{trial.number}-prediction.png"
        image.save(path)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=str(path), study_or_trial=trial)
    return artifact_id


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def prediction_strip(model: Any, data: Any, data_spec: DataSpec, index: int = 0) -> Any:
    """Run ``model`` closed-loop on validation sequence ``index``: rows input, truth,
    predicted (a PIL image, :func:`hpo_vidpred.strip.frame_rows`)."""
    import torch

    model.eval()
    with torch.no_grad():
        frames = data.split("val")[index:index + 1].float().div(255.0)  # (1, T, C, H, W)
        frames = frames.to(next(model.parameters()).device)
        n_in, n_out = data_spec.n_in, data_spec.n_out
        predicted = model(frames[:, :n_in], n_out).frames.float().clamp(0.0, 1.0)
    return frame_rows([("input", frames[0, :n_in]), ("truth", frames[0, n_in:n_in + n_out]),
                       ("predicted", predicted[0])])  # (n_out, C, H, W)

