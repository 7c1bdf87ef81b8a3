"""A space-filling sampler whose configuration i is the same in every study of one search space:
``hpo run --sampler sobol`` (the learning-curve tables of ``benchmarks/`` are drawn with it).

Trial parameters come from point i of one scrambled Sobol sequence (Sobol 1967; Owen
scrambling, scipy's ``qmc.Sobol``, fixed scramble seed), one dimension per search-space
parameter in the file's order (a per-layer parameter takes one dimension per possible layer).
A point in [0, 1) becomes a value through the parameter's distribution *as it is offered for
this trial*: a log range uniformly in log space, an integer range or a step grid by equal
shares, a categorical by equal shares of the choices. So a range that depends on values drawn
before it (a budget's width bound through depth) is filled evenly too.

The index i of a trial is the number of trials before it (by trial number) that were not
queued with ``enqueue_trial`` (a warm start, an imported table row that was queued: they bring
their own parameters and take no index). A retry of a stopped worker brings its parameters too
but takes an index (Optuna queues it with ``add_trial``), so that index's point is skipped; a
learning-curve table shows the stopped attempt and its retry as two rows. The index depends only
on the study's history, not on which worker or machine asks, nor on ``--seed`` (which changes
the training seeds only), so a table recorded on two machines, or continued from an exported
file whose rows are added back in order, draws the same configurations. Unlike Optuna's
``QMCSampler`` (first trial random, later points from a counter in the study's attributes),
nothing here is random or stateful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution,
                                  FloatDistribution, IntDistribution)
from optuna.trial import FrozenTrial

__all__ = ["SCRAMBLE_SEED", "SobolSampler", "UnitTrial", "from_unit", "sobol_points", "to_unit"]

SCRAMBLE_SEED = 0
_CHUNK = 256  # points generated at a time (Sobol is balanced at powers of two)


def sobol_points(n: int, dims: int, seed: int = SCRAMBLE_SEED) -> np.ndarray:
    """The first ``n`` points of the scrambled Sobol sequence in ``dims`` dimensions,
    ``(n, dims)`` in [0, 1)."""
    from scipy.stats import qmc

    engine = qmc.Sobol(d=max(1, dims), scramble=True, rng=np.random.default_rng(seed))
    m = max(0, math.ceil(math.log2(max(1, n))))
    return engine.random_base2(m)[:n]


class SobolSampler(optuna.samplers.BaseSampler):
    """See the module docstring. ``dimensions`` names the sampled parameters in order (per-layer
    ones as ``hidden_1 .. hidden_K`` for the deepest stack); a name not listed gets a dimension
    after them, in the order first seen by this process (list every name to stay deterministic)."""

    def __init__(self, dimensions: Sequence[str], seed: int = SCRAMBLE_SEED) -> None:
        self._dims = list(dimensions)
        self._seed = seed
        self._points = np.zeros((0, max(1, len(self._dims))))
        self._index: dict[int, int] = {}  # trial number -> point index

    def infer_relative_search_space(self, study: Any, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Any, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if param_name not in self._dims:
            self._dims.append(param_name)
        u = self._point(self.index(study, trial))[self._dims.index(param_name)]
        return from_unit(float(u), param_distribution)

    def index(self, study: Any, trial: FrozenTrial) -> int:
        """The point index of ``trial`` (see the module docstring)."""
        if trial.number not in self._index:
            earlier = study.get_trials(deepcopy=False)
            self._index[trial.number] = sum(
                1 for t in earlier if t.number < trial.number and "fixed_params" not in
                t.system_attrs)
        return self._index[trial.number]

    def _point(self, i: int) -> np.ndarray:
        if i >= len(self._points) or self._points.shape[1] < len(self._dims):
            n = (i // _CHUNK + 1) * _CHUNK
            self._points = sobol_points(n, max(len(self._dims), self._points.shape[1]),
                                        self._seed)
        return self._points[i]


class UnitTrial:
    """A trial stand-in for :meth:`SearchSpace.sample` that answers each parameter with the
    value at quantile ``units[name]`` of the distribution it is offered (0.5 where ``units``
    has no entry), and keeps those distributions: how a point of [0, 1]^d, from Sobol or from an
    optimizer outside Optuna, becomes a configuration of a (conditional) search space."""

    def __init__(self, units: Mapping[str, float]) -> None:
        self.units = units
        self.distributions: dict[str, BaseDistribution] = {}
        self.params: dict[str, Any] = {}

    def _take(self, name: str, dist: BaseDistribution) -> Any:
        self.distributions[name] = dist
        self.params[name] = from_unit(float(self.units.get(name, 0.5)), dist)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        return self._take(name, FloatDistribution(low, high, log=log, step=step))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False,
                    step: int = 1) -> int:
        return self._take(name, IntDistribution(low, high, log=log, step=step or 1))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._take(name, CategoricalDistribution(list(choices)))


def to_unit(value: Any, dist: BaseDistribution) -> float:
    """The quantile of ``value`` in ``dist`` (the middle of its share for a discrete value): the
    inverse of :func:`from_unit`."""
    if isinstance(dist, CategoricalDistribution):
        return (dist.choices.index(value) + 0.5) / len(dist.choices)
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(dist.low - 0.5), math.log(dist.high + 0.5)
            return (math.log(value) - lo) / (hi - lo)
        n = (dist.high - dist.low) // dist.step + 1
        return ((value - dist.low) // dist.step + 0.5) / n
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = int(round((dist.high - dist.low) / dist.step)) + 1
            return (round((value - dist.low) / dist.step) + 0.5) / n
        if dist.high == dist.low:
            return 0.5
        if dist.log:
            return (math.log(value) - math.log(dist.low)) / (math.log(dist.high) -
                                                              math.log(dist.low))
        return (value - dist.low) / (dist.high - dist.low)
    raise TypeError(f"unsupported distribution {dist!r}")


def from_unit(u: float, dist: BaseDistribution) -> Any:
    """The value at quantile ``u`` of a uniform (log-uniform for ``log``) distribution."""
    u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(u * len(dist.choices))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(dist.low - 0.5), math.log(dist.high + 0.5)
            return int(min(dist.high, max(dist.low, round(math.exp(lo + u * (hi - lo))))))
        n = (dist.high - dist.low) // dist.step + 1
        return dist.low + int(u * n) * dist.step
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = int(round((dist.high - dist.low) / dist.step)) + 1
            return dist.low + int(u * n) * dist.step
        if dist.log:
            return float(math.exp(math.log(dist.low) + u * (math.log(dist.high) -
                                                              math.log(dist.low))))
        return dist.low + u * (dist.high - dist.low)
    raise TypeError(f"unsupported distribution {dist!r}")
