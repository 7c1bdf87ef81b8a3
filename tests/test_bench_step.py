"""`hpo bench` times the training loop's own step: for every option that changes the step, the
bench's path (a :class:`~hpo_vidpred.bench.Variant`'s run options, :func:`bench_step`,
:func:`drawer`, :func:`time_step`) gives the same losses, learning rates and weights as
:func:`hpo_vidpred.train.train_and_evaluate` run on the same model, weights and batches.

No timing is asserted (the machine is shared)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hpo_vidpred import archs, train
from hpo_vidpred import data as data_mod
from hpo_vidpred.bench import (
    VARIANTS,
    StepTimes,
    bench,
    bench_step,
    drawer,
    switches,
    time_step,
)
from hpo_vidpred.devices import seed_everything
from hpo_vidpred.specs import TrainSpec

N_IN, N_OUT, BATCH, SIZE, EPOCHS = 2, 2, 2, 16, 3


class Batches:
    """A data object that hands out the given training batches in order and one validation
    batch: what ``train_and_evaluate`` and ``drawer`` draw from."""

    def __init__(self, train_batches: list[torch.Tensor], val: torch.Tensor) -> None:
        self.train_batches, self.val, self.drawn = train_batches, val, 0
        self.spec = SimpleNamespace(n_in=N_IN, n_out=N_OUT)

    def train_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        assert batch_size == BATCH
        frames = self.train_batches[self.drawn].clone()
        self.drawn += 1
        return frames

    def batches(self, split: str, batch_size: int) -> Iterator[torch.Tensor]:
        yield self.val.clone()


class Snapshots:
    """A stand-in trial: ``train_and_evaluate`` reports after every epoch, when the model holds
    that epoch's weights; they are kept (and nothing is ever pruned)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.states = model, []

    def report(self, value: float, step: int) -> None:
        self.states.append(_state(self.model))

    def should_prune(self) -> bool:
        return False


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# (arch, cell, TrainSpec fields, bench variant); every run is EPOCHS epochs of one step each, so
# the schedules and scheduled sampling move between steps 0, 1 and 2.
CASES = {
    "default": ("autoencoder", "convlstm", {}, "fp32"),  # step_half: x0.1 from step 1 on
    "auto": ("autoencoder", "stlstm", {}, "auto"),
    "grad_clip": ("autoencoder", "convlstm", {"grad_clip": 0.01}, "fp32"),
    "frame_loss_weight": ("autoencoder", "convlstm", {"frame_loss_weight": 0.3}, "fp32"),
    "teacher_forcing": ("autoencoder", "convlstm",  # tf_prob 1, 2/3, 1/3: sampled per sequence
                        {"teacher_forcing": "scheduled", "tf_decay": 1.0}, "fp32"),
    "cosine": ("autoencoder", "convlstm", {"schedule": "cosine", "lr": 3e-3}, "fp32"),
    # PredNet's aux_loss (its error units) is of the size of the frame loss from the start
    "prednet_aux_loss": ("prednet", "convlstm", {"frame_loss_weight": 0.5}, "fp32"),
    "spatiotemporal": ("spatiotemporal", "stlstm",
                       {"teacher_forcing": "scheduled", "tf_decay": 1.0}, "fp32"),
    "bf16": ("autoencoder", "convlstm", {"bf16": "on", "grad_clip": 0.1}, "bf16"),
    "channels_last": ("spatiotemporal", "convlstm", {"channels_last": "on"}, "channels_last"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench_takes_the_training_step(case: str) -> None:
    arch, cell, fields, variant = CASES[case]
    spec = TrainSpec(batch_size=BATCH, epochs=EPOCHS, steps_per_epoch=1, device="cpu", **fields)
    seed_everything(1)
    model = archs.create_model(archs.fixed_spec(arch, "mmnist", cell))
    twin = copy.deepcopy(model)  # the same weights
    start = _state(twin)
    batches = [torch.rand(BATCH, N_IN + N_OUT, 1, SIZE, SIZE) for _ in range(EPOCHS)]
    val = torch.rand(BATCH, N_IN + N_OUT, 1, SIZE, SIZE)

    # training: train_and_evaluate, one optimizer step per epoch
    trial = Snapshots(model)
    result = train.train_and_evaluate(model, Batches(batches, val), spec, trial=trial)
    assert result.stop_reason == "completed" and len(trial.states) == EPOCHS

    # the bench: the variant's options, its step, its batch drawing, its timed step
    options = VARIANTS.get(variant).resolve("cpu")
    assert options == train.resolve_options(spec)  # the same switches as training resolves
    step = bench_step(twin, options, N_IN, N_OUT, spec)
    assert type(step) is train.TrainStep
    draw = drawer(step, Batches(batches, val), BATCH, torch.Generator().manual_seed(0))
    seed_everything(spec.seed)  # as train_and_evaluate does: scheduled sampling draws from it
    times, lrs, states = StepTimes([], []), [], []
    for index in range(EPOCHS):
        time_step(step, draw, index, times)
        lrs.append(step.optimizer.param_groups[0]["lr"])
        states.append(_state(twin))

    assert lrs == result.curves["lr"]
    torch.testing.assert_close(torch.tensor(times.losses, dtype=torch.float64),
                               torch.tensor(result.curves["train_loss"], dtype=torch.float64),
                               rtol=1e-6, atol=1e-9)
    for epoch, (ours, theirs) in enumerate(zip(states, trial.states), start=1):
        assert ours.keys() == theirs.keys()
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-8,
                                       msg=lambda m, k=key, e=epoch: f"epoch {e}, {k}: {m}")
    assert any(not torch.equal(states[-1][k], start[k]) for k in start)  # the steps trained


def test_the_cases_cover_what_changes_the_step() -> None:
    """The options above are the ones that change a step (each gives other weights than the
    default), so the equality test would see a bench that dropped any of them."""
    seed_everything(1)
    model = archs.create_model(archs.fixed_spec("autoencoder", "mmnist", "convlstm"))
    frames = torch.rand(BATCH, N_IN + N_OUT, 1, SIZE, SIZE)

    def after(index: int, **fields: Any) -> dict[str, torch.Tensor]:
        spec = TrainSpec(epochs=EPOCHS, steps_per_epoch=1, device="cpu", **fields)
        step = bench_step(copy.deepcopy(model), VARIANTS.get("fp32").resolve("cpu"), N_IN,
                          N_OUT, spec)
        seed_everything(0)
        step(step.layout(frames), index)
        return _state(step.model)

    def differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return any(not torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-8) for k in a)

    plain = after(0)
    assert differs(after(0, grad_clip=0.01), plain)
    assert differs(after(0, frame_loss_weight=0.3), plain)
    assert differs(after(0, teacher_forcing="scheduled"), plain)
    assert differs(after(1, schedule="cosine"), after(1, schedule="constant"))
    assert differs(after(1), after(1, schedule="constant"))  # step_half decays at step 1 here


def test_hpo_bench_rows_come_from_the_training_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench()`` (what ``hpo bench`` prints) steps through ``train.TrainStep``: warm-up and
    timed steps, numbered from 0 as in a run, with the default training settings."""
    calls: list[tuple[TrainSpec, int]] = []
    original = train.TrainStep.__call__

    def counted(self: train.TrainStep, frames: torch.Tensor, step: int) -> torch.Tensor:
        calls.append((self.spec, step))
        return original(self, frames, step)

    monkeypatch.setattr(train.TrainStep, "__call__", counted)
    data_spec = data_mod.default_spec("mmnist", height=SIZE, width=SIZE, n_in=N_IN, n_out=N_OUT,
                                      val_size=8, test_size=8)
    rows = bench(data_spec, ["autoencoder"], ["convlstm"], batch=1, steps=2, warmup=1,
                 variants=["fp32"], device="cpu")
    assert len(rows) == 1 and rows[0]["variant"] == "fp32" and rows[0]["warmup"] == 1
    assert [index for _, index in calls] == [0, 1, 2]
    spec = calls[0][0]
    assert spec == TrainSpec(batch_size=1, device="cpu", bf16="off", channels_last="off")


def test_variants_resolve_to_run_options() -> None:
    """A variant is a set of run options: ``cudagraphs`` is ``torch.compile`` in mode
    ``reduce-overhead``; rows record the switches by name."""
    cuda = torch.device("cuda")  # resolving needs no GPU: the device is given, not looked up
    graphs = VARIANTS.get("bf16+cudagraphs").resolve(cuda)
    assert graphs.device == cuda and graphs.bf16 and graphs.compile
    assert graphs.compile_mode == "reduce-overhead"
    assert switches(graphs) == {"bf16": True, "channels_last": False, "compile": "reduce-overhead"}
    assert switches(VARIANTS.get("compile").resolve(cuda))["compile"] == "default"
    assert switches(VARIANTS.get("fp32").resolve("cpu")) == {
        "bf16": False, "channels_last": False, "compile": "off"}
