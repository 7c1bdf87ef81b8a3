"""One model across fidelities for the promotion scheduler: TPE fitted on one rung (BOHB, Falkner
et al. 2018, with Optuna's univariate TPE in place of BOHB's KDE, see
:meth:`RungTPESampler.univariate`).

Configurations of a promotion study are compared at the highest rung that at least
``min_points`` of them have reached: each of those is an observation with its best validation
value within that many epochs. Configurations that stopped below it (not promoted when the study
ended, stopped by the curve rule or the guard, failed) are observations too, ranked after all of
them -- they lost at a lower rung. Configurations still paused below it are left out (undecided),
and those training a segment now are given to TPE as running trials, so that its constant liar
keeps parallel workers apart. Before any rung has ``min_points``, TPE draws at random.

The observations go into a throwaway in-memory study per asked trial, which Optuna's own
:class:`~optuna.samplers.TPESampler` then models: sampling stays Optuna's, only the data it
sees is chosen here.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from .promote import DONE, TRAINING, Rungs
from .segments import QUEUED, config_of

__all__ = ["RungTPESampler"]


class RungTPESampler(optuna.samplers.BaseSampler):
    """See the module docstring. ``tpe`` is the TPE sampler that models the chosen rung."""

    def __init__(self, tpe: optuna.samplers.TPESampler, rungs: Rungs, min_points: int) -> None:
        self._tpe, self._rungs, self._min = tpe, rungs, min_points
        self._views: dict[int, tuple[optuna.Study, FrozenTrial]] = {}

    @classmethod
    def univariate(cls, rungs: Rungs, seed: int, min_points: int) -> RungTPESampler:
        """Optuna's univariate TPE (its default; constant liar for parallel workers) modelling
        from the first rung that ``min_points`` configurations reach. On the learning-curve
        replay (benchmarks/RESULTS.md) it reached the target sooner than the multivariate,
        grouped TPE of ``--sampler tpe``, and sooner than waiting for Optuna's 10 start-up
        trials."""
        return cls(optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                              n_startup_trials=min_points), rungs, min_points)

    def _view(self, study: Any, trial: FrozenTrial) -> tuple[optuna.Study, FrozenTrial]:
        """The throwaway study TPE models for ``trial``, and ``trial``'s stand-in in it (a
        running trial of the view: TPE writes its constant-liar notes there, not here)."""
        if trial.number in self._views:
            return self._views[trial.number]
        trials = [t for t in study.get_trials(deepcopy=False)
                  if t.number != trial.number and t.params]
        records = {t.number: config_of(t) for t in trials}
        level = next((lv for lv in reversed(self._rungs.levels) if sum(
            1 for c in records.values() if len(c.curve) >= lv) >= self._min), None)
        view = optuna.create_study(directions=study.directions)
        if level is not None:
            at = {n: c.best(level) for n, c in records.items() if len(c.curve) >= level}
            worst = max((v for v in at.values() if math.isfinite(v)), default=0.0)
            for t in trials:
                c = records[t.number]
                if t.number in at and math.isfinite(at[t.number]):
                    view.add_trial(_copy(t, TrialState.COMPLETE, at[t.number]))
                elif c.status == DONE and c.curve:
                    lost = c.best(len(c.curve))
                    value = worst + abs(worst) + (lost if math.isfinite(lost) else abs(worst))
                    view.add_trial(_copy(t, TrialState.COMPLETE, value))
                elif c.status == TRAINING:
                    view.add_trial(_copy(t, TrialState.RUNNING, None))
        else:
            for t in trials:
                if records[t.number].status not in (DONE, QUEUED):
                    view.add_trial(_copy(t, TrialState.RUNNING, None))
        view.add_trial(create_trial(state=TrialState.RUNNING))
        self._views = {trial.number: (view, view.get_trials(deepcopy=False)[-1])}
        return self._views[trial.number]  # one asked trial at a time per worker

    def infer_relative_search_space(self, study: Any, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self._tpe.infer_relative_search_space(*self._view(study, trial))

    def sample_relative(self, study: Any, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._tpe.sample_relative(*self._view(study, trial), search_space)

    def sample_independent(self, study: Any, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._tpe.sample_independent(*self._view(study, trial), param_name,
                                            param_distribution)

    def before_trial(self, study: Any, trial: FrozenTrial) -> None:
        self._views.pop(trial.number, None)  # a fresh view for every asked trial

    def after_trial(self, study: Any, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._views.pop(trial.number, None)


def _copy(t: FrozenTrial, state: TrialState, value: float | None) -> FrozenTrial:
    return create_trial(state=state, value=value, params=t.params, distributions=t.distributions)
