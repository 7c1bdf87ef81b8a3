"""Trials that train in segments (``hpo run --scheduler promote``): how the promotion
scheduler's records live in an Optuna study, and the steps a worker takes with them.

One configuration is one Optuna trial, from its first segment to its end, so optuna-dashboard,
``optuna trials`` and reports show one row per configuration. While it trains a segment, or is
paused at a rung waiting for a promotion, the trial is RUNNING, with system attributes
``hpo:status`` (``training`` | ``paused``), ``hpo:until`` (the epoch its segment trains to) and
``hpo:epochs`` (epochs in its paused run, a file of
:func:`hpo_vidpred.checkpoint.save_train_state`); its intermediate values are its validation
curve, one per epoch. It ends COMPLETE at the last rung (value: its best validation MSE), PRUNED
when it stops short of it (not promoted when the study ends, or stopped by the curve rule or the
trivial-predictor guard), FAIL when training failed. A paused trial has no heartbeat: the stale
check passes it by; a trial whose worker died in a resumed segment goes back to paused at its
last rung (:func:`hpo_vidpred.store.lifecycle.fail_stale`), so a dead worker loses at most the
segment it was training.

Every function here takes the study; ``hpo run``'s workers call them under the study lock where
they decide, and the replay benchmark calls the same ones on an in-memory study.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..store import lifecycle
from ..store.lifecycle import EPOCHS, PAUSED, STATUS, TRAINING, UNTIL
from .promote import DONE, Config, Promotion, Step

__all__ = ["EPOCHS", "STATUS", "UNTIL", "Segment", "begin", "config_of", "configs", "end",
           "finish", "report"]

QUEUED = "queued"


@dataclass
class Segment:
    """One configuration training from epoch ``start`` (0: from scratch) to ``until``."""

    trial: optuna.Trial
    start: int
    until: int
    curve: list[float]

    @property
    def number(self) -> int:
        return self.trial.number


def config_of(t: FrozenTrial) -> Config:
    """The scheduler's record of one trial."""
    curve = tuple(t.intermediate_values[e] for e in sorted(t.intermediate_values))
    if t.state == TrialState.WAITING:
        return Config(t.number, (), QUEUED)
    if t.state != TrialState.RUNNING:
        return Config(t.number, curve, DONE)
    status = t.system_attrs.get(STATUS, TRAINING)
    if status == PAUSED:  # what its paused run holds (a lost segment may have reported more)
        curve = curve[:int(t.system_attrs.get(EPOCHS, len(curve)))]
    return Config(t.number, curve, status, int(t.system_attrs.get(UNTIL, 0)))


_FINISHED: dict[int, tuple[FrozenTrial, Config]] = {}  # id -> a finished trial's record


def configs(study: optuna.Study) -> list[Config]:
    """The scheduler's records of every trial of ``study`` (a finished trial's is kept: the
    store hands out the same object for it every time, and it never changes)."""
    out = []
    for t in lifecycle.trials(study):
        hit = _FINISHED.get(id(t))
        if hit is not None and hit[0] is t:
            out.append(hit[1])
            continue
        config = config_of(t)
        if t.state.is_finished():
            if len(_FINISHED) > 200_000:  # many studies in one process (the replay)
                _FINISHED.clear()
            _FINISHED[id(t)] = (t, config)
        out.append(config)
    return out


def begin(study: optuna.Study, scheduler: Promotion, sample: Callable[[optuna.Trial], Any],
          ask: Callable[[optuna.Study], optuna.Trial] = lambda s: s.ask(),
          beat: Callable[[optuna.Study, optuna.Trial], None] = lambda s, t: None
          ) -> Segment | Step:
    """What a free worker does next (call it under the study lock): a :class:`Segment` to
    train -- a new configuration (asked and sampled here, ``sample(trial)``) or a paused one
    resumed -- or the :class:`~hpo_vidpred.study.promote.Step` to wait or to finish."""
    records = configs(study)
    queued = any(c.status == QUEUED for c in records)
    step = Step("start", scheduler.rungs.levels[0]) if queued else scheduler.next(records)
    if step.kind == "start":
        trial = ask(study)
        lifecycle.set_system_attrs(study, trial, {STATUS: TRAINING, UNTIL: step.until})
        sample(trial)
        return Segment(trial, 0, step.until, [])
    if step.kind == "resume":
        config = next(c for c in records if c.key == step.key)
        trial = lifecycle.trial_of(study, step.key)
        beat(study, trial)
        lifecycle.set_system_attrs(study, trial, {STATUS: TRAINING, UNTIL: step.until})
        return Segment(trial, len(config.curve), step.until, list(config.curve))
    return step


def report(study: optuna.Study, scheduler: Promotion, segment: Segment, epoch: int,
           value: float, floor: float = math.inf) -> str:
    """Record the validation value of ``epoch``. Returns ``go`` (train on), ``rung`` (the
    segment reached its rung) or ``stop``: the trivial-predictor guard (from epoch
    :data:`~hpo_vidpred.study.goals.TRIVIAL_AFTER` on, no better than ``floor``, the best
    trivial predictor) or the curve rule of the scheduler."""
    from .goals import TRIVIAL_AFTER

    segment.trial.report(value, epoch)
    segment.curve.append(value)
    if TRIVIAL_AFTER <= epoch < scheduler.rungs.last and value >= floor:
        return "stop"
    if epoch >= segment.until:
        return "rung"
    me = Config(segment.number, tuple(segment.curve), TRAINING, segment.until)
    return "go" if scheduler.keep_going(me, configs(study)) else "stop"


def end(study: optuna.Study, scheduler: Promotion, segment: Segment, how: str) -> TrialState:
    """End a segment: ``paused`` (its run saved at the rung: it may be promoted), ``stopped``
    (the curve rule or the guard: PRUNED), ``failed`` (FAIL), or, at the last rung,
    COMPLETE with its best value. Returns the trial's state afterwards (RUNNING: paused)."""
    epochs = len(segment.curve)
    if how == "failed":
        study.tell(segment.trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if how == "stopped" or not segment.curve:
        study.tell(segment.trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    if epochs >= scheduler.rungs.last:
        finite = [v for v in segment.curve if math.isfinite(v)]
        study.tell(segment.trial, min(finite))
        return TrialState.COMPLETE
    lifecycle.set_system_attrs(study, segment.trial, {STATUS: PAUSED, EPOCHS: epochs})
    return TrialState.RUNNING


def finish(study: optuna.Study) -> list[int]:
    """Stop every paused configuration for good (PRUNED): the study is done. Their numbers."""
    stopped = []
    for t in lifecycle.trials(study, (TrialState.RUNNING,)):
        if t.system_attrs.get(STATUS) == PAUSED:
            try:
                study.tell(t.number, state=TrialState.PRUNED)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # ended meanwhile
            stopped.append(t.number)
    return stopped


def leader(scheduler: Promotion, records: Sequence[Config]) -> int | None:
    """The trial the study returns now (:meth:`Promotion.leader`)."""
    config = scheduler.leader(records)
    return None if config is None else config.key
