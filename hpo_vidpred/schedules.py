"""Learning-rate schedules and teacher forcing, as pure functions of the optimizer step (nanoGPT's
``get_lr(it)``): :func:`lr_at` and :func:`tf_prob_at`, each a registry of named rules."""

from __future__ import annotations

import math
from typing import Callable

from .registry import Registry
from .specs import TrainSpec

__all__ = ["SCHEDULES", "TEACHER_FORCING", "lr_at", "tf_prob_at"]

# Each maps (step, spec) to a factor on spec.lr; steps count from 0 over the whole run.
SCHEDULES: Registry[Callable[[int, TrainSpec], float]] = Registry("schedule")


@SCHEDULES.register("step_half")
def _step_half(step: int, spec: TrainSpec) -> float:
    """The seed's ``StepLR(step_size=epochs // 2, gamma=0.1)``: x0.1 from epoch
    ``epochs // 2 + 1`` on.

    With one epoch (the seed's Moving MNIST run) the seed never decays, and neither do we.
    """
    half = spec.epochs // 2
    return 0.1 if half > 0 and step >= half * spec.steps_per_epoch else 1.0


@SCHEDULES.register("cosine")
def _cosine(step: int, spec: TrainSpec) -> float:
    """Cosine annealing to 0 over all steps (Loshchilov & Hutter 2017, without restarts)."""
    total = max(1, spec.epochs * spec.steps_per_epoch)
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@SCHEDULES.register("constant")
def _constant(step: int, spec: TrainSpec) -> float:
    return 1.0


def lr_at(step: int, spec: TrainSpec) -> float:
    """Learning rate of optimizer step ``step`` (from 0) under ``spec.schedule``; pure."""
    return spec.lr * SCHEDULES.get(spec.schedule)(step, spec)


# Probability that a future step is fed the true previous frame instead of the prediction.
TEACHER_FORCING: Registry[Callable[[int, TrainSpec], float]] = Registry("teacher_forcing")


@TEACHER_FORCING.register("none")
def _no_teacher_forcing(step: int, spec: TrainSpec) -> float:
    return 0.0


@TEACHER_FORCING.register("scheduled")
def _scheduled_sampling(step: int, spec: TrainSpec) -> float:
    """Scheduled sampling (Bengio et al. 2015) with PredRNN's linear decay: 1 at the first step,
    0 after ``spec.tf_decay`` of all steps."""
    decay_steps = spec.tf_decay * spec.epochs * spec.steps_per_epoch
    return max(0.0, 1.0 - step / decay_steps) if decay_steps > 0 else 0.0


def tf_prob_at(step: int, spec: TrainSpec) -> float:
    """Teacher-forcing probability at optimizer step ``step`` under ``spec.teacher_forcing``."""
    return TEACHER_FORCING.get(spec.teacher_forcing)(step, spec)
