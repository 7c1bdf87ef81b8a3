"""Search spaces: the shipped files validate, every malformed file is one line, sampling obeys
the conditionals and values land in the right spec."""

from __future__ import annotations

import optuna
import pytest

from hpo_vidpred import archs
from hpo_vidpred.cells import CELLS
from hpo_vidpred.errors import HpoError
from hpo_vidpred.paths import studies_file
from hpo_vidpred.search_space import load_search_space
from hpo_vidpred.specs import ModelSpec, TrainSpec

AE_KEYS = archs.config_keys("autoencoder")
GOOD = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def _load(raw, arch="autoencoder"):
    return load_search_space(raw, arch, archs.config_keys(arch), CELLS.names())


@pytest.mark.parametrize("arch", sorted(archs.ARCHS.names()))
def test_every_shipped_search_space_validates_and_samples(arch: str) -> None:
    space = _load(studies_file(f"{arch}.yaml"), arch)
    names = {p.name for p in space.params}
    assert {"lr", "batch_size", "cell", "depth", "hidden", "kernel"} <= names
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        values = space.sample(study.ask())
        model, train = space.apply(values, archs.fixed_spec(arch, "mmnist", "convlstm"),
                                   TrainSpec())
        archs.create_model(model)  # every sample is a configuration the architecture accepts
        assert train.lr == values["lr"] and model.cell == values["cell"]


def test_architecture_specific_parameters_are_searched() -> None:
    prednet = {p.name for p in _load(studies_file("prednet.yaml"), "prednet").params}
    assert "layer_weights" in prednet
    st = {p.name for p in _load(studies_file("spatiotemporal.yaml"), "spatiotemporal").params}
    assert {"flow_kernel", "huber_weight"} <= st


@pytest.mark.parametrize("raw, message", [
    ({"params": GOOD, "extra": 1}, "unknown key(s) extra"),
    ({"params": {"lr": {"type": "float", "low": 1, "high": 2, "scale": 3}}},
     "unknown key(s) scale"),
    ({"params": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "low 0.1 > high 0.01"),
    ({"params": {"kernel": {"type": "categorical", "choices": []}}},
     "choices must be a non-empty list"),
    ({"params": {"flow_kernel": {"type": "int", "low": 3, "high": 9}}},
     "'flow_kernel' is not taken by arch 'autoencoder'"),
    ({"params": GOOD, "fixed": {"layer_weights": "l0"}}, "'layer_weights' is not taken"),
    ({"params": {"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
     "log needs low > 0"),
    ({"params": {"lr": {"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}}},
     "use log or step, not both"),
    ({"params": {"depth": {"type": "int", "low": 1.5, "high": 3}}}, "low must be an integer"),
    ({"params": {"lr": {"type": "uniform", "low": 1, "high": 2}}},
     "type must be float, int or categorical"),
    ({"params": {"lr": {"type": "float", "high": 2}}}, "low is required"),
    ({"params": {"hidden": {"type": "int", "low": 8, "high": 64, "per_layer": "depth"}}},
     "per_layer must name an integer parameter"),
    ({"params": {"lr": {**GOOD["lr"], "when": {"cell": "stlstm"}}}},
     "when refers to 'cell', which is not declared above"),
    ({"params": {"cell": {"type": "categorical", "choices": ["convlstm"]},
                 "lr": {**GOOD["lr"], "when": {"cell": "gru"}}}}, "never holds"),
    ({"params": {"cell": {"type": "categorical", "choices": ["convlstm", "gru"]}}},
     "unknown cell 'gru'"),
    ({"params": GOOD, "fixed": {"lr": 0.1}}, "lr is both fixed and searched"),
    ({"params": {"epochs": {"type": "int", "low": 1, "high": 9}}}, "'epochs' is not taken"),
    ({"arch": "prednet", "params": GOOD}, "is for arch 'prednet', not 'autoencoder'"),
    ({"params": {}}, "'params' must be a non-empty mapping"),
    (["lr"], "expected a mapping"),
])
def test_each_malformed_search_space_is_one_line(raw, message: str) -> None:
    with pytest.raises(HpoError) as info:
        _load(raw)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith("search space ")


def test_a_malformed_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  lr: {type: float, low: 1, high: 0}\n")
    with pytest.raises(HpoError, match=r"space\.yaml: parameter 'lr': low 1\.0 > high 0\.0"):
        _load(path)


CONDITIONAL = {
    "params": {
        "depth": {"type": "int", "low": 1, "high": 3},
        "hidden": {"type": "int", "low": 4, "high": 32, "log": True, "per_layer": "depth"},
        "cell": {"type": "categorical", "choices": ["convlstm", "stlstm"]},
        "peephole": {"type": "categorical", "choices": ["conv", "hadamard"],
                     "when": {"cell": "convlstm"}},
        "lr": GOOD["lr"],
    },
    "fixed": {"schedule": "cosine"},
}


def test_conditionals_per_layer_and_when() -> None:
    space = _load(CONDITIONAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_depths = set()
    for _ in range(30):
        trial = study.ask()
        values = space.sample(trial)
        depth = values["depth"]
        seen_depths.add(depth)
        assert isinstance(values["hidden"], tuple) and len(values["hidden"]) == depth
        assert {f"hidden_{i}" for i in range(1, depth + 1)} <= set(trial.params)
        assert f"hidden_{depth + 1}" not in trial.params
        assert ("peephole" in values) == (values["cell"] == "convlstm")
        study.tell(trial, 0.0)
    assert seen_depths == {1, 2, 3}


def test_values_land_in_train_model_and_config() -> None:
    space = _load(CONDITIONAL)
    values = {"depth": 2, "hidden": (8, 16), "cell": "convlstm", "peephole": "hadamard",
              "lr": 0.005, "schedule": "cosine"}
    model, train = space.apply(values, ModelSpec(config={"depth": 1, "hidden": 32}), TrainSpec())
    assert (train.lr, train.schedule) == (0.005, "cosine")
    assert (model.cell, model.peephole) == ("convlstm", "hadamard")
    assert model.config == {"depth": 2, "hidden": (8, 16)}


def test_a_helper_the_architecture_does_not_take_is_dropped() -> None:
    raw = {"params": {"n": {"type": "int", "low": 1, "high": 2},
                      "hidden": {"type": "int", "low": 4, "high": 8, "per_layer": "n"}}}
    space = _load(raw)  # "n" is no autoencoder key, but hidden refers to it
    model, _ = space.apply({"n": 2, "hidden": (4, 5)}, ModelSpec(), TrainSpec())
    assert model.config == {"hidden": (4, 5)}


def test_pin_removes_the_parameter_and_checks_the_value() -> None:
    space = _load(CONDITIONAL).pin("cell", "stlstm")
    assert space.param("cell") is None and space.fixed["cell"] == "stlstm"
    study = optuna.create_study()
    for _ in range(5):
        trial = study.ask()
        values = space.sample(trial)
        assert values["cell"] == "stlstm" and "cell" not in trial.params
        assert "peephole" not in values  # its condition (cell == convlstm) never holds now
        study.tell(trial, 0.0)
    with pytest.raises(HpoError, match="outside the search space's choices"):
        _load({"params": {"cell": {"type": "categorical", "choices": ["convlstm"]}}}).pin(
            "cell", "stlstm")


def test_canonical_form_round_trips() -> None:
    space = _load(CONDITIONAL)
    again = _load(space.to_dict())
    assert again.to_dict() == space.to_dict()
