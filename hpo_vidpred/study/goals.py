"""What a study optimizes (``hpo run --objectives val_mse,ms_per_step``): quality and cost of a
trained network, each with its direction, read off the training run.

One objective is an ordinary Optuna study with Hyperband pruning. Several make a multi-objective
study (TPE's multi-objective mode by default, NSGA-II with ``--sampler nsga2``) whose result is a
Pareto front; Optuna neither takes intermediate values nor prunes such studies, so the trials keep
their validation-MSE curve as a user attribute (``val_mse_curve``) and :class:`Guard` prunes on it
with a median rule (from the fifth complete trial, a trial whose best value so far is worse than
the median of the complete trials' curves at the same epoch stops, Optuna's MedianPruner rule),
besides the trivial-predictor rule every study has. The first objective is ``val_mse``: what
pruning follows, what is judged against the trivial predictors and where the front is read from
(``hpo export --pick``); ``val_ssim`` (maximized), ``ms_per_step`` and ``params`` come after it.
Cost is measured on the trial's own device in the same run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import HpoError
from ..registry import Registry
from ..store.records import TRIVIAL

__all__ = ["GOALS", "Goal", "Guard", "check_goals", "choose", "knee", "trivial_floor", "values_of"]


@dataclass(frozen=True)
class Goal:
    """One objective: its direction and how to read it off a ``TrainResult``."""

    name: str
    direction: str  # minimize | maximize
    read: Callable[[Any], float | None]


GOALS: Registry[Goal] = Registry("objective")
for _goal in (
    Goal("val_mse", "minimize", lambda r: r.best_val_mse),
    Goal("val_ssim", "maximize", lambda r: r.val_ssim),
    Goal("ms_per_step", "minimize", lambda r: r.step_ms),
    Goal("params", "minimize", lambda r: float(r.n_params)),
):
    GOALS.register(_goal.name)(_goal)

SINGLE_ONLY = ("cmaes",)  # samplers that optimize one objective only


def check_goals(names: Sequence[str], sampler: str) -> None:
    """One line for objectives a study cannot have: unknown, repeated, not starting with val_mse,
    or a sampler of one objective for several."""
    for name in names:
        GOALS.get(name)
    if not names:
        raise HpoError("--objectives needs at least one name, e.g. val_mse or "
                       "val_mse,ms_per_step")
    if len(set(names)) != len(names):
        raise HpoError("--objectives needs distinct names, e.g. val_mse,ms_per_step")
    if names[0] != "val_mse":
        raise HpoError(f"--objectives must start with val_mse (what pruning follows and the "
                       f"trivial predictors are judged on), not {names[0]}; e.g. val_mse,"
                       f"{','.join(n for n in names if n != 'val_mse')}")
    if len(names) > 1 and sampler in SINGLE_ONLY:
        raise HpoError(f"sampler {sampler} optimizes one objective; use tpe, nsga2, random, qmc "
                       "or gp with several --objectives")


def values_of(names: Sequence[str], result: Any) -> list[float] | None:
    """The objectives' values of a finished training run (None if one is not finite)."""
    values = [GOALS.get(name).read(result) for name in names]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


MEDIAN_STARTUP = 5  # complete trials before the median rule of multi-objective studies prunes
TRIVIAL_AFTER = 2  # epochs after which a trial must beat the trivial predictors to go on


def trivial_floor(baselines: dict | None) -> float:
    """The best trivial predictor's validation MSE (inf: none recorded): a model must beat it."""
    floors = [b["mse"] for k, b in (baselines or {}).items() if k in TRIVIAL]
    return min(floors) if floors else math.inf


class Guard:
    """The trial as training sees it (``report``, ``should_prune``).

    Every study: from epoch :data:`TRIVIAL_AFTER` on (and before the last), a trial whose
    validation MSE is no better than the best trivial predictor's (the study's ``baselines``) is
    pruned -- a network no better than black frames or a copy of the last input after two epochs
    has collapsed to a constant or learns far too slowly, and Hyperband keeps the first trials of
    a bracket to their first rung. One objective: the study's pruner decides the rest (and TPE's
    use of Hyperband's brackets is untouched). Several: the median rule of the module docstring.
    ``--pruner none`` turns every rule off.
    """

    def __init__(self, trial: optuna.Trial, baselines: dict | None, epochs: int, *,
                 multi: bool, prune: bool) -> None:
        self.trial, self.epochs, self.multi, self.prune = trial, epochs, multi, prune
        self.floor = trivial_floor(baselines)
        self.curve: list[float] = []
        self.tripped = False

    def report(self, value: float, step: int) -> None:
        self.curve.append(value)
        if self.multi:
            self.trial.set_user_attr("val_mse_curve", self.curve)
        else:
            self.trial.report(value, step)

    def should_prune(self) -> bool:
        if not self.prune:
            return False
        step, value = len(self.curve), self.curve[-1]
        # (after the last epoch there is nothing left to save)
        self.tripped = TRIVIAL_AFTER <= step < self.epochs and value >= self.floor
        if self.tripped:
            return True
        return self._worse_than_median(step, value) if self.multi else self.trial.should_prune()

    def _worse_than_median(self, step: int, value: float) -> bool:
        """Optuna's MedianPruner rule on the curves: this trial's best so far against the
        median of the complete trials at the same epoch."""
        curves = [t.user_attrs.get("val_mse_curve", ()) for t in self.trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))]
        at_step = [c[step - 1] for c in curves if len(c) >= step]
        return len(at_step) >= MEDIAN_STARTUP and min(self.curve) > statistics.median(at_step)


def knee(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]
         ) -> optuna.trial.FrozenTrial:
    """The front's knee: the trial nearest the ideal point once every objective is scaled to
    [0, 1] over the front (0 best)."""
    spans = []
    for i, direction in enumerate(directions):
        values = [t.values[i] for t in trials]
        low, high = min(values), max(values)
        spans.append((low, high, direction))

    def distance(t: optuna.trial.FrozenTrial) -> float:
        total = 0.0
        for v, (low, high, direction) in zip(t.values, spans):
            scaled = (v - low) / (high - low) if high > low else 0.0
            total += (1 - scaled if direction == "maximize" else scaled) ** 2
        return total
    return min(trials, key=lambda t: (distance(t), t.number))


def choose(front: Sequence[optuna.trial.FrozenTrial], goals: Sequence[str],
           directions: Sequence[Any], rule: str) -> optuna.trial.FrozenTrial:
    """One configuration of a Pareto front by the rule a user names: ``knee`` (:func:`knee`) or
    ``fastest-within:P%`` (of the trials whose first objective is within P% of the front's best,
    the one with the lowest ``ms_per_step``)."""
    names = [str(getattr(d, "name", d)).lower() for d in directions]
    if rule == "knee":
        return knee(front, names)
    if rule.startswith("fastest-within:") and rule.endswith("%"):
        if "ms_per_step" not in goals:
            raise HpoError("--pick fastest-within needs ms_per_step among the study's objectives")
        try:
            share = float(rule.split(":", 1)[1][:-1]) / 100
        except ValueError:
            share = -1.0
        if share >= 0:
            best = front[0].values[0]
            limit = best * (1 + share) if names[0] == "minimize" else best * (1 - share)
            near = [t for t in front if (t.values[0] <= limit if names[0] == "minimize"
                                         else t.values[0] >= limit)]
            speed = list(goals).index("ms_per_step")
            return min(near, key=lambda t: (t.values[speed], t.number))
    raise HpoError(f"--pick {rule!r}: use knee or fastest-within:P% (e.g. fastest-within:5%)")
