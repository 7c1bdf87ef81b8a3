"""The training loop: schedules, stop reasons, determinism, trial calls (docs/design.md
section 6).

These tests drive :func:`train_and_evaluate` with a tiny convolutional predictor and a small
in-memory data object with the VideoData interface, so each run takes milliseconds; the real
architectures and datasets are exercised end to end in ``test_fixed.py``.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple, Optional

import optuna
import pytest
import torch
from torch import nn

from hpo_vidpred.devices import resolve_options, seed_everything
from hpo_vidpred.specs import DataSpec, TrainSpec
from hpo_vidpred.schedules import lr_at, tf_prob_at
from hpo_vidpred.train import TrainResult, evaluate, train_and_evaluate


class Prediction(NamedTuple):
    frames: torch.Tensor
    aux_loss: torch.Tensor


class TinyPredictor(nn.Module):
    """Predicts each next frame from the previous one with one 3x3 convolution (closed loop)."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.calls = 0
        self.tf_probs: list[float] = []

    def forward(self, frames_in: torch.Tensor, n_future: int,
                targets: Optional[torch.Tensor] = None, tf_prob: float = 0.0) -> Prediction:
        self.calls += 1
        if self.training:
            self.tf_probs.append(tf_prob)
        last, out = frames_in[:, -1], []
        for t in range(n_future):
            last = self.conv(last)  # (B, C, H, W)
            out.append(last)
            if targets is not None and tf_prob >= 1.0:
                last = targets[:, t]
        return Prediction(torch.stack(out, dim=1), torch.zeros((), device=frames_in.device))


class SquaresData:
    """The VideoData interface over bright squares moving one pixel per frame."""

    def __init__(self, n_train: int = 64, n_val: int = 12, size: int = 16,
                 n_in: int = 2, n_out: int = 2, device: str = "cpu") -> None:
        self.spec = DataSpec(name="squares", height=size, width=size, n_in=n_in, n_out=n_out)
        g = torch.Generator().manual_seed(123)
        self._splits = {"train": self._make(n_train, g).to(device),
                        "val": self._make(n_val, g).to(device)}

    def _make(self, n: int, g: torch.Generator) -> torch.Tensor:
        t, size = self.spec.seq_len, self.spec.height
        frames = torch.zeros(n, t, 1, size, size, dtype=torch.uint8)  # (N, T, C, H, W)
        for i in range(n):
            y, x = torch.randint(0, size - 4 - t, (2,), generator=g).tolist()
            for k in range(t):
                frames[i, k, 0, y + k:y + k + 4, x + k:x + k + 4] = 255
        return frames

    def train_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        train = self._splits["train"]
        index = torch.randint(0, train.shape[0], (batch_size,), generator=generator,
                              device=generator.device)
        return train[index.to(train.device)].float() / 255.0

    def split(self, name: str) -> torch.Tensor:
        return self._splits[name]

    def batches(self, name: str, batch_size: int):
        frames = self._splits[name]
        for start in range(0, frames.shape[0], batch_size):
            yield frames[start:start + batch_size].float() / 255.0


def _spec(**changes) -> TrainSpec:
    values = dict(lr=1e-2, batch_size=4, epochs=3, steps_per_epoch=4, val_batch_size=8,
                  device="cpu")
    values.update(changes)
    return TrainSpec(**values)


def _run(spec: TrainSpec, model: Optional[nn.Module] = None, **kwargs) -> TrainResult:
    seed_everything(spec.seed)
    return train_and_evaluate(model or TinyPredictor(), SquaresData(), spec, **kwargs)


# --------------------------------------------------------------------------- schedules
def test_step_half_decays_tenfold_from_half_the_epochs() -> None:
    spec = _spec(lr=1e-3, epochs=20, steps_per_epoch=500)
    assert lr_at(0, spec) == pytest.approx(1e-3)
    assert lr_at(10 * 500 - 1, spec) == pytest.approx(1e-3)
    assert lr_at(10 * 500, spec) == pytest.approx(1e-4)
    assert lr_at(20 * 500 - 1, spec) == pytest.approx(1e-4)


def test_step_half_with_one_epoch_never_decays_like_the_seed() -> None:
    spec = _spec(lr=1e-3, epochs=1, steps_per_epoch=5000)
    assert lr_at(4999, spec) == pytest.approx(1e-3)


def test_cosine_and_constant_schedules() -> None:
    cosine = _spec(lr=1.0, epochs=2, steps_per_epoch=50, schedule="cosine")
    assert lr_at(0, cosine) == pytest.approx(1.0)
    assert lr_at(50, cosine) == pytest.approx(0.5)
    assert lr_at(100, cosine) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(77, _spec(lr=0.3, schedule="constant")) == pytest.approx(0.3)


def test_scheduled_sampling_falls_linearly_to_zero() -> None:
    spec = _spec(epochs=2, steps_per_epoch=50, teacher_forcing="scheduled", tf_decay=0.5)
    assert [tf_prob_at(s, spec) for s in (0, 25, 50, 99)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert tf_prob_at(0, _spec()) == 0.0


def test_unknown_schedule_is_a_one_line_error_before_training() -> None:
    from hpo_vidpred.errors import HpoError

    with pytest.raises(HpoError, match="unknown schedule 'linear'; choose one of"):
        _run(_spec(schedule="linear"))


def test_a_loss_without_the_model_is_a_one_line_error() -> None:
    from hpo_vidpred.errors import HpoError

    with pytest.raises(HpoError, match="set frame_loss_weight > 0"):
        _run(_spec(frame_loss_weight=0.0))


def test_auto_options_stay_off_on_cpu() -> None:
    options = resolve_options(_spec(device="cpu"))
    assert (options.bf16, options.channels_last, options.compile) == (False, False, False)
    assert resolve_options(_spec(device="cpu", bf16="on")).bf16 is True


# --------------------------------------------------------------------------- a run
def test_run_learns_and_reports_everything() -> None:
    result = _run(_spec(epochs=4, steps_per_epoch=8))
    assert result.stop_reason == "completed" and result.epochs == 4
    curves = result.curves
    assert all(len(curves[name]) == 4 for name in TrainResult.CURVES)
    assert curves["val_mse"][-1] < curves["val_mse"][0]
    assert result.best_val_mse == min(curves["val_mse"])
    assert curves["val_mse"][result.best_epoch - 1] == result.best_val_mse
    assert result.best_metrics["ssim"] == result.val_ssim
    assert len(result.best_metrics["mse_per_step"]) == 2
    assert curves["lr"] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])  # step_half: x0.1 after 2
    attrs = result.user_attrs()
    assert set(attrs) == {"val_mse", "n_params", "stop_reason", "best_epoch", "epochs", "step_ms",
                          "train_seconds", "val_ssim", "val_psnr", "device", "curves"}
    assert attrs["val_mse"] == result.best_val_mse
    assert attrs["n_params"] == 10 and attrs["device"] == "cpu" and attrs["step_ms"] > 0
    json.dumps(result.summary(), allow_nan=False)


def test_model_ends_with_the_best_weights() -> None:
    model = TinyPredictor()
    result = _run(_spec(epochs=3), model=model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, result.best_state[name])
    metrics = evaluate(model, SquaresData(), "val", batch_size=5)
    assert metrics["mse"] == pytest.approx(result.best_val_mse, rel=1e-6)


def test_cpu_runs_repeat_bit_for_bit() -> None:
    first = _run(_spec(seed=7))
    second = _run(_spec(seed=7))
    other = _run(_spec(seed=8))
    assert first.curves["train_loss"] == second.curves["train_loss"]
    assert first.curves["val_mse"] == second.curves["val_mse"]
    assert all(torch.equal(first.best_state[k], second.best_state[k]) for k in first.best_state)
    assert first.curves["train_loss"] != other.curves["train_loss"]


@pytest.mark.parametrize("cuts", [(1, 2, 3), (2,), (3,)])
def test_a_run_paused_and_resumed_trains_the_same_weights(tmp_path, cuts) -> None:
    """Pausing at any epochs and resuming from the file (another process would read the same)
    gives the run that never stopped, bit for bit on the CPU: the schedule spans all epochs, the
    data generator, the random state (scheduled sampling draws from it) and Adam continue."""
    from hpo_vidpred import archs
    from hpo_vidpred.specs import ModelSpec

    spec = _spec(epochs=4, steps_per_epoch=3, schedule="cosine", teacher_forcing="scheduled",
                 tf_decay=0.9, patience=3)
    model_spec = ModelSpec(arch="autoencoder", cell="stlstm", config={"depth": 1, "hidden": 4,
                                                                     "kernel": 3, "patch": 2})

    def fresh() -> nn.Module:
        seed_everything(spec.seed)
        return archs.create_model(model_spec)

    whole_model = fresh()
    whole = train_and_evaluate(whole_model, SquaresData(), spec)
    path, result, model = tmp_path / "paused.pt", None, None
    for start, stop in zip((0, *cuts), (*cuts, None)):
        model = fresh()
        result = train_and_evaluate(model, SquaresData(), spec, pause_at=stop, pause_to=path,
                                    resume_from=path if start else None)
        assert result.stop_reason == ("paused" if stop else "completed")
        assert result.epochs == (stop or 4)
    assert result.curves["train_loss"] == whole.curves["train_loss"]
    assert result.curves["val_mse"] == whole.curves["val_mse"]
    assert result.best_epoch == whole.best_epoch
    for name, tensor in whole_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_missing_or_foreign_paused_run_is_one_line(tmp_path) -> None:
    from hpo_vidpred.errors import HpoError

    with pytest.raises(HpoError, match="paused run not found"):
        _run(_spec(), resume_from=tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a file of ours")
    with pytest.raises(HpoError, match="not a readable paused run"):
        _run(_spec(), resume_from=tmp_path / "bad.pt")


def test_teacher_forcing_reaches_the_model() -> None:
    model = TinyPredictor()
    _run(_spec(epochs=2, steps_per_epoch=4, teacher_forcing="scheduled", tf_decay=0.5),
         model=model)
    assert model.tf_probs == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0])


# --------------------------------------------------------------------------- stop reasons
def test_exploding_learning_rate_is_diverged_not_an_exception() -> None:
    result = _run(_spec(lr=1e30, epochs=3, steps_per_epoch=8))
    assert result.stop_reason == "diverged"
    assert result.epochs == 1 and result.best_epoch == 0 and math.isinf(result.best_val_mse)
    assert result.user_attrs()["val_ssim"] is None
    json.dumps(result.summary(), allow_nan=False)


class OutOfMemoryAt(TinyPredictor):
    """Raises CUDA's out-of-memory error from inside forward at a given call (simulated on CPU)."""

    def __init__(self, at_call: int) -> None:
        super().__init__()
        self.at_call = at_call

    def forward(self, *args, **kwargs) -> Prediction:
        if self.calls + 1 == self.at_call:
            self.calls += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(*args, **kwargs)


def test_cuda_out_of_memory_is_a_stop_reason_not_a_crash() -> None:
    # Epoch 1: 4 training calls + 2 validation batches; the 8th call is in epoch 2's training.
    model = OutOfMemoryAt(at_call=8)
    result = _run(_spec(epochs=3, steps_per_epoch=4), model=model)
    assert result.stop_reason == "out_of_memory"
    assert result.epochs == 1 and result.best_epoch == 1 and math.isfinite(result.best_val_mse)
    assert all(torch.equal(v, result.best_state[k]) for k, v in model.state_dict().items())


class ScriptedValidation(TinyPredictor):
    """Its validation MSE after epoch k is exactly ``curve[k - 1]`` (predicts sqrt(value) on
    all-black validation frames)."""

    def __init__(self, curve: list[float], steps_per_epoch: int) -> None:
        super().__init__()
        self.curve, self.steps_per_epoch, self.train_calls = curve, steps_per_epoch, 0

    def forward(self, frames_in, n_future, targets=None, tf_prob=0.0) -> Prediction:
        pred = super().forward(frames_in, n_future, targets, tf_prob)
        if self.training:
            self.train_calls += 1
            return pred
        epoch = self.train_calls // self.steps_per_epoch
        value = math.sqrt(self.curve[epoch - 1])
        return Prediction(torch.full_like(pred.frames, value), pred.aux_loss)


class BlackValidation(SquaresData):
    def batches(self, name: str, batch_size: int):
        for batch in super().batches(name, batch_size):
            yield torch.zeros_like(batch)


def test_early_stopping_stops_at_the_right_epoch() -> None:
    curve = [0.5, 0.3, 0.28, 0.35, 0.29, 0.1, 0.05]
    # min_delta 0.05: epoch 3 (0.28) is no real improvement on 0.3, nor are epochs 4 and 5,
    # so patience 3 stops the run after epoch 5; the best value is still epoch 3's.
    spec = _spec(epochs=len(curve), steps_per_epoch=2, patience=3, min_delta=0.05)
    seed_everything(0)
    result = train_and_evaluate(ScriptedValidation(curve, 2), BlackValidation(), spec)
    assert result.stop_reason == "early_stopped"
    assert result.epochs == 5
    assert result.curves["val_mse"] == pytest.approx(curve[:5])
    assert (result.best_epoch, result.best_val_mse) == (3, pytest.approx(0.28))


def test_patience_zero_never_stops_early() -> None:
    curve = [0.5, 0.6, 0.7, 0.8]
    seed_everything(0)
    result = train_and_evaluate(ScriptedValidation(curve, 2), BlackValidation(),
                                _spec(epochs=4, steps_per_epoch=2))
    assert (result.stop_reason, result.epochs, result.best_epoch) == ("completed", 4, 1)


def test_pruned_run_returns_and_reports_every_epoch_to_the_trial() -> None:
    curve = [0.5, 0.4, 0.3, 0.2]
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.45))
    trial = study.ask()
    seed_everything(0)
    result = train_and_evaluate(ScriptedValidation(curve, 2), BlackValidation(),
                                _spec(epochs=4, steps_per_epoch=2), trial=trial)
    assert result.stop_reason == "pruned" and result.epochs == 1
    assert study.trials[0].intermediate_values == {1: pytest.approx(0.5)}

    trial = study.ask()
    seed_everything(0)
    result = train_and_evaluate(ScriptedValidation([0.4, 0.3], 2), BlackValidation(),
                                _spec(epochs=2, steps_per_epoch=2), trial=trial)
    assert result.stop_reason == "completed"
    assert study.trials[1].intermediate_values == {1: pytest.approx(0.4), 2: pytest.approx(0.3)}


# --------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
def test_cuda_run_uses_bf16_and_channels_last_and_learns() -> None:
    spec = _spec(device="cuda", epochs=3, steps_per_epoch=8)
    options = resolve_options(spec)
    assert options.bf16 and options.channels_last and not options.compile
    seed_everything(0)
    result = train_and_evaluate(TinyPredictor(), SquaresData(device="cuda"), spec)
    assert result.stop_reason == "completed" and result.device.startswith("cuda")
    assert result.curves["val_mse"][-1] < result.curves["val_mse"][0]
    assert all(t.device.type == "cpu" for t in result.best_state.values())


@pytest.mark.gpu
def test_real_cuda_out_of_memory_frees_memory() -> None:
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated()
    seed_everything(0)
    # A batch of 2^30 sequences (about 1 TB of frames) cannot be allocated on any GPU.
    result = train_and_evaluate(TinyPredictor(), SquaresData(device="cuda"),
                                _spec(device="cuda", batch_size=2**30))
    assert result.stop_reason == "out_of_memory" and result.epochs == 0
    assert torch.cuda.memory_allocated() - baseline < 2**20
