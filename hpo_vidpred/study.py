"""Studies: samplers, pruners, the study plan, the spec check on resume, the objective, the summary.

``hpo run`` (DESIGN sections 3 and 8) resolves a :class:`~hpo_vidpred.specs.StudySpec` into a
:class:`StudyPlan` -- the validated search space and the budgeted data, model and training specs --
before anything runs. :func:`open_study` creates the Optuna study or, when the name exists, checks
that it was created with the same plan (else one line saying what differs). Each trial samples the
space, becomes a :class:`ModelSpec` + :class:`TrainSpec`, is trained by
:func:`hpo_vidpred.train.train_and_evaluate` and ends as an :class:`Outcome`. The worker pool that
drives trials lives in :mod:`hpo_vidpred.workers`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import __version__
from .errors import HpoError
from .paths import studies_file
from .registry import Registry
from .search_space import SearchSpace, load_search_space
from .specs import DataSpec, ModelSpec, StudySpec, TrainSpec, to_dict

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Outcome",
    "StudyPlan",
    "format_summary",
    "make_pruner",
    "make_sampler",
    "open_study",
    "plan_study",
    "summarize",
    "train_trial",
    "trial_counts",
]

# --------------------------------------------------------------------------- samplers / pruners
# A sampler factory takes (study seed, this worker's seed, random startup trials).
SAMPLERS: Registry[Callable[[int, int, int], optuna.samplers.BaseSampler]] = Registry("sampler")
# A pruner factory takes the budgeted TrainSpec (its epochs are the maximal resource).
PRUNERS: Registry[Callable[[TrainSpec], optuna.pruners.BasePruner]] = Registry("pruner")
N_STARTUP = 10  # random trials before a model-based sampler starts modelling


@SAMPLERS.register("tpe")
def _tpe(study_seed: int, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    # Multivariate TPE (Falkner et al. 2018) with group decomposition, which models conditional
    # parameters jointly too; constant_liar keeps parallel workers from sampling the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                      constant_liar=True, n_startup_trials=n_startup)


@SAMPLERS.register("random")
def _random(study_seed: int, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("qmc")
def _qmc(study_seed: int, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    # Scrambled Sobol; every worker must share the scramble seed to draw from one sequence.
    return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=study_seed,
                                      independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                      warn_asynchronous_seeding=False,
                                      warn_independent_sampling=False)


@SAMPLERS.register("gp")
def _gp(study_seed: int, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup,
                                     warn_independent_sampling=False)


@SAMPLERS.register("cmaes")
def _cmaes(study_seed: int, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    # CMA-ES models the float and int parameters; categorical ones are sampled at random.
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup,
                                        warn_independent_sampling=False)


@PRUNERS.register("hyperband")
def _hyperband(train: TrainSpec) -> optuna.pruners.BasePruner:
    # Li et al. 2018; the resource is the epoch (train.py reports val_mse at epochs 1, 2, ...).
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, train.epochs),
                                          reduction_factor=3)


@PRUNERS.register("asha")
def _asha(train: TrainSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


@PRUNERS.register("median")
def _median(train: TrainSpec) -> optuna.pruners.BasePruner:
    # Prunes from the first epoch on, once 5 trials have completed.
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


@PRUNERS.register("none")
def _no_pruner(train: TrainSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def make_sampler(plan: StudyPlan, worker_seed: int) -> optuna.samplers.BaseSampler:
    """The plan's sampler, seeded for one worker (see :mod:`hpo_vidpred.workers`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS.get(plan.spec.sampler)(plan.spec.seed, worker_seed, N_STARTUP)


def make_pruner(plan: StudyPlan) -> optuna.pruners.BasePruner:
    """The plan's pruner, sized to the budgeted number of epochs."""
    return PRUNERS.get(plan.spec.pruner)(plan.train)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class StudyPlan:
    """A :class:`StudySpec` resolved and validated: what every worker of the study runs.

    ``model`` and ``train`` are the seed's fixed configuration with the search space's ``fixed``
    values, before sampling; ``data``, ``model`` and ``train`` are scaled to the budget.
    """

    spec: StudySpec
    space: SearchSpace
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    raw: tuple[DataSpec, ModelSpec, TrainSpec]  # the same before the budget

    @property
    def name(self) -> str:
        return self.spec.study_name

    def trial_specs(self, values: Mapping[str, Any], number: int,
                    device: str = "auto") -> tuple[ModelSpec, TrainSpec]:
        """The model and training specs of trial ``number`` with sampled ``values``, budgeted."""
        from . import budgets

        data, model, train = self.raw
        model, train = self.space.apply(values, model, train)
        train = dataclasses.replace(train, seed=self.spec.seed + number, device=device)
        _, model, train = budgets.apply(self.spec.budget, data, model, train)
        return model, train

    def record(self) -> dict[str, Any]:
        """What the study stores as its spec and compares when it is continued (JSON-safe)."""
        study = to_dict(self.spec)
        for volatile in ("name", "search_space", "data_dir", "seed"):
            study.pop(volatile)
        data = to_dict(self.data)
        data.pop("root")  # another machine may keep the data elsewhere
        train = to_dict(self.train)
        for volatile in ("seed", "device"):
            train.pop(volatile)
        return json.loads(json.dumps({
            "study": study, "search_space": self.space.to_dict(), "data": data,
            "model": to_dict(self.model), "train": train,
        }))


def plan_study(spec: StudySpec) -> StudyPlan:
    """Resolve and validate ``spec``: names, search space, data and budget; nothing runs.

    Every problem is a one-line :class:`HpoError`.
    """
    from . import archs, budgets
    from . import data as data_mod
    from .cells import CELLS

    archs.ARCHS.get(spec.arch)
    data_mod.DATASETS.get(spec.data)
    SAMPLERS.get(spec.sampler)
    PRUNERS.get(spec.pruner)
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
    budgeted = budgets.apply(spec.budget, data, model, train)
    return StudyPlan(spec=spec, space=space, data=budgeted[0], model=budgeted[1],
                     train=budgeted[2], raw=(data, model, train))


def _first_choice(space: SearchSpace, name: str) -> Any:
    param = space.param(name)
    return param.choices[0] if param is not None and param.choices else space.fixed.get(name)


# --------------------------------------------------------------------------- the study
def open_study(plan: StudyPlan, storage: optuna.storages.RDBStorage,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the plan's study, or load it when it exists and was made with the same plan.

    A study of that name with another spec is refused: one line naming what differs (at most
    three keys) and how to proceed. The caller holds :func:`hpo_vidpred.storage.study_lock`.
    """
    record = plan.record()
    try:
        study = optuna.load_study(study_name=plan.name, storage=storage, sampler=sampler,
                                  pruner=pruner)
    except KeyError:
        study = optuna.create_study(study_name=plan.name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction="minimize")
        from . import budgets

        for key, value in {"spec": record, "kind": "search", "objective": "val_mse",
                           "budget": budgets.describe(plan.spec.budget, *plan.raw),
                           "package_version": __version__, "git_commit": git_commit()}.items():
            study.set_user_attr(key, value)
        return study
    stored = study.user_attrs.get("spec")
    if stored is None:
        raise HpoError(f"study {plan.name!r} exists but was not made by 'hpo run'; pick another "
                       "name with --study NAME")
    differences = _differences(stored, record)
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise HpoError(
            f"study {plan.name!r} exists with a different spec ({shown}); rerun with the "
            f"original settings to continue it, or start a new study with --study NAME")
    return study


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        # In the record's order: what the user set (study, search space) before what follows.
        for key in list(new) + [k for k in old if k not in new]:
            sub = f"{path}.{key}" if path else str(key)
            out += _differences(old.get(key, "<unset>"), new.get(key, "<unset>"), sub)
        return out
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def git_commit() -> str:
    """The package's git commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- the objective
@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its state, its value (COMPLETE), a reason (PRUNED, FAIL), epochs run."""

    state: TrialState
    value: float | None = None
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


def train_trial(trial: optuna.Trial, plan: StudyPlan, device: str,
                artifact_store: Any = None) -> Outcome:
    """The study objective: sample, build, train, record; one trial of the plan.

    Records the effective specs and ``TrainResult.user_attrs()`` on the trial, and a prediction
    strip (input | true future | predicted future) in ``artifact_store``. Never raises for a
    trial that went wrong: a diverged, out-of-memory or invalid configuration ends as FAIL.
    """
    from . import archs
    from . import data as data_mod
    from . import train as train_mod

    values = plan.space.sample(trial)
    model_spec, train_spec = plan.trial_specs(values, trial.number, device)
    trial.set_user_attr("model_spec", to_dict(model_spec))
    trial.set_user_attr("train_spec", to_dict(train_spec))
    data = data_mod.load(plan.data, train_mod.resolve_device(device))
    train_mod.seed_everything(train_spec.seed)  # initial weights repeat (hpo fixed --config)
    try:
        model = archs.create_model(model_spec)
    except HpoError as exc:  # a sampled combination the architecture rejects
        return Outcome(TrialState.FAIL, reason=f"invalid configuration: {exc}")
    result = train_mod.train_and_evaluate(model, data, train_spec, trial=trial,
                                          data_spec=plan.data)
    for key, value in result.user_attrs().items():
        trial.set_user_attr(key, value)
    if artifact_store is not None and result.best_epoch > 0:
        _upload_strip(trial, model, data, plan.data, artifact_store)
    state, reason = _ENDINGS[result.stop_reason]
    value = result.best_val_mse if state == TrialState.COMPLETE else None
    return Outcome(state, value=value, epochs=result.epochs,
                   reason=reason.format(epochs=result.epochs, device=result.device))


def _upload_strip(trial: optuna.Trial, model: Any, data: Any, data_spec: DataSpec,
                  artifact_store: Any) -> None:
    from .strip import prediction_strip

    image = prediction_strip(model, data, data_spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial-{trial.number}-prediction.png"
        image.save(path)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=str(path), study_or_trial=trial)
    trial.set_user_attr("prediction_artifact", artifact_id)


# --------------------------------------------------------------------------- counting / summary
def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that were queued again (their worker died or was interrupted)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def trial_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state. ``finished`` is what ``--trials`` counts: COMPLETE + PRUNED + FAIL, except
    failures that were re-queued (their retry counts instead); ``retried`` counts those."""
    retried = retried_numbers(trials)
    counts = {name: 0 for name in ("complete", "pruned", "failed", "running", "waiting",
                                   "retried")}
    key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
           TrialState.FAIL: "failed", TrialState.RUNNING: "running",
           TrialState.WAITING: "waiting"}
    for t in trials:
        name = "retried" if t.state == TrialState.FAIL and t.number in retried else key[t.state]
        counts[name] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


def summarize(study: optuna.Study, storage_url: str, target: int, seconds: float,
              ran: int, notes: list[str] | None = None) -> dict[str, Any]:
    """The end-of-run summary (what ``--json`` prints)."""
    from .storage import mask_url

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    return {
        "study": study.study_name,
        "storage": mask_url(storage_url),
        "target": target,
        "trials": trial_counts(trials),
        "ran_this_run": ran,
        "seconds": round(seconds, 1),
        "best": None if best is None else {
            "number": best.number, "value": best.value, "params": best.params,
            "cell": best.user_attrs.get("model_spec", {}).get("cell"),
        },
        "failures": [{"number": t.number,
                      "reason": t.user_attrs.get("fail_reason", "its worker stopped (no heartbeat)")}
                     for t in trials if t.state == TrialState.FAIL and t.number not in retried],
        "notes": list(notes or []),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The end-of-run summary as a few lines for a terminal."""
    counts = summary["trials"]
    lines = [
        f"study {summary['study']} ({summary['storage']}): {counts['finished']}/{summary['target']}"
        f" finished trials: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed" + (f"; {counts['retried']} lost to a stopped worker and "
                                        "run again" if counts["retried"] else ""),
    ]
    best = summary["best"]
    if best is None:
        lines.append("best: none yet (no complete trial)")
    else:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items()) or "-"
        lines.append(f"best val_mse {best['value']:.6g} (trial {best['number']}): {params}")
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
