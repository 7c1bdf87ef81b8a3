"""The one training loop (docs/design.md section 6): fixed baselines, study trials and retrains
all call :func:`train_and_evaluate`, and every optimizer step is a :class:`TrainStep` (``hpo
bench`` times the same one).

An epoch is ``spec.steps_per_epoch`` Adam steps (Kingma & Ba 2015); after each epoch the model
predicts the fixed validation split closed-loop and ``val_mse`` (MSE per pixel on [0, 1]) is the
objective. An optional Optuna trial is touched through exactly two calls,
``trial.report(val_mse, epoch)`` and ``trial.should_prune()``; a pruned run *returns* with
``stop_reason == "pruned"``. Nothing raises for a run that goes wrong: a non-finite loss ends it
as ``diverged``, a CUDA out-of-memory error as ``out_of_memory`` (memory freed). Epochs count from
1, so the reported step is the number of epochs trained, Hyperband's resource.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .archs import count_params
from .devices import RunOptions, autocast, resolve_options, seed_everything, sync
from .errors import HpoError
from .evaluation import _layout, _task, evaluate
from .schedules import SCHEDULES, TEACHER_FORCING, lr_at, tf_prob_at
from .specs import DataSpec, ModelSpec, TrainSpec
from .ui import Bar

__all__ = ["STOP_REASONS", "TrainResult", "TrainStep", "evaluate", "train_and_evaluate"]

STOP_REASONS = ("completed", "early_stopped", "pruned", "diverged", "out_of_memory", "paused")
# torch.OutOfMemoryError since torch 2.5; the same class as torch.cuda.OutOfMemoryError.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_CHECK_EVERY = 8  # optimizer steps between loss read-backs (each one is a device sync)

# --------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """What one run produced. Epochs count from 1; ``best_epoch == 0`` means no epoch validated."""

    best_val_mse: float
    best_epoch: int
    epochs: int
    stop_reason: str
    step_ms: float
    train_seconds: float
    n_params: int
    device: str
    curves: dict[str, list[float]] = field(default_factory=dict)  # per epoch (see CURVES)
    best_metrics: dict[str, Any] = field(default_factory=dict)  # evaluate() at the best epoch
    best_state: Optional[dict[str, torch.Tensor]] = field(default=None, repr=False)  # on CPU

    # per epoch: the losses, the validation metrics, the rate at its end, and the seconds its
    # optimizer steps and its validation took (wall clock, on a possibly shared device)
    CURVES = ("train_loss", "val_mse", "val_mae", "val_ssim", "val_psnr", "lr", "train_s",
              "val_s")

    @property
    def val_ssim(self) -> Optional[float]:
        return self.best_metrics.get("ssim")

    @property
    def val_psnr(self) -> Optional[float]:
        return self.best_metrics.get("psnr")

    def user_attrs(self) -> dict[str, Any]:
        """The attributes every trial stores (docs/design.md section 8); JSON-safe (no NaN or
        tensors)."""
        return {
            "val_mse": _json_float(self.best_val_mse),
            "n_params": self.n_params,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "step_ms": _json_float(self.step_ms),
            "train_seconds": _json_float(self.train_seconds),
            "val_ssim": _json_float(self.val_ssim),
            "val_psnr": _json_float(self.val_psnr),
            "device": self.device,
            "curves": _json_safe(self.curves),
        }

    def summary(self) -> dict[str, Any]:
        """``user_attrs()``, best value, curves and the best epoch's metrics (JSON-safe)."""
        return {
            "best_val_mse": _json_float(self.best_val_mse),
            **self.user_attrs(),
            "val_metrics": _json_safe(self.best_metrics),
            "curves": _json_safe(self.curves),
        }


def _json_float(value: Optional[float]) -> Optional[float]:
    return float(value) if value is not None and math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return _json_float(value)
    return value


class _Trial(Protocol):
    def report(self, value: float, step: int) -> None: ...
    def should_prune(self) -> bool: ...


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- one step
class TrainStep:
    """One optimizer step, the same for every run and for ``hpo bench``: learning rate from the
    schedule, forward (closed loop, scheduled sampling as the spec says), ``frame_loss_weight *
    MSE(predicted, true future) + aux_loss`` (PredNet's error units, the spatio-temporal flow
    penalty), backward, gradient clipping, Adam. Building it moves the model to the options'
    device and memory format and compiles it where they say so."""

    def __init__(self, model: nn.Module, spec: TrainSpec, options: RunOptions, n_in: int,
                 n_out: int) -> None:
        self.model, self.spec, self.options, self.n_in, self.n_out = (model, spec, options,
                                                                      n_in, n_out)
        model.to(options.device)
        if options.channels_last:
            model.to(memory_format=torch.channels_last)
        self.run = (torch.compile(model, mode=options.compile_mode) if options.compile
                    else model)
        self.optimizer: Optional[torch.optim.Optimizer] = torch.optim.Adam(model.parameters(),
                                                                          lr=spec.lr)

    def layout(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` frames on the device in the step's memory format."""
        return _layout(frames.to(self.options.device), self.options.channels_last)

    def __call__(self, frames: torch.Tensor, step: int) -> torch.Tensor:
        """Optimizer step ``step`` (from 0) on ``frames (B, n_in + n_out, C, H, W)`` (laid out
        by :meth:`layout`); returns the loss, detached, on the device (no sync)."""
        lr = lr_at(step, self.spec)  # once per step: the schedule lookup is not free
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        target = frames[:, self.n_in:self.n_in + self.n_out]  # (B, n_out, C, H, W)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.options):
            pred = self.run(frames[:, :self.n_in], self.n_out, targets=target,
                            tf_prob=tf_prob_at(step, self.spec))
            loss = pred.aux_loss.float()
            if self.spec.frame_loss_weight:
                loss = loss + self.spec.frame_loss_weight * F.mse_loss(pred.frames.float(),
                                                                       target.float())
        if not loss.requires_grad:  # frame_loss_weight 0 and an architecture without aux_loss
            raise HpoError("the loss does not depend on the model (frame_loss_weight is 0 and "
                           "the architecture has no loss of its own); set frame_loss_weight > 0")
        loss.backward()
        if self.spec.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        self.optimizer.step()
        return loss.detach()


# --------------------------------------------------------------------------- training
ETA_STEPS = 3  # timed steps before a run projects its length
ETA_NOTICE_S = 600.0  # runs projected longer than this are announced (see ``eta``)


@dataclass
class _Run:
    """Mutable state of one run (kept out of the loop body for readability)."""

    best_val: float = math.inf
    best_epoch: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_state: Optional[dict[str, torch.Tensor]] = None
    ref_val: float = math.inf  # early stopping: last value that beat the one before by min_delta
    bad_epochs: int = 0
    epochs: int = 0
    timed_steps: int = 0
    timed_seconds: float = 0.0
    eta: Optional[Callable[[float], None]] = None  # called once with the projected seconds
    optimizer_state: Optional[dict[str, Any]] = None  # of a paused run, until loaded
    curves: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in TrainResult.CURVES})


def _train_epoch(step_fn: TrainStep, data: Any, generator: torch.Generator, epoch: int,
                 state: _Run, bar: Bar) -> float:
    """One epoch of optimizer steps. Returns the mean training loss (NaN or inf if it diverged)."""
    spec, device = step_fn.spec, step_fn.options.device
    loss_sum = torch.zeros((), device=device)
    seen = untimed = 0
    sync(device)
    t0 = time.perf_counter()
    for i in range(spec.steps_per_epoch):
        step = (epoch - 1) * spec.steps_per_epoch + i
        frames = step_fn.layout(data.train_batch(spec.batch_size, generator))  # (B, T, C, H, W)
        loss_sum += step_fn(frames, step)
        seen += 1
        if step == 0 and spec.steps_per_epoch > 1:
            # The run's first step pays for allocation (and compilation): not timed.
            sync(device)
            t0, untimed = time.perf_counter(), 1
        if seen % _CHECK_EVERY == 0 or seen == spec.steps_per_epoch \
                or (state.eta is not None and seen - untimed == ETA_STEPS):
            mean = loss_sum.item() / seen  # a device sync
            ms = 1000 * (time.perf_counter() - t0) / max(1, seen - untimed)
            bar.update(completed=seen, loss=f"{mean:.4g}", ms=f"{ms:.1f}")
            if state.eta is not None and seen - untimed >= ETA_STEPS:
                projected = ms / 1000 * spec.steps_per_epoch * spec.epochs
                if projected > ETA_NOTICE_S:
                    state.eta(projected)
                state.eta = None
            if not math.isfinite(mean):
                return mean
    sync(device)
    state.timed_seconds += time.perf_counter() - t0
    state.timed_steps += seen - untimed
    return loss_sum.item() / max(1, seen)


def train_and_evaluate(
    model: nn.Module,
    data: Any,
    spec: TrainSpec,
    trial: Optional[_Trial] = None,
    *,
    progress: bool = False,
    checkpoint_path: Optional[str | Path] = None,
    model_spec: Optional[ModelSpec] = None,
    data_spec: Optional[DataSpec] = None,
    eta: Optional[Callable[[float], None]] = None,
    resume_from: Optional[str | Path] = None,
    pause_at: Optional[int] = None,
    pause_to: Optional[str | Path] = None,
) -> TrainResult:
    """Train ``model`` on ``data`` as ``spec`` says; validate after every epoch.

    A run can be split into segments: ``pause_at=k`` stops after epoch k (``stop_reason``
    ``"paused"``) and writes everything the rest needs to ``pause_to``; ``resume_from`` continues
    such a file from its epoch. The learning-rate schedule always spans ``spec.epochs``, the
    data generator and the random state continue where they were, so a run paused and resumed
    at any epochs trains the same weights as one that never stopped (on the CPU, bit for bit).

    Args:
        model: an architecture from :func:`hpo_vidpred.archs.create_model` (any module with the
            ``model(frames_in, n_future, targets=None, tf_prob=0.0) -> Prediction`` call).
        data: a :class:`hpo_vidpred.data.VideoData` (``train_batch``, ``batches``, ``spec``).
        spec: the training settings.
        trial: an Optuna trial; only ``report(val_mse, epoch)`` and ``should_prune()`` are called.
        progress: show a bar per epoch on stderr.
        checkpoint_path: where to save the best weights with the specs (needs ``model_spec``).
        model_spec, data_spec: stored in the checkpoint; ``data_spec`` also gives n_in / n_out
            when the data has no ``spec`` of its own.
        eta: called once, after the first few timed steps, with the run's projected training
            seconds (all epochs, validation left out) when they exceed :data:`ETA_NOTICE_S`.
        resume_from: a paused run's file (:func:`hpo_vidpred.checkpoint.save_train_state`).
        pause_at, pause_to: pause after this epoch and write the run's state to this file.

    Returns:
        A :class:`TrainResult`; on return the model holds the best weights (if an epoch validated).
        Never raises for divergence or CUDA out-of-memory: see ``stop_reason``.
    """
    if checkpoint_path is not None and model_spec is None:
        raise ValueError("checkpoint_path needs model_spec to make the checkpoint loadable")
    started = time.perf_counter()
    options = resolve_options(spec)
    n_in, n_out = _task(data, data_spec)
    SCHEDULES.get(spec.schedule)  # unknown names fail here, before any training
    TEACHER_FORCING.get(spec.teacher_forcing)
    seed_everything(spec.seed)
    generator = torch.Generator(device=options.device).manual_seed(spec.seed)
    state = _Run(eta=eta)
    first = 1
    if resume_from is not None:
        first = _resume(resume_from, model, generator, state) + 1
    step_fn = TrainStep(model, spec, options, n_in, n_out)
    if resume_from is not None:
        step_fn.optimizer.load_state_dict(state.optimizer_state)
        state.optimizer_state = None
    last = min(spec.epochs, pause_at) if pause_at is not None else spec.epochs
    stop_reason = "completed"
    out_of_memory = False
    bar = Bar(progress, "loss {task.fields[loss]}  val_mse {task.fields[val]}  "
                        "{task.fields[ms]} ms/step")
    try:
        with bar:
            for epoch in range(first, last + 1):
                bar.add(spec.steps_per_epoch, f"epoch {epoch}/{spec.epochs}", loss="-",
                        val="-", ms="-")
                t0 = time.perf_counter()
                train_loss = _train_epoch(step_fn, data, generator, epoch, state, bar)
                state.epochs = epoch
                if not math.isfinite(train_loss):
                    stop_reason = "diverged"
                    break
                t1 = time.perf_counter()
                metrics = evaluate(step_fn.run, data, "val", spec.val_batch_size,
                                   data_spec=data_spec, options=options)
                _record(state, train_loss, metrics, step_fn.optimizer,
                        (t1 - t0, time.perf_counter() - t1))
                bar.update(val=f"{metrics['mse']:.5g}")
                stop_reason = _after_epoch(state, epoch, metrics, model, spec, trial)
                if stop_reason != "completed":
                    break
    except _OUT_OF_MEMORY:
        out_of_memory = True  # memory is freed below, outside the handler that pins the frames
    if out_of_memory:
        stop_reason = "out_of_memory"
        step_fn.optimizer = None
        gc.collect()
        if options.device.type == "cuda":
            torch.cuda.empty_cache()
    if stop_reason == "completed" and last < spec.epochs:
        stop_reason = "paused"
        if pause_to is not None:
            from .checkpoint import pause_run

            pause_run(pause_to, _cpu_state(model), step_fn.optimizer, generator, state.epochs,
                      {name: getattr(state, name) for name in _RUN_FIELDS})
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    result = TrainResult(
        best_val_mse=state.best_val,
        best_epoch=state.best_epoch,
        epochs=state.epochs,
        stop_reason=stop_reason,
        step_ms=1000 * state.timed_seconds / state.timed_steps if state.timed_steps else math.nan,
        train_seconds=time.perf_counter() - started,
        n_params=count_params(model),
        device=str(options.device),
        curves=state.curves,
        best_metrics=state.best_metrics,
        best_state=state.best_state,
    )
    if checkpoint_path is not None and result.best_state is not None:
        from .checkpoint import save_checkpoint

        save_checkpoint(checkpoint_path, result.best_state, model_spec, data_spec, spec,
                        result=result.summary())
    return result


def _resume(path: str | Path, model: nn.Module, generator: torch.Generator,
            state: _Run) -> int:
    """Load a paused run into ``model``, ``generator``, the random state and ``state``; the
    epochs it had done."""
    from .checkpoint import resume_run

    epoch, run, state.optimizer_state = resume_run(path, model, generator)
    for name, value in run.items():
        setattr(state, name, value)
    return epoch


_RUN_FIELDS = ("best_val", "best_epoch", "best_metrics", "best_state", "ref_val", "bad_epochs",
               "epochs", "timed_steps", "timed_seconds", "curves")


def _record(state: _Run, train_loss: float, metrics: dict[str, Any],
            optimizer: torch.optim.Optimizer, seconds: tuple[float, float]) -> None:
    curves = state.curves
    curves["train_loss"].append(train_loss)
    for name in ("mse", "mae", "ssim", "psnr"):
        curves[f"val_{name}"].append(metrics[name])
    curves["lr"].append(optimizer.param_groups[0]["lr"])
    curves["train_s"].append(round(seconds[0], 3))
    curves["val_s"].append(round(seconds[1], 3))


def _after_epoch(state: _Run, epoch: int, metrics: dict[str, Any], model: nn.Module,
                 spec: TrainSpec, trial: Optional[_Trial]) -> str:
    """Keep the best weights, report to the trial, decide whether to stop."""
    val = metrics["mse"]
    if not math.isfinite(val):
        return "diverged"
    if val < state.best_val:
        state.best_val, state.best_epoch, state.best_metrics = val, epoch, metrics
        state.best_state = _cpu_state(model)
    if trial is not None:
        trial.report(val, epoch)
        if trial.should_prune():
            return "pruned"
    if val < state.ref_val - spec.min_delta:
        state.ref_val, state.bad_epochs = val, 0
    else:
        state.bad_epochs += 1
    if spec.patience > 0 and state.bad_epochs >= spec.patience and epoch < spec.epochs:
        return "early_stopped"
    return "completed"

