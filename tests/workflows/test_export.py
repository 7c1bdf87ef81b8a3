"""``hpo export`` and ``hpo fixed --config``: the exported configuration retrains exactly."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from smoke_matrix import COMPARE, copy_store, matrix_fixture

from hpo_vidpred.cli import main
from hpo_vidpred.workflows.fixed import fixed_params
from hpo_vidpred.specs import ModelSpec, TrainSpec, from_dict

smoke = matrix_fixture()  # the smoke matrix, run once per session

STUDY = "autoencoder-mmnist-stlstm"


@pytest.mark.slow
def test_export_then_fixed_config_reproduces_the_trial_exactly(matrix: dict, capsys,
                                                                tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("HPO_MODELS_DIR", str(tmp_path / "models"))
    url = copy_store(matrix, tmp_path)
    out = tmp_path / "best.yaml"
    assert main(["export", "--study", STUDY, "--storage", url, "--out", str(out)]) == 0
    assert f"wrote {out}: 1 configuration(s)" in capsys.readouterr().err
    document = yaml.safe_load(out.read_text())
    (exported,) = document["configurations"]
    best = optuna.load_study(study_name=STUDY, storage=url).best_trial
    assert (exported["trial"], exported["val_mse"], exported["params"]) == (
        best.number, best.value, best.params)
    seed = exported["train_spec"]["seed"]

    assert main(["fixed", "--arch", "autoencoder", "--data", "mmnist", "--cell", "stlstm",
                 "--config", str(out), "--seed", str(seed), "--storage", url, "--json",
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"].startswith("config-autoencoder-mmnist-stlstm-")
    trial = optuna.load_study(study_name=summary["study"], storage=url).trials[0]
    # Exactly the exported model and training settings (the device is this run's) ...
    assert trial.user_attrs["model_spec"] == exported["model_spec"] == \
        best.user_attrs["model_spec"]
    train = dict(trial.user_attrs["train_spec"])
    assert train.pop("device") == "auto"
    assert train == exported["train_spec"]
    assert trial.params == fixed_params(from_dict(ModelSpec, exported["model_spec"]),
                                        from_dict(TrainSpec, exported["train_spec"]))
    # ... on the same data with the same seed: the same network and the same result.
    assert trial.user_attrs["n_params"] == exported["n_params"] == best.user_attrs["n_params"]
    assert trial.value == exported["val_mse"]
    assert trial.intermediate_values == best.intermediate_values
    assert summary["budget"]["budget"] == "smoke"


@pytest.mark.slow
def test_export_formats_ranks_and_refusals(matrix: dict, capsys, tmp_path: Path) -> None:
    url = matrix["url"]
    assert main(["export", "--study", STUDY, "--storage", url, "--format", "json", "--top",
                 "5"]) == 0
    document = json.loads(capsys.readouterr().out)
    complete = sorted((t for t in optuna.load_study(study_name=STUDY, storage=url).trials
                       if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert [c["trial"] for c in document["configurations"]] == [t.number for t in complete]
    assert [c["rank"] for c in document["configurations"]] == list(
        range(1, len(complete) + 1))
    assert document["budget"] == "smoke" and document["data_spec"]["height"] == 16
    assert "data.height: 64 -> 16" in document["budget_changes"]
    assert main(["export", "--study", STUDY, "--storage", url]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Best configurations of study autoencoder-mmnist-stlstm")
    assert yaml.safe_load(text)["configurations"][0] == document["configurations"][0]

    assert main(["export", "--study", COMPARE, "--storage", url]) == 2
    assert "holds test-set results" in capsys.readouterr().err
    assert main(["export", "--study", "nope", "--storage", url]) == 2
    assert "no study 'nope' in this store; its studies: autoencoder-mmnist-convlstm" in \
        capsys.readouterr().err
    path = tmp_path / "best.json"
    path.write_text(json.dumps(document))
    for args, message in (
            (["--arch", "prednet", "--cell", "stlstm"], "holds autoencoder on mmnist, not "
                                                        "prednet on mmnist"),
            (["--arch", "autoencoder", "--cell", "convlstm"], "no configuration with cell "
                                                              "'convlstm'; it has: stlstm")):
        assert main(["fixed", *args, "--data", "mmnist", "--config", str(path), "--storage",
                     f"sqlite:///{tmp_path / 's.db'}"]) == 2
        assert message in capsys.readouterr().err


def test_a_file_that_is_not_an_export_is_one_line(capsys, tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("lr: 0.1\n")
    assert main(["fixed", "--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm",
                 "--config", str(path)]) == 2
    assert "is not a configuration file of 'hpo export'" in capsys.readouterr().err
    assert main(["fixed", "--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm",
                 "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not Path("studies/hpo.db").exists()  # nothing was stored
