"""A base for the tests' stand-in objectives: nothing to load or check, no baselines (the
objective protocol of :mod:`hpo_vidpred.study.pool`). They must be picklable (spawned workers)."""

from __future__ import annotations


class Stub:
    """Loads nothing, checks nothing, records no trivial baselines."""

    def prepare(self, plan, device) -> None:
        pass

    def check(self, plan) -> None:
        pass

    def baselines(self, plan, device) -> dict | None:
        return None
