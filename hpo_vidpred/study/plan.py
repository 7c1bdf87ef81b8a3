"""``hpo run``'s plan: a :class:`~hpo_vidpred.specs.StudySpec` resolved into a
:class:`StudyPlan` -- the validated search space (and the narrower one trials sample), the
budgeted data, model and training specs, the scheduler -- before anything runs; and the study
created or opened for it with one spec check (:func:`open_run_study`, which ``hpo run`` and
``hpo store prepare`` share)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .. import archs, budgets
from .. import data as data_mod
from ..cells import CELLS
from ..errors import HpoError
from ..paths import studies_file
from ..search_space import SearchSpace, load_search_space
from ..specs import DataSpec, ModelSpec, StudySpec, TrainSpec, to_record
from ..store import study_lock
from ..store.records import open_record, trial_counts
from .goals import GOALS, check_goals
from .strategy import PRUNERS, SAMPLERS, resolve_scheduler
from .warm import warm_start

__all__ = ["StudyPlan", "adopt_recorded", "check_flags", "open_run_study", "open_search_study",
           "plan_study"]


@dataclass(frozen=True)
class StudyPlan:
    """A :class:`StudySpec` resolved and validated: what every worker of the study runs.

    ``model`` and ``train`` are the seed's fixed configuration (or, for a dataset the
    architecture has none for, its defaults: :func:`hpo_vidpred.archs.base_spec`) with the search
    space's ``fixed`` values, before sampling; ``data``, ``model`` and ``train`` are scaled to the
    budget.
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
    rungs: Mapping[str, Any] | None = None  # promotion's rungs as the study recorded them

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
        sampling the space as written, so that its trials stay comparable; a promotion study keeps
        the rungs it recorded (a later default reduction factor does not move them)."""
        plan = self
        if self.scheduler == "promote" and study_attrs.get("rungs"):
            plan = dataclasses.replace(plan, rungs=dict(study_attrs["rungs"]))  # as it started
        if "sampling_space" in study_attrs or "spec" not in study_attrs:
            return plan
        return dataclasses.replace(plan, sample_space=self.space)

    def record_attrs(self) -> dict[str, Any]:
        """What a new study records besides its spec: the space it samples, the scheduler it
        runs (and its rungs)."""
        from .strategy import make_scheduler

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
    model = archs.base_spec(spec.arch, spec.data, default_cell, data.channels)
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


def check_flags(*, trials: int, timeout: float | None = None, heartbeat: int = 30,
                grace: int | None = None, threads: int = 0, warm_top: int = 3) -> None:
    """Numbers ``hpo run`` cannot use: one line each, before anything is opened or created."""
    if trials < 1:
        raise HpoError("--trials must be at least 1")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise HpoError("--timeout must be a positive number of seconds")
    if heartbeat < 1 or (grace is not None and grace < 1):
        raise HpoError("--heartbeat (and a grace period) must be at least 1 second")
    if threads < 0:
        raise HpoError("--threads must be 0 (share the cores out) or a positive number")
    if warm_top < 1:
        raise HpoError("--warm-top must be at least 1")


def open_run_study(plan: StudyPlan, storage: Any, trials: int, warm: Sequence[str] = (),
                   warm_top: int = 3) -> tuple[optuna.Study, StudyPlan, list[str], bool]:
    """Under the study lock: create the plan's study, or open it after the one spec check, and
    enqueue the warm starts it has room for (:func:`hpo_vidpred.study.warm.warm_start`; a source
    that cannot warm it is one line, and a study created here is deleted again). Returns the
    study, the plan as the study recorded it, the warm start's lines and whether the study
    existed."""
    with study_lock(storage, plan.name):
        existed = plan.name in optuna.get_all_study_names(storage)
        plan = adopt_recorded(plan, storage)
        study = open_search_study(plan, storage)
        plan = plan.as_recorded(study.user_attrs)
        try:
            counts = trial_counts(study.get_trials(deepcopy=False))
            room = trials - counts["finished"] - counts["running"] - counts["waiting"]
            warmed = warm_start(study, storage, warm, plan.space, plan.spec.arch, warm_top,
                                room) if warm else []
        except HpoError:  # a source that cannot warm this study: nothing created
            if not existed:
                optuna.delete_study(study_name=plan.name, storage=storage)
            raise
    return study, plan, warmed, existed
