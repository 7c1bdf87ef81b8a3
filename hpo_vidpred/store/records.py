"""What a study records, in one place: creating or opening a study with one spec check, the study
and trial attributes, and the readers everything else uses (kinds, budgets, best trials, counts,
the trivial baselines, the frame codec).

Three kinds of study share the store (``kind`` user attribute):

- ``search`` (``hpo run``): attributes ``spec`` = ``{"study", "search_space", "data", "model",
  "train"}``, ``budget``, ``objective`` (``val_mse``), ``baselines`` (validation split);
- ``fixed`` (``hpo fixed``): ``spec`` = ``{"fixed", "data", "model", "train"}``, ``budget``,
  ``baselines`` (validation split);
- ``compare`` (``hpo compare``): ``spec`` = ``{"compare", "data"}``, ``budget``, ``test_frames``,
  ``baselines`` (test split); objective ``test_mse``.

All carry ``package_version`` and ``git_commit``. A study is opened through :func:`open_record`,
which compares the stored ``spec`` with the one a run would record (:func:`spec_differences`):
another spec under the same name is refused with one line. Fields a newer version added to the
specs count at their defaults, so older stores keep opening.

Trials carry ``model_spec`` and ``train_spec`` (what they trained) and the training result's
attributes (``n_params``, ``stop_reason``, ``best_epoch``, ``step_ms``, ``train_seconds``, ...).

The verdicts on a model against the trivial predictors are :mod:`.verdicts`', re-exported here.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import hashlib
import json
import subprocess
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .. import __version__
from ..errors import HpoError
from ..search_space import param_base
from ..specs import DataSpec, ModelSpec, StudySpec, TrainSpec, dict_changes, to_record
from .verdicts import (BEATING, LEARNED_MARGIN, TRIVIAL, judge, judge_metrics, ratio_text,
                       trivial_scores, verdict_label, verdict_text)

__all__ = [
    "BEATING",
    "KINDS",
    "LEARNED_MARGIN",
    "TRIVIAL",
    "best_trials",
    "config_id",
    "decode_frames",
    "encode_frames",
    "git_commit",
    "judge",
    "judge_metrics",
    "load_study",
    "open_record",
    "params_text",
    "sampled_differences",
    "ratio_text",
    "retried_numbers",
    "set_attrs",
    "spec_differences",
    "study_baselines",
    "study_budget",
    "study_kind",
    "study_names",
    "study_objectives",
    "pareto_front",
    "trial_cell",
    "trial_counts",
    "trial_metrics",
    "trial_mse",
    "trial_value",
    "trained_params",
    "uncounted_numbers",
    "trivial_scores",
    "verdict_label",
    "verdict_text",
]

KINDS = {"search": "hpo run", "fixed": "hpo fixed", "compare": "hpo compare"}

# --------------------------------------------------------------------------- studies
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


_SECTIONS = {"data": DataSpec, "model": ModelSpec, "train": TrainSpec, "study": StudySpec}
_ADDED_SINCE_0_1 = {"model": {"forget_bias": 0.0}}  # spec fields newer than version 0.1


def spec_differences(stored: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """What differs between a stored study spec and the one a run would record, one
    ``"a.b: old -> new"`` per leaf. Spec fields the stored record lacks (added by a newer version)
    count at their defaults."""
    stored = dict(stored)
    for section, cls in _SECTIONS.items():
        if isinstance(stored.get(section), Mapping):
            defaults = json.loads(json.dumps({f.name: _default(f)
                                              for f in dataclasses.fields(cls)}))
            stored[section] = {**{k: v for k, v in defaults.items()
                                  if k in record.get(section, {})}, **stored[section]}
    return dict_changes(stored, record)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def open_record(storage: Any, name: str, kind: str, record: Mapping[str, Any], *,
                budget: Mapping[str, Any], objective: str = "val_mse", create: bool = True,
                fix: str = "", sampler: Any = None, pruner: Any = None,
                extra: Mapping[str, Any] | None = None,
                directions: Sequence[str] = ("minimize",)) -> optuna.Study | None:
    """The study ``name`` of ``kind``: loaded when it exists and recorded the same ``record``,
    else created with its attributes (``create=False``: None when it does not exist).

    A study of that name made by another command, or with another spec, is an :class:`HpoError`
    naming what differs (three keys at most) and ``fix``, what to do about it.
    """
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                  pruner=pruner)
    except KeyError:
        if not create:
            return None
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=pruner, directions=list(directions),
                                    load_if_exists=True)
    attrs = study.user_attrs
    if "spec" not in attrs and not study.trials:  # new (or a concurrent run's, not yet recorded)
        set_attrs(study, {"spec": dict(record), "kind": kind, "objective": objective,
                          "budget": dict(budget), "package_version": __version__,
                          "git_commit": git_commit(), **(extra or {})})
        return study
    if study_kind(attrs) != kind:
        raise HpoError(f"study {name!r} exists but was not made by '{KINDS[kind]}'; pick another "
                       "name or another store with --storage URL")
    differences = spec_differences(attrs["spec"], record)
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise HpoError(f"study {name!r} exists with a different spec ({shown}); {fix}")
    return study


def set_attrs(target: Any, attrs: Mapping[str, Any]) -> None:
    """Set user attributes on a study or trial (JSON-safe values)."""
    for key, value in attrs.items():
        target.set_user_attr(key, value)


def load_study(storage: Any, name: str) -> optuna.Study:
    """Load study ``name``; an :class:`HpoError` listing the store's studies if it is missing."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        shown = ", ".join(sorted(names)[:20]) or "none"
        raise HpoError(f"no study {name!r} in this store; its studies: {shown}") from None


def study_names(storage: Any, pattern: str = "*") -> list[str]:
    """The store's study names matching ``pattern`` (globs separated by commas), sorted."""
    globs = [g.strip() for g in pattern.split(",") if g.strip()] or ["*"]
    return sorted(n for n in optuna.get_all_study_names(storage)
                  if any(fnmatch.fnmatchcase(n, g) for g in globs))


def study_kind(attrs: Mapping[str, Any]) -> str:
    """``search``, ``fixed``, ``compare`` or ``other``, from a study's user attributes."""
    kind = attrs.get("kind")
    if kind in KINDS and "spec" in attrs:
        return kind
    spec = attrs.get("spec") or {}
    return "search" if "study" in spec and "search_space" in spec else "other"


def study_budget(attrs: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The budget a study ran at and what it changed (``["data.height: 64 -> 32", ...]``), as the
    study recorded it when it was created (so it says what ran even after a budget's definition
    changed); for a search study also what the budget does to searched values (width caps, the
    patch floor), in words."""
    from .. import budgets  # specs and registries only: no torch

    kind = study_kind(attrs)
    if kind not in KINDS:
        return "?", []
    section = {"search": "study", "fixed": "fixed", "compare": "compare"}[kind]
    recorded = attrs.get("budget") or {}
    name = recorded.get("budget") or (attrs.get("spec") or {}).get(section, {}).get("budget", "?")
    changes = list(recorded.get("changes", []))
    if kind == "search" and name in budgets.BUDGETS:
        changes += budgets.search_caps(name)
    return name, changes


# --------------------------------------------------------------------------- trials
def trial_cell(trial: FrozenTrial) -> str | None:
    """The recurrent cell a trial trained (its recorded model spec, else its ``cell`` param)."""
    return (trial.user_attrs.get("model_spec") or {}).get("cell") or trial.params.get("cell")


_MODEL_FIELDS = ("cell", "peephole", "forget_bias")


def trained_params(trial: Any) -> dict[str, Any]:
    """A trial's parameters as it trained them (a frozen or live trial): each sampled value
    replaced by the one its recorded ``model_spec`` / ``train_spec`` holds. They are the same in
    every study whose search space was narrowed to its budget; in studies recorded before that,
    the budget capped some values after sampling (``hidden=60`` trained as 16)."""
    model = trial.user_attrs.get("model_spec") or {}
    train = trial.user_attrs.get("train_spec") or {}
    config = model.get("config") or {}
    out = {}
    for name, value in trial.params.items():
        base = param_base(name)
        if name in train:
            value = train[name]
        elif name in _MODEL_FIELDS and name in model:
            value = model[name]
        elif name in config:
            value = config[name]
        elif base != name and isinstance(config.get(base), (list, tuple)):
            index = int(name[len(base) + 1:]) - 1
            if 0 <= index < len(config[base]):
                value = config[base][index]
        out[name] = value
    return out


def sampled_differences(trial: Any) -> dict[str, Any]:
    """The sampled values of ``trial`` that differ from the trained ones (older stores only)."""
    trained = trained_params(trial)
    return {k: v for k, v in trial.params.items() if trained.get(k) != v}


def params_text(trial: Any, number=str) -> str:
    """``lr=0.003, hidden=16 [sampled 60]``: the trained values, with the sampled one in brackets
    where the budget changed it after sampling (studies recorded before spaces were narrowed);
    ``number`` formats each value."""
    differs = sampled_differences(trial)
    return ", ".join(f"{k}={number(v)}" + (f" [sampled {number(differs[k])}]" if k in differs
                                           else "") for k, v in trained_params(trial).items())


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that were queued again (their worker died or was interrupted)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


SURPLUS = "hpo:surplus"  # a trial handed back untrained, one over --trials (lifecycle)
STATUS, PAUSED = "hpo:status", "paused"  # a configuration trained in segments (lifecycle)


def uncounted_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that no count includes: those queued again (their retry counts)
    and those handed back untrained, one over ``--trials`` (:data:`SURPLUS`)."""
    return retried_numbers(trials) | {t.number for t in trials if t.system_attrs.get(SURPLUS)}


def trial_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials by state. ``finished`` is what ``--trials`` counts: COMPLETE + PRUNED + FAIL, except
    failures that were re-queued (their retry counts instead); ``retried`` counts those,
    ``surplus`` (only where there are any) the trials handed back untrained, and ``unpromoted``
    the pruned ones that were paused at a rung and never promoted (``--scheduler promote``)."""
    retried = retried_numbers(trials)
    counts = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting", "retried"), 0)
    key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL:
           "failed", TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    for t in trials:
        name = key[t.state]
        if t.state == TrialState.FAIL and t.system_attrs.get(SURPLUS):
            counts["surplus"] = counts.get("surplus", 0) + 1
            continue
        name = "retried" if t.state == TrialState.FAIL and t.number in retried else name
        if t.state == TrialState.PRUNED and t.system_attrs.get(STATUS) == PAUSED:
            counts["unpromoted"] = counts.get("unpromoted", 0) + 1
        counts[name] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


def trial_value(trial: FrozenTrial) -> float | None:
    """A trial's value, or the first objective's in a multi-objective study (None if none)."""
    return trial.values[0] if trial.values else None


def trial_mse(trial: FrozenTrial) -> float | None:
    """A trial's validation MSE (its value in a study of version 0.1), whatever the study
    optimized: what skill is judged on."""
    return trial.user_attrs.get("val_mse", trial_value(trial))


def trial_metrics(trial: FrozenTrial) -> dict[str, float | None]:
    """A search or fixed trial's validation ``mse``, ``mae``, ``ssim`` and ``psnr`` at its best
    epoch (MAE from the per-epoch ``curves``; None where older stores did not record it)."""
    a = trial.user_attrs
    curve = (a.get("curves") or {}).get("val_mae") or []
    epoch = a.get("best_epoch") or 0
    mae = curve[epoch - 1] if 0 < epoch <= len(curve) else None
    return {"mse": trial_mse(trial), "mae": mae, "ssim": a.get("val_ssim"),
            "psnr": a.get("val_psnr")}


def study_objectives(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    """The objectives a study optimizes (``val_mse`` for stores of version 0.1)."""
    study = (attrs.get("spec") or {}).get("study") or {}
    return tuple(study.get("objectives") or (attrs.get("objective") or "val_mse").split(","))


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna's best trials -- the Pareto front, or the one best trial -- best first objective
    (val_mse) first."""
    try:
        front = list(study.best_trials)
    except ValueError:  # one objective and no complete trial yet
        return []
    return sorted(front, key=lambda t: (t.values[0], t.number))


def best_trials(trials: Iterable[FrozenTrial], top: int = 1,
                per_cell: bool = False) -> list[FrozenTrial]:
    """The ``top`` complete trials with the lowest value -- the first objective's in a
    multi-objective study -- (per cell with ``per_cell``), best first.

    Only trials that recorded the specs they trained count (what ``hpo run`` and ``hpo fixed``
    store).
    """
    if top < 1:
        raise HpoError("--top must be at least 1")
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE
                       and t.values and "model_spec" in t.user_attrs
                       and "train_spec" in t.user_attrs), key=lambda t: (t.values[0], t.number))
    if not per_cell:
        return complete[:top]
    picked: list[FrozenTrial] = []
    counts: dict[str | None, int] = {}
    for t in complete:
        cell = trial_cell(t)
        if counts.get(cell, 0) < top:
            counts[cell] = counts.get(cell, 0) + 1
            picked.append(t)
    return picked


def config_id(model: ModelSpec, train: TrainSpec, data: DataSpec) -> str:
    """A short hash of what a run trains (the seed, device and data root left out): two runs with
    the same id train the same configuration on the same data."""
    specs = {"model": to_record(model), "train": to_record(train), "data": to_record(data)}
    for section, added in _ADDED_SINCE_0_1.items():  # ids of older stores stay valid
        for key, default in added.items():
            if specs[section].get(key) == default:
                specs[section].pop(key)
    text = json.dumps(specs, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


# --------------------------------------------------------------------------- baselines
def study_baselines(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trivial predictors' metrics a study recorded (``{"split": "val", "black": {"mse": ..,
    "mse_per_step": [..], ...}, "copy_last": {..}, "mean_input": {..}}``), or None (a store of
    version 0.1)."""
    baselines = attrs.get("baselines")
    return dict(baselines) if isinstance(baselines, Mapping) else None


# --------------------------------------------------------------------------- frames
def encode_frames(frames: Any) -> dict[str, Any]:
    """uint8 frames ``(T, C, H, W)`` (numpy or torch) as a small JSON-safe dict (zlib + base64)
    for user attributes."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    array = np.ascontiguousarray(frames, dtype=np.uint8)
    return {"shape": list(array.shape),
            "zlib_b64": base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")}


def decode_frames(encoded: Mapping[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_frames`: float32 frames ``(T, C, H, W)`` in [0, 1]."""
    raw = zlib.decompress(base64.b64decode(encoded["zlib_b64"]))
    array = np.frombuffer(raw, dtype=np.uint8).reshape(encoded["shape"])
    return array.astype(np.float32) / 255.0
