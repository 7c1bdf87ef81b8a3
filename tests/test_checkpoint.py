"""Checkpoints: weights plus specs, readable with ``weights_only=True``, rebuilt by the loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo_vidpred import archs
from hpo_vidpred import data as datasets
from hpo_vidpred.checkpoint import checkpoint_path, load_checkpoint
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import ModelSpec, TrainSpec
from hpo_vidpred.devices import seed_everything
from hpo_vidpred.train import train_and_evaluate


def test_checkpoint_round_trip_rebuilds_the_best_model() -> None:
    data_spec = datasets.default_spec("mmnist", height=16, width=16, n_in=2, n_out=2,
                                      val_size=4)
    model_spec = ModelSpec(arch="autoencoder", cell="stlstm", config={"depth": 1, "hidden": 4})
    train_spec = TrainSpec(epochs=2, steps_per_epoch=2, batch_size=2, device="cpu")
    data = datasets.load(data_spec, "cpu")
    seed_everything(0)
    model = archs.create_model(model_spec)
    path = checkpoint_path("study-x", "trial-3")
    assert path == Path("models/study-x/trial-3.pt").resolve()  # absolute: stores record it
    result = train_and_evaluate(model, data, train_spec, checkpoint_path=path,
                                model_spec=model_spec, data_spec=data_spec)

    raw = torch.load(path, weights_only=True)
    assert raw["model_spec"]["config"] == {"depth": 1, "hidden": 4}
    loaded, specs = load_checkpoint(path)
    assert specs["model_spec"] == model_spec
    assert specs["data_spec"] == data_spec and specs["train_spec"] == train_spec
    assert specs["result"]["best_val_mse"] == pytest.approx(result.best_val_mse)
    for name, tensor in result.best_state.items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    frames = next(data.batches("val", 4))
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames[:, :2], 2).frames, model(frames[:, :2], 2).frames,
                                   rtol=0, atol=0)


def test_checkpoint_needs_a_model_spec() -> None:
    with pytest.raises(ValueError, match="model_spec"):
        train_and_evaluate(torch.nn.Linear(1, 1), None, TrainSpec(), checkpoint_path="x.pt")


def test_missing_or_foreign_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(HpoError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(HpoError, match="not an hpo-vidpred checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(HpoError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
