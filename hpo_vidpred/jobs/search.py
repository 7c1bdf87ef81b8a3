"""``hpo run``'s study: samplers, pruners, the plan, the objective and the summary.

``hpo run`` (docs/design.md sections 3, 8) resolves a :class:`~hpo_vidpred.specs.StudySpec` into a
:class:`StudyPlan` -- the validated search space and the budgeted data, model and training specs --
before anything runs. The study is created or reopened with :func:`open_search_study` (one spec
check, :func:`hpo_vidpred.store.records.open_record`). Each trial samples the space, becomes a
:class:`ModelSpec` + :class:`TrainSpec`, is trained by :func:`hpo_vidpred.train.train_and_evaluate`
and ends as an :class:`Outcome` (:class:`TrainObjective`). The worker pool that drives trials
lives in :mod:`hpo_vidpred.jobs.workers`.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .. import archs, budgets
from .. import data as data_mod
from .. import train as train_mod
from ..cells import CELLS
from ..devices import seed_everything
from ..errors import HpoError
from ..metrics import split_baselines
from ..paths import studies_file
from ..search_space import SearchSpace, load_search_space
from ..specs import DataSpec, ModelSpec, StudySpec, TrainSpec, to_dict, to_record
from ..store import mask_url
from ..store.lifecycle import set_user_attrs
from ..store.rdb import reading_once
from ..store.records import (
    open_record,
    pareto_front,
    study_objectives,
    trial_cell,
    trial_mse,
    ratio_text,
    retried_numbers,
    study_baselines,
    trial_counts,
    trial_metrics,
    sampled_differences,
    trained_params,
    trivial_scores,
)
from ..strip import prediction_strip
from .goals import GOALS, Guard, check_goals, trivial_floor, values_of
from .samplers import PRUNERS, SAMPLERS, resolve_scheduler

__all__ = [
    "Outcome",
    "StudyPlan",
    "TrainObjective",
    "eta_line",
    "format_summary",
    "adopt_recorded",
    "open_search_study",
    "plan_study",
    "summarize",
]

# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class StudyPlan:
    """A :class:`StudySpec` resolved and validated: what every worker of the study runs.

    ``model`` and ``train`` are the seed's fixed configuration with the search space's ``fixed``
    values, before sampling; ``data``, ``model`` and ``train`` are scaled to the budget.
    ``space`` is the search space as written (what the study records and compares);
    ``sample_space`` what trials sample: the space narrowed to what trains at the budget
    (:func:`hpo_vidpred.budgets.narrow`), or, for a study recorded before spaces were narrowed,
    the space as written (its trials were capped after sampling, see :meth:`as_recorded`).
    """

    spec: StudySpec
    space: SearchSpace
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    raw: tuple[DataSpec, ModelSpec, TrainSpec]  # the same before the budget
    sample_space: SearchSpace = None  # type: ignore[assignment]  (set by plan_study)
    scheduler: str = "fifo"  # the one it runs (--scheduler auto resolved, or as recorded)

    @property
    def name(self) -> str:
        return self.spec.study_name

    def trial_specs(self, values: Mapping[str, Any], number: int,
                    device: str = "auto") -> tuple[ModelSpec, TrainSpec]:
        """The model and training specs of trial ``number`` with sampled ``values``, budgeted."""
        data, model, train = self.raw
        model, train = self.space.apply(values, model, train)
        train = dataclasses.replace(train, seed=self.spec.seed + number, device=device)
        _, model, train = _budgeted(self.spec, self.scheduler, data, model, train)
        return model, train

    def as_recorded(self, study_attrs: Mapping[str, Any]) -> StudyPlan:
        """This plan as the study ``study_attrs`` belong to samples: a study recorded before
        search spaces were narrowed to the budget (no ``sampling_space`` attribute) keeps
        sampling the space as written, so that its trials stay comparable."""
        if "sampling_space" in study_attrs or "spec" not in study_attrs:
            return self
        return dataclasses.replace(self, sample_space=self.space)

    def record_attrs(self) -> dict[str, Any]:
        """What a new study records besides its spec: the space it samples, the scheduler it
        runs (and its rungs)."""
        from .samplers import make_scheduler

        attrs: dict[str, Any] = {"seed": self.spec.seed,
                                 "sampling_space": self.sample_space.to_dict(),
                                 "scheduler": self.scheduler}
        if self.scheduler == "promote":
            attrs["rungs"] = make_scheduler(self).rungs.to_dict()
        return attrs

    def record(self) -> dict[str, Any]:
        """What the study stores as its spec and compares when it is continued (JSON-safe)."""
        return {"study": to_record(self.spec), "search_space": self.space.to_dict(),
                "data": to_record(self.data), "model": to_record(self.model),
                "train": to_record(self.train)}


def plan_study(spec: StudySpec, scheduler: str | None = None) -> StudyPlan:
    """Resolve and validate ``spec``: names, search space, data and budget; nothing runs.

    Every problem is a one-line :class:`HpoError`. ``scheduler``: the one an existing study
    runs (:func:`adopt_recorded`), instead of what ``spec.scheduler`` resolves to.
    """
    archs.ARCHS.get(spec.arch)
    data_mod.DATASETS.get(spec.data)
    SAMPLERS.get(spec.sampler)
    PRUNERS.get(spec.pruner)
    scheduler = scheduler or resolve_scheduler(spec.scheduler, len(spec.objectives))
    check_goals(spec.objectives, spec.sampler)
    budgets.get(spec.budget)
    if not isinstance(spec.epochs, int) or spec.epochs < 0:
        raise HpoError(f"--epochs must be 0 (the budget's) or a positive number, not {spec.epochs}")
    if spec.cell:
        CELLS.get(spec.cell)
    source = Path(spec.search_space) if spec.search_space else studies_file(f"{spec.arch}.yaml")
    space = load_search_space(source, spec.arch, archs.config_keys(spec.arch), CELLS.names())
    if spec.cell:
        space = space.pin("cell", spec.cell)
    overrides = {"root": spec.data_dir} if spec.data_dir else {}
    data = data_mod.default_spec(spec.data, **overrides)
    default_cell = spec.cell or _first_choice(space, "cell") or "convlstm"
    model = archs.fixed_spec(spec.arch, spec.data, default_cell)
    model = dataclasses.replace(model, channels=data.channels)
    model, train = space.apply(space.fixed, model, TrainSpec(seed=spec.seed))
    for values in space.corners():  # a value no trial could train is an error now, not per trial
        try:
            corner = budgets.apply(spec.budget, data, *space.apply(values, model, train))
            archs.check_spec(corner[1])
        except HpoError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if space.param(k))
            raise HpoError(f"search space {source}: {exc} (at {shown})") from None
    budgeted = _budgeted(spec, scheduler, data, model, train)
    return StudyPlan(spec=spec, space=space, data=budgeted[0], model=budgeted[1],
                     train=budgeted[2], raw=(data, model, train),
                     sample_space=budgets.narrow(spec.budget, space), scheduler=scheduler)


def adopt_recorded(plan: StudyPlan, storage: Any) -> StudyPlan:
    """``plan`` for the study as it exists in ``storage``: with ``--scheduler auto``, the
    scheduler it was started with (studies recorded before promotion existed ran fifo), so
    that a rerun of the same command continues it; otherwise ``plan`` itself."""
    if plan.spec.scheduler != "auto" or plan.name not in optuna.get_all_study_names(storage):
        return plan
    attrs = optuna.load_study(study_name=plan.name, storage=storage).user_attrs
    recorded = attrs.get("scheduler", "fifo") if "spec" in attrs else plan.scheduler
    return plan if recorded == plan.scheduler else plan_study(plan.spec, recorded)


def _budgeted(spec: StudySpec, scheduler: str, data: DataSpec, model: ModelSpec,
              train: TrainSpec) -> tuple[DataSpec, ModelSpec, TrainSpec]:
    """The specs at the study's budget, with ``--epochs`` over the budget's."""
    data, model, train = budgets.apply(spec.budget, data, model, train)
    if spec.epochs:
        train = dataclasses.replace(train, epochs=spec.epochs)
    elif scheduler == "promote":  # the schedule spans the last rung
        train = dataclasses.replace(train, epochs=budgets.get(spec.budget).promote_epochs(
            data.name))
    return data, model, train


def _first_choice(space: SearchSpace, name: str) -> Any:
    param = space.param(name)
    return param.choices[0] if param is not None and param.choices else space.fixed.get(name)


def open_search_study(plan: StudyPlan, storage: Any, sampler: Any = None,
                      pruner: Any = None) -> optuna.Study:
    """Create the plan's study, or load it when it exists and was made with the same plan (the
    caller holds :func:`hpo_vidpred.store.study_lock`)."""
    goals = plan.spec.objectives
    return open_record(
        storage, plan.name, "search", plan.record(),
        budget=budgets.describe(plan.spec.budget, *plan.raw), sampler=sampler, pruner=pruner,
        objective=",".join(goals), directions=[GOALS.get(g).direction for g in goals],
        extra=plan.record_attrs(), fix="rerun with the original settings to continue it, "
                                            "or start a new study with --study NAME")


# --------------------------------------------------------------------------- the objective
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
        (:mod:`hpo_vidpred.jobs.segments`): train from its paused run (or from scratch) to its
        rung, reporting each epoch (the guard and the curve rule may stop it), then pause it
        there, complete it at the last rung, or stop it. Outcome state RUNNING: paused."""
        from . import segments

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
        from . import segments

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


def eta_line(seconds: float, budget: str, device: str) -> str:
    """The one line that warns of a long run: ``about 8 h per trial at budget seed on cpu``."""
    minutes = seconds / 60
    length = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
    hint = ("; --budget small is the CPU demo" if device.startswith("cpu") and budget != "small"
            else "")
    return f"note: about {length} per trial at budget {budget} on {device}{hint}"


# --------------------------------------------------------------------------- summary
def summarize(study: optuna.Study, storage_url: str, target: int, seconds: float,
              ran: int, notes: list[str] | None = None) -> dict[str, Any]:
    """The end-of-run summary (what ``--json`` prints): ``best`` is the best trial by the first
    objective, ``front`` (several objectives) the Pareto-optimal trials, best-quality first."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    goals = list(study_objectives(study.user_attrs))
    front = pareto_front(study)
    baselines = study_baselines(study.user_attrs)

    def entry(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
        sampled = sampled_differences(t)  # only in studies recorded before spaces were narrowed
        return {"number": t.number, "value": t.values[0], "values": dict(zip(goals, t.values)),
                "val_mse": trial_mse(t), "params": trained_params(t), "cell": trial_cell(t),
                "val_ssim": t.user_attrs.get("val_ssim"), "val_mae": trial_metrics(t)["mae"],
                **({"sampled": sampled} if sampled else {})}
    return {
        "study": study.study_name,
        "storage": mask_url(storage_url),
        "target": target,
        "objectives": goals,
        "trials": trial_counts(trials),
        "ran_this_run": ran,
        "seconds": round(seconds, 1),
        "best": entry(front[0]) if front else None,
        **({"front": [entry(t) for t in front]} if len(goals) > 1 else {}),
        "baselines": None if baselines is None else {
            name: baselines[name]["mse"] for name in ("black", "copy_last", "mean_input")
            if name in baselines},
        "trivial": trivial_scores(baselines),
        "failures": [{"number": t.number,
                      "reason": t.user_attrs.get("fail_reason", "its worker stopped (no heartbeat)")}
                     for t in trials if t.state == TrialState.FAIL and t.number not in retried],
        "notes": list(notes or []),
    }


def _best_line(best: Mapping[str, Any], baselines: Mapping[str, Any], prefix: str) -> str:
    """``val_mse 0.0093 = 0.50x black, 0.33x copy-last (trial 16): params``; with several
    objectives the ratios follow in brackets."""
    sampled = best.get("sampled", {})
    params = ", ".join(f"{k}={_fmt(v)}" + (f" [sampled {_fmt(sampled[k])}]" if k in sampled
                                           else "") for k, v in best["params"].items()) or "-"
    metrics = {"mae": best.get("val_mae"), "ssim": best.get("val_ssim")}
    ratios = ratio_text(best["val_mse"], baselines, metrics) if best["val_mse"] is not None else ""
    values = ", ".join(f"{k} {v:.6g}" for k, v in best["values"].items())
    if ratios:
        values += f" {ratios}" if list(best["values"]) == ["val_mse"] else \
            f" [val_mse {ratios}]"
    return f"{prefix}{values} (trial {best['number']}): {params}"


def format_summary(summary: Mapping[str, Any]) -> str:
    """The end-of-run summary as a few lines for a terminal."""
    counts = summary["trials"]
    lines = [
        f"study {summary['study']} ({summary['storage']}): {counts['finished']}/{summary['target']}"
        f" finished trials: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed" + (f"; {counts['retried']} lost to a stopped worker and "
                                        "run again" if counts["retried"] else ""),
    ]
    baselines = summary.get("trivial") or {k: {"mse": v}
                                           for k, v in (summary.get("baselines") or {}).items()}
    if summary["best"] is None:
        lines.append("best: none yet (no complete trial)")
    elif "front" in summary:
        lines.append(f"Pareto front of {', '.join(summary['objectives'])} "
                     f"({len(summary['front'])} trials, best {summary['objectives'][0]} first):")
        lines += [_best_line(t, baselines, "  ") for t in summary["front"]]
    else:
        lines.append(_best_line(summary["best"], baselines, "best "))
    by_reason: dict[str, list[int]] = {}
    for failure in summary["failures"]:
        by_reason.setdefault(failure["reason"], []).append(failure["number"])
    for reason, numbers in by_reason.items():
        shown = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
        lines.append(f"failed: {reason} (trial{'s' if len(numbers) > 1 else ''} {shown})")
    minutes, seconds = divmod(summary["seconds"], 60)
    pool = ""
    if "workers" in summary:
        pool = f" ({summary['workers']} worker{'s' if summary['workers'] > 1 else ''} on " \
               f"{', '.join(summary['devices'])})"
    lines.append(f"time used: {int(minutes)} min {seconds:.0f} s for {summary['ran_this_run']} "
                 f"trials in this run{pool}")
    lines += summary["notes"]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)
