"""Asynchronous promotion: configurations train in segments up a ladder of rungs, the best of
each rung are resumed to the next, and a curve that cannot win is stopped.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020) with
promotion: a configuration starts with a segment to the first rung (``levels[0]`` epochs) and
pauses there. Whenever a worker is free, the highest rung with a paused configuration among its
best ``1 / eta`` (of every configuration that reached that rung) resumes it to the next rung;
otherwise a new configuration starts. Nobody waits for a rung to fill. Learning-curve stopping
(Domhan et al. 2015, simplified to a few power laws): a configuration whose optimistic
extrapolation to the last rung cannot beat the best value any configuration reached there is
not promoted (and, inside a segment, is stopped at once). With ``configurations`` set (``hpo run
--trials N``), no configuration starts past N; once none is training and none can be promoted,
the best configuration of the highest rung reached is finished to the last rung (the returned
model is always fully trained), and the study is done.

This module is pure: it decides from :class:`Config` records (what each configuration has
trained, whether it is training or paused), so ``hpo run``'s workers (reading them from the
study store) and the replay benchmark (from a simulation) drive the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Config", "CurveStop", "Promotion", "Rungs", "Step"]

TRAINING, PAUSED, DONE = "training", "paused", "done"  # (the first two as the store keeps them)


@dataclass(frozen=True)
class Config:
    """What the scheduler knows of one configuration: its validation curve so far (one value per
    epoch trained), whether it is training a segment (to ``until``), paused at a rung, or done
    (trained to the last rung, stopped, or failed)."""

    key: int
    curve: tuple[float, ...]
    status: str
    until: int = 0

    def best(self, epochs: int) -> float:
        """Its best validation value within the first ``epochs`` epochs."""
        head = [v for v in self.curve[:epochs] if math.isfinite(v)]
        return min(head) if head else math.inf


@dataclass(frozen=True)
class Rungs:
    """Epochs at which configurations pause; the last is the full training length."""

    levels: tuple[int, ...]
    eta: float

    @classmethod
    def geometric(cls, first: int, last: int, eta: float) -> Rungs:
        """``first, first * eta, ...`` (rounded), ending at ``last``."""
        if not (1 <= first <= last) or eta <= 1:
            raise ValueError(f"rungs need 1 <= first <= last and eta > 1, not {first}, {last}, "
                             f"{eta}")
        levels, level = [], float(first)
        while round(level) < last:
            if not levels or round(level) > levels[-1]:
                levels.append(int(round(level)))
            level *= eta
        return cls(tuple(levels) + (last,), eta)

    @property
    def last(self) -> int:
        return self.levels[-1]

    def after(self, epochs: int) -> int:
        """The next rung above ``epochs`` (the last one at most)."""
        return next((level for level in self.levels if level > epochs), self.last)

    def to_dict(self) -> dict:
        return {"levels": list(self.levels), "eta": self.eta}


@dataclass(frozen=True)
class Step:
    """What a free worker does: ``start`` a new configuration, ``resume`` configuration ``key``,
    in both cases training to epoch ``until``; ``wait`` (others are training; a promotion may
    come), or ``finish`` (nothing is left: the paused configurations are stopped for good)."""

    kind: str
    until: int = 0
    key: int | None = None


class CurveStop:
    """Optimistic extrapolation of a validation curve to the last rung: the lowest prediction of
    ``y = a + b * t^-c`` fitted by least squares over the last points for a few exponents ``c``,
    minus ``margin`` of the last value. A configuration stops when even that cannot beat
    the best value reached at the last rung."""

    def __init__(self, margin: float = 0.08, min_points: int = 3, exponents: Sequence[float] =
                 (0.5, 1.0, 2.0)) -> None:
        self.margin, self.min_points, self.exponents = margin, min_points, tuple(exponents)

    def optimistic(self, curve: Sequence[float], last: int) -> float:
        """The optimistic value at epoch ``last`` (-inf: too few points to say)."""
        y = np.asarray([v for v in curve if math.isfinite(v)], dtype=float)
        if len(y) < self.min_points or len(y) >= last:
            return -math.inf
        t = np.arange(1, len(y) + 1, dtype=float)
        preds = [float(np.min(y))]
        for c in self.exponents:
            basis = np.stack([np.ones_like(t), t ** -c], axis=1)
            (a, b), *_ = np.linalg.lstsq(basis, y, rcond=None)
            if b >= 0:  # a falling curve: its limit at epoch `last`
                preds.append(float(a + b * last ** -c))
        return min(preds) - self.margin * float(y[-1])

    def hopeless(self, curve: Sequence[float], last: int, best_final: float) -> bool:
        return math.isfinite(best_final) and self.optimistic(curve, last) > best_final


class Promotion:
    """The scheduler of the module docstring."""

    def __init__(self, rungs: Rungs, configurations: int | None = None,
                 stop: CurveStop | None = None) -> None:
        self.rungs, self.configurations, self.stop = rungs, configurations, stop

    def best_final(self, configs: Sequence[Config]) -> float:
        """The best value any configuration reached at the last rung."""
        last = self.rungs.last
        return min((c.best(last) for c in configs if len(c.curve) >= last), default=math.inf)

    def next(self, configs: Sequence[Config]) -> Step:
        """What a free worker does now."""
        best_final = self.best_final(configs)
        for k in range(len(self.rungs.levels) - 2, -1, -1):
            key = self._promotable(configs, k, best_final)
            if key is not None:
                return Step("resume", self.rungs.levels[k + 1], key)
        if self.configurations is None or len(configs) < self.configurations:
            return Step("start", self.rungs.levels[0])
        if any(c.status == TRAINING for c in configs):
            return Step("wait")
        leader = self.leader(configs)
        if leader is not None and leader.status == PAUSED and len(leader.curve) < self.rungs.last:
            return Step("resume", self.rungs.last, leader.key)
        return Step("finish")

    def _promotable(self, configs: Sequence[Config], k: int, best_final: float) -> int | None:
        level = self.rungs.levels[k]
        reached = [c for c in configs if len(c.curve) >= level]
        quota = int(len(reached) // self.rungs.eta)
        if quota < 1:
            return None
        top = sorted(reached, key=lambda c: (c.best(level), c.key))[:quota]
        for c in top:
            if c.status == PAUSED and len(c.curve) == level and not (
                    self.stop and self.stop.hopeless(c.curve, self.rungs.last, best_final)):
                return c.key
        return None

    def keep_going(self, config: Config, configs: Sequence[Config]) -> bool:
        """Whether a configuration training a segment goes on after its latest epoch (the
        learning-curve stop, against the others' best at the last rung)."""
        if self.stop is None:
            return True
        others = [c for c in configs if c.key != config.key]
        return not self.stop.hopeless(config.curve, self.rungs.last, self.best_final(others))

    def leader(self, configs: Sequence[Config]) -> Config | None:
        """The configuration a study returns: the best at the highest rung any reached."""
        done = [c for c in configs if c.curve and any(math.isfinite(v) for v in c.curve)]
        if not done:
            return None
        height = max(self._rung_of(c) for c in done)
        level = self.rungs.levels[height] if height >= 0 else 1
        at = [c for c in done if self._rung_of(c) >= height]
        return min(at, key=lambda c: (c.best(level), c.key))

    def _rung_of(self, c: Config) -> int:
        """The highest rung index ``c`` has reached (-1: none yet)."""
        return max((i for i, level in enumerate(self.rungs.levels) if len(c.curve) >= level),
                   default=-1)
