"""The one training loop: fixed baselines, study trials and retrains all call
:func:`train_and_evaluate` (DESIGN section 6).

An epoch is ``spec.steps_per_epoch`` Adam steps (Kingma & Ba 2015) on batches drawn by
``data.train_batch``; after each epoch the model predicts the fixed validation split closed-loop
and ``val_mse`` (mean squared error per pixel on [0, 1] over the predicted frames) is the
objective. An optional Optuna trial is touched through exactly two calls,
``trial.report(val_mse, epoch)`` and ``trial.should_prune()``; a pruned run *returns* with
``stop_reason == "pruned"`` and the caller raises ``optuna.TrialPruned``. Nothing here raises
for a run that goes wrong: a non-finite loss ends it as ``diverged`` and a CUDA out-of-memory
error as ``out_of_memory`` (memory freed).

Epochs are counted from 1 (``best_epoch``, the step given to ``trial.report``), so the step is the
number of epochs trained, the resource Hyperband counts.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .archs import count_params
from .errors import HpoError
from .metrics import MetricSums
from .registry import Registry
from .specs import DataSpec, ModelSpec, TrainSpec

__all__ = [
    "SCHEDULES",
    "TEACHER_FORCING",
    "STOP_REASONS",
    "TrainResult",
    "RunOptions",
    "train_and_evaluate",
    "evaluate",
    "lr_at",
    "tf_prob_at",
    "resolve_device",
    "resolve_options",
    "seed_everything",
]

STOP_REASONS = ("completed", "early_stopped", "pruned", "diverged", "out_of_memory")
# torch.OutOfMemoryError since torch 2.5; the same class as torch.cuda.OutOfMemoryError.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_CHECK_EVERY = 8  # optimizer steps between loss read-backs (each one is a device sync)

# --------------------------------------------------------------------------- schedules
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


# --------------------------------------------------------------------------- teacher forcing
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


# --------------------------------------------------------------------------- device and options
@dataclass(frozen=True)
class RunOptions:
    """The device-dependent switches resolved from a :class:`TrainSpec` (``auto`` -> on/off)."""

    device: torch.device
    bf16: bool
    channels_last: bool
    compile: bool


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a bad name is an :class:`HpoError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise HpoError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HpoError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    return device


def _switch(value: bool | str, auto: bool, what: str) -> bool:
    table = {"auto": auto, "on": True, "off": False, True: True, False: False}
    if value not in table:
        raise HpoError(f"{what} must be auto, on or off, not {value!r}")
    return table[value]


def resolve_options(spec: TrainSpec) -> RunOptions:
    """Resolve ``device``, ``bf16``, ``channels_last`` and ``compile``.

    ``auto`` turns each on for CUDA only. CPU runs stay float32 and contiguous: bf16 changes the
    numbers a CPU run is compared by, channels_last gave no gain there, and compilation does not
    pay for short runs (docs/design.md section 11 has the measurements). ``on`` forces a switch.
    """
    device = resolve_device(spec.device)
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    return RunOptions(
        device=device,
        bf16=_switch(spec.bf16, bf16_ok, "bf16"),
        channels_last=_switch(spec.channels_last, cuda, "channels_last"),
        compile=_switch(spec.compile, cuda, "compile"),
    )


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every GPU). Call before building the model so that
    its initial weights repeat too."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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

    CURVES = ("train_loss", "val_mse", "val_ssim", "val_psnr", "lr")

    @property
    def val_ssim(self) -> Optional[float]:
        return self.best_metrics.get("ssim")

    @property
    def val_psnr(self) -> Optional[float]:
        return self.best_metrics.get("psnr")

    def user_attrs(self) -> dict[str, Any]:
        """The attributes every trial stores (DESIGN section 8); JSON-safe (no NaN, no tensors)."""
        return {
            "n_params": self.n_params,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "step_ms": _json_float(self.step_ms),
            "train_seconds": _json_float(self.train_seconds),
            "val_ssim": _json_float(self.val_ssim),
            "val_psnr": _json_float(self.val_psnr),
            "device": self.device,
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


# --------------------------------------------------------------------------- helpers
class _Trial(Protocol):
    def report(self, value: float, step: int) -> None: ...
    def should_prune(self) -> bool: ...


def _task(data: Any, data_spec: Optional[DataSpec]) -> tuple[int, int]:
    """(n_in, n_out) from ``data_spec`` or the data's own ``spec``."""
    spec = data_spec if data_spec is not None else getattr(data, "spec", None)
    if spec is None:
        raise ValueError("the data has no .spec: pass data_spec= to say n_in and n_out")
    return spec.n_in, spec.n_out


def _layout(frames: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Store ``(B, T, C, H, W)`` frames as (B, T, H, W, C) in memory, so that every frame
    ``frames[:, t]`` is a channels_last (B, C, H, W) view."""
    if not channels_last:
        return frames
    return frames.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # (B, T, C, H, W)


def _autocast(options: RunOptions) -> contextlib.AbstractContextManager:
    if not options.bf16:
        return contextlib.nullcontext()
    return torch.autocast(options.device.type, dtype=torch.bfloat16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    split: str = "val",
    batch_size: int = 32,
    *,
    data_spec: Optional[DataSpec] = None,
    options: Optional[RunOptions] = None,
) -> dict[str, Any]:
    """Closed-loop prediction of a whole split, averaged over all its predicted frames.

    ``data_spec`` gives n_in / n_out when the data has no ``spec``; ``options`` the device, bf16
    and channels_last (default: float32 on the model's device).

    Returns ``mse, mse_frame, mae, psnr, ssim`` (floats) and the same names with ``_per_step``
    (a list, one value per future step), see :mod:`hpo_vidpred.metrics`. Predictions are clipped to
    [0, 1] before scoring, as OpenSTL does. The model is left in eval mode.
    """
    n_in, n_out = _task(data, data_spec)
    if options is None:  # plain float32 where the model is
        device = next(model.parameters()).device
        options = RunOptions(device=device, bf16=False, channels_last=False, compile=False)
    model.eval()
    sums = MetricSums()
    for frames in data.batches(split, batch_size):
        frames = _layout(frames.to(options.device), options.channels_last)  # (B, T, C, H, W)
        with _autocast(options):
            pred = model(frames[:, :n_in], n_out)
        sums.add(pred.frames.float().clamp(0.0, 1.0), frames[:, n_in:n_in + n_out].float())
    return sums.result()


# --------------------------------------------------------------------------- training
class _Progress:
    """A rich bar per epoch on stderr (loss, val_mse, ms/step); silent when disabled."""

    def __init__(self, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled, self.epochs, self.steps = enabled, epochs, steps
        self._bar = None
        self._task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  val_mse {task.fields[val]}  "
                           "{task.fields[ms]} ms/step"),
                console=Console(stderr=True),
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start_epoch(self, epoch: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("", total=self.steps, epoch=f"{epoch}/{self.epochs}",
                                            loss="-", val="-", ms="-")

    def update(self, done: int, loss: float, ms: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, loss=f"{loss:.4g}", ms=f"{ms:.1f}")

    def end_epoch(self, val_mse: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, val=f"{val_mse:.5g}")


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
    curves: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in TrainResult.CURVES})


def _loss(model: nn.Module, frames: torch.Tensor, n_in: int, n_out: int, tf_prob: float,
          spec: TrainSpec) -> torch.Tensor:
    """``frame_loss_weight * MSE(predicted, true future frames) + aux_loss`` (the architecture's
    own term: PredNet's error-unit loss, the spatio-temporal Huber flow penalty)."""
    target = frames[:, n_in:n_in + n_out]  # (B, n_out, C, H, W)
    pred = model(frames[:, :n_in], n_out, targets=target, tf_prob=tf_prob)
    loss = pred.aux_loss.float()
    if spec.frame_loss_weight:
        loss = loss + spec.frame_loss_weight * F.mse_loss(pred.frames.float(), target.float())
    return loss


def _train_epoch(run_model: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                 data: Any, spec: TrainSpec, options: RunOptions, generator: torch.Generator,
                 epoch: int, task: tuple[int, int], state: _Run, bar: _Progress) -> float:
    """One epoch of optimizer steps. Returns the mean training loss (NaN or inf if it diverged)."""
    n_in, n_out = task
    model.train()
    loss_sum = torch.zeros((), device=options.device)
    seen = untimed = 0
    _sync(options.device)
    t0 = time.perf_counter()
    for i in range(spec.steps_per_epoch):
        step = (epoch - 1) * spec.steps_per_epoch + i
        lr = lr_at(step, spec)  # once per step: the schedule lookup is not free
        for group in optimizer.param_groups:
            group["lr"] = lr
        frames = _layout(data.train_batch(spec.batch_size, generator).to(options.device),
                         options.channels_last)  # (B, T, C, H, W)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(options):
            loss = _loss(run_model, frames, n_in, n_out, tf_prob_at(step, spec), spec)
        if not loss.requires_grad:  # frame_loss_weight 0 and an architecture without aux_loss
            raise HpoError("the loss does not depend on the model (frame_loss_weight is 0 and "
                           "the architecture has no loss of its own); set frame_loss_weight > 0")
        loss.backward()
        if spec.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        loss_sum += loss.detach()
        seen += 1
        if step == 0 and spec.steps_per_epoch > 1:
            # The run's first step pays for allocation (and compilation): not timed.
            _sync(options.device)
            t0, untimed = time.perf_counter(), 1
        if seen % _CHECK_EVERY == 0 or seen == spec.steps_per_epoch:
            mean = loss_sum.item() / seen  # a device sync
            bar.update(seen, mean, 1000 * (time.perf_counter() - t0) / max(1, seen - untimed))
            if not math.isfinite(mean):
                return mean
    _sync(options.device)
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
) -> TrainResult:
    """Train ``model`` on ``data`` as ``spec`` says; validate after every epoch.

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

    Returns:
        A :class:`TrainResult`; on return the model holds the best weights (if an epoch validated).
        Never raises for divergence or CUDA out-of-memory: see ``stop_reason``.
    """
    if checkpoint_path is not None and model_spec is None:
        raise ValueError("checkpoint_path needs model_spec to make the checkpoint loadable")
    started = time.perf_counter()
    options = resolve_options(spec)
    task = _task(data, data_spec)
    SCHEDULES.get(spec.schedule)  # unknown names fail here, before any training
    TEACHER_FORCING.get(spec.teacher_forcing)
    seed_everything(spec.seed)
    generator = torch.Generator(device=options.device).manual_seed(spec.seed)
    model.to(options.device)
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    run_model = torch.compile(model) if options.compile else model
    optimizer: Optional[torch.optim.Optimizer] = torch.optim.Adam(model.parameters(), lr=spec.lr)
    state = _Run()
    stop_reason = "completed"
    out_of_memory = False
    try:
        with _Progress(progress, spec.epochs, spec.steps_per_epoch) as bar:
            for epoch in range(1, spec.epochs + 1):
                bar.start_epoch(epoch)
                train_loss = _train_epoch(run_model, model, optimizer, data, spec, options,
                                          generator, epoch, task, state, bar)
                state.epochs = epoch
                if not math.isfinite(train_loss):
                    stop_reason = "diverged"
                    break
                metrics = evaluate(run_model, data, "val", spec.val_batch_size,
                                   data_spec=data_spec, options=options)
                _record(state, epoch, train_loss, metrics, optimizer)
                bar.end_epoch(metrics["mse"])
                stop_reason = _after_epoch(state, epoch, metrics, model, spec, trial)
                if stop_reason != "completed":
                    break
    except _OUT_OF_MEMORY:
        out_of_memory = True  # memory is freed below, outside the handler that pins the frames
    if out_of_memory:
        stop_reason = "out_of_memory"
        optimizer = None
        gc.collect()
        if options.device.type == "cuda":
            torch.cuda.empty_cache()
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


def _record(state: _Run, epoch: int, train_loss: float, metrics: dict[str, Any],
            optimizer: torch.optim.Optimizer) -> None:
    curves = state.curves
    curves["train_loss"].append(train_loss)
    curves["val_mse"].append(metrics["mse"])
    curves["val_ssim"].append(metrics["ssim"])
    curves["val_psnr"].append(metrics["psnr"])
    curves["lr"].append(optimizer.param_groups[0]["lr"])


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

