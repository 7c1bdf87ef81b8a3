"""Seed fidelity: at the fixed configurations (studies/fixed.yaml), built with the seed's channel
counts, our models have exactly the seed implementation's trainable parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo_vidpred.archs import (
    count_params,
    create_model,
    fixed_datasets,
    fixed_spec,
    parameter_table,
    seed_reference,
)
from hpo_vidpred.errors import HpoError

# Counted by instantiating the seed's own classes (dittr/Bachelorthesis, PredNet/model) with its
# yml files; the slides' tables give the same numbers (docs/design.md section 11).
SEED_COUNTS = {  # (arch, data): (seed channels, ConvLSTM, ST-LSTM)
    ("autoencoder", "mmnist"): (1, 537_411, 773_018),
    ("autoencoder", "kth"): (1, 537_411, 773_018),
    ("autoencoder", "kitti"): (3, 542_531, 781_760),
    ("prednet", "mmnist"): (1, 6_909_818, 12_421_090),
    ("prednet", "kth"): (1, 850_325, 1_285_730),
    ("prednet", "kitti"): (3, 8_222_559, 12_430_626),
    ("spatiotemporal", "mmnist"): (1, 1_001_324, 1_415_639),
    ("spatiotemporal", "kth"): (3, 1_007_598, 1_421_913),
    ("spatiotemporal", "kitti"): (3, 1_640_321, 2_200_641),
}


def _count(spec) -> int:
    with torch.device("meta"):
        return count_params(create_model(spec))


@pytest.mark.parametrize(("arch", "data"), list(SEED_COUNTS))
def test_parameter_counts_equal_the_seeds(arch: str, data: str) -> None:
    channels, convlstm, stlstm = SEED_COUNTS[(arch, data)]
    for cell, expected in (("convlstm", convlstm), ("stlstm", stlstm)):
        spec = fixed_spec(arch, data, cell, channels=channels)
        assert _count(spec) == expected, (arch, data, cell)
    assert seed_reference(arch, data).params == {"convlstm": convlstm, "stlstm": stlstm}
    assert seed_reference(arch, data).channels == channels


def test_fixed_specs_use_our_datas_channels_and_the_seeds_peepholes() -> None:
    assert fixed_datasets() == ["mmnist", "kth", "kitti"]
    kth = fixed_spec("spatiotemporal", "kth", "convlstm")
    assert kth.channels == 1 and _count(kth) == 1_001_324  # grayscale KTH, the seed read RGB
    assert fixed_spec("autoencoder", "kitti", "stlstm").channels == 3
    # The seed's autoencoder and spatio-temporal model always run the conv peephole; PredNet
    # follows its files.
    assert {fixed_spec(a, "mmnist", "convlstm").peephole
            for a in ("autoencoder", "spatiotemporal")} == {"conv"}
    assert fixed_spec("prednet", "mmnist", "convlstm").peephole == "none"
    assert fixed_spec("prednet", "kitti", "convlstm").peephole == "conv"
    assert fixed_spec("autoencoder", "kth", "convlstm").config == {
        "depth": 2, "hidden": 32, "kernel": 3}


def test_fixed_model_runs_at_the_data_size() -> None:
    spec = fixed_spec("prednet", "kth", "stlstm")
    with torch.no_grad():
        out = create_model(spec)(torch.rand(1, 2, 1, 60, 80), 1)
    assert out.frames.shape == (1, 1, 1, 60, 80)


def test_parameter_table_rows() -> None:
    rows = parameter_table(["kth"])
    assert len(rows) == 6 and all(r["seed_match"] for r in rows)
    spatio = [r for r in rows if r["arch"] == "spatiotemporal" and r["cell"] == "stlstm"][0]
    assert (spatio["params"], spatio["seed_params"], spatio["seed_channels"]) == (
        1_415_639, 1_421_913, 3)


def test_unknown_dataset_or_a_users_broken_fixed_file() -> None:
    with pytest.raises(HpoError, match="no fixed configuration of prednet for dataset 'ucf'"):
        fixed_spec("prednet", "ucf", "convlstm")
    with pytest.raises(HpoError, match="unknown dataset 'ucf'; choose one of: mmnist, kth, kitti"):
        parameter_table(["ucf"])
    # A studies/fixed.yaml in the working directory takes precedence over the bundled one.
    studies = Path("studies")
    studies.mkdir()
    (studies / "fixed.yaml").write_text("models: [1, 2]\n")
    with pytest.raises(HpoError, match="needs the mappings 'channels' and 'models'"):
        fixed_spec("prednet", "kth", "convlstm")
    (studies / "fixed.yaml").write_text(
        "channels: {kth: 1}\nmodels: {prednet: {kth: {config: {}, peephol: conv}}}\n")
    with pytest.raises(HpoError, match=r"unknown ModelSpec key\(s\) peephol in .*prednet.kth"):
        fixed_spec("prednet", "kth", "convlstm")


@pytest.mark.parametrize("data", ["mmnist", "kth", "kitti"])
def test_fixed_channels_match_the_data(data: str) -> None:
    """fixed.yaml's frame channels are the ones our loaders produce for that dataset."""
    from hpo_vidpred.archs import fixed_spec
    from hpo_vidpred.data import default_spec

    assert fixed_spec("autoencoder", data, "convlstm").channels == default_spec(data).channels
