"""Seed fidelity: at the fixed configurations (studies/fixed/<arch>.yaml), built with the seed's
channel counts, our models have exactly the seed implementation's trainable parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo_vidpred.archs import (
    base_spec,
    count_params,
    create_model,
    fixed_datasets,
    fixed_spec,
    parameter_table,
    seed_reference,
)
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import ModelSpec

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
    # A studies/fixed/<arch>.yaml in the working directory takes precedence over the bundled one,
    # for that architecture only.
    studies = Path("studies")
    (studies / "fixed").mkdir(parents=True)
    (studies / "fixed" / "prednet.yaml").write_text("[1, 2]\n")
    with pytest.raises(HpoError, match="prednet.yaml needs a mapping of dataset: "):
        fixed_spec("prednet", "kth", "convlstm")
    assert fixed_spec("autoencoder", "kth", "convlstm").config["hidden"] == 32
    (studies / "fixed" / "prednet.yaml").write_text("kth: {channels: 1, peephol: conv}\n")
    with pytest.raises(HpoError, match=r"key\(s\) peephol in .*prednet.yaml \(kth\)"):
        fixed_spec("prednet", "kth", "convlstm")
    (studies / "fixed" / "prednet.yaml").write_text("kth: {config: {}}\n")
    with pytest.raises(HpoError, match=r"prednet.yaml \(kth\) gives no channels"):
        fixed_spec("prednet", "kth", "convlstm")
    assert fixed_spec("prednet", "kth", "convlstm", channels=3).channels == 3
    with pytest.raises(HpoError, match="no fixed configuration of prednet for dataset 'kitti' in "
                                       "studies/fixed/prednet.yaml; choose one of: kth"):
        fixed_spec("prednet", "kitti", "convlstm")
    # The one file of every architecture that came before is named, with what to do.
    (studies / "fixed.yaml").write_text("channels: {kth: 1}\nmodels: {}\n")
    with pytest.raises(HpoError, match=r"studies/fixed.yaml holds fixed configurations in the old "
                                       r"layout; move each architecture's part \(models.<arch>\) "
                                       "to studies/fixed/<arch>.yaml"):
        fixed_spec("autoencoder", "kth", "convlstm")


def test_the_studies_folder_override_and_the_base_of_a_search(tmp_path: Path,
                                                              monkeypatch) -> None:
    """$HPO_STUDIES_DIR/fixed/<arch>.yaml replaces the bundled file of that architecture; a
    dataset without a fixed configuration starts a search from the architecture's defaults."""
    folder = tmp_path / "mine"
    (folder / "fixed").mkdir(parents=True)
    (folder / "fixed" / "autoencoder.yaml").write_text(
        "ucf: {channels: 3, peephole: none, config: {depth: 1, hidden: 8}}\n")
    monkeypatch.setenv("HPO_STUDIES_DIR", str(folder))
    assert fixed_datasets() == ["ucf", "mmnist", "kth", "kitti"]  # prednet's file is bundled
    assert fixed_spec("autoencoder", "ucf", "stlstm").config == {"depth": 1, "hidden": 8}
    assert base_spec("autoencoder", "ucf", "convlstm", 3) == fixed_spec("autoencoder", "ucf",
                                                                        "convlstm")
    assert base_spec("prednet", "ucf", "stlstm", 3) == ModelSpec(arch="prednet", cell="stlstm",
                                                                 channels=3)
    with pytest.raises(HpoError, match="no fixed configuration of autoencoder for dataset 'kth'"):
        fixed_spec("autoencoder", "kth", "convlstm")


@pytest.mark.parametrize("data", ["mmnist", "kth", "kitti"])
def test_fixed_channels_match_the_data(data: str) -> None:
    """The fixed files' frame channels are the ones our loaders produce for that dataset."""
    from hpo_vidpred.archs import ARCHS
    from hpo_vidpred.data import default_spec

    assert {fixed_spec(arch, data, "convlstm").channels for arch in ARCHS.names()} == {
        default_spec(data).channels}
