"""``hpo compare``: what each retrain records, reruns, ``--config`` and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from smoke_matrix import COMPARE, copy_store, matrix_fixture

from hpo_vidpred import budgets
from hpo_vidpred.cli import main
from hpo_vidpred.workflows.compare import plan_compare, run_compare
from hpo_vidpred.store.records import decode_frames, encode_frames
from hpo_vidpred.errors import HpoError
from hpo_vidpred.workflows.export import dump_export, export_study
from hpo_vidpred.store import open_storage

smoke = matrix_fixture()  # the smoke matrix, run once per session


@pytest.mark.slow
def test_each_retrain_is_tested_once_and_recorded(matrix: dict) -> None:
    url = matrix["url"]
    compare = optuna.load_study(study_name=COMPARE, storage=url)
    assert compare.user_attrs["kind"] == "compare"
    assert compare.user_attrs["spec"]["compare"] == {"arch": "autoencoder", "data": "mmnist",
                                                     "budget": "smoke"}
    strip = compare.user_attrs["test_sequences"]  # three test sequences that move
    frames = decode_frames(strip["frames"])
    assert frames.shape == (3, 4, 1, 16, 16) and len(set(strip["index"])) == 3  # 2 in + 2 out
    assert all(np.abs(np.diff(f, axis=0)).mean() > 0 for f in frames)
    for t in compare.trials:
        a = t.user_attrs
        assert t.state == TrialState.COMPLETE and t.value == a["test_mse"]
        for metric in ("mse", "mse_frame", "mae", "psnr", "ssim"):
            assert len(a[f"test_{metric}_per_step"]) == 2  # one per future step
        assert a["test_mse"] == pytest.approx(sum(a["test_mse_per_step"]) / 2)
        assert a["stop_reason"] == "completed" and a["epochs"] == 2  # full budget, no pruning
        assert a["n_params"] > 0 and a["step_ms"] > 0 and a["train_seconds"] > 0
        assert ("test_predictions" in a) == (a["seed"] == 0)
        if a["seed"] == 0:
            assert decode_frames(a["test_predictions"]).shape == (3, 2, 1, 16, 16)
        assert a["started"] <= a["finished"] and a["host"]  # when and where it trained
        assert Path(matrix["root"], a["checkpoint"]).is_file() or Path(a["checkpoint"]).is_file()
        if a["role"] == "fixed":  # the fixed role is `hpo fixed`'s trial with that seed
            study, _, number = a["source_trial"].split(" ")
            fixed = optuna.load_study(study_name=study, storage=url).trials[int(number)]
            assert fixed.user_attrs["train_spec"]["seed"] == a["seed"]
            assert a["n_params"] == {"convlstm": 537411, "stlstm": 773018}[a["cell"]]
        else:  # the optimized role: the study's best trial, retrained with this seed
            study = optuna.load_study(study_name=a["source_study"], storage=url)
            assert a["source"].startswith(f"study {study.study_name} trial "
                                          f"{study.best_trial.number} ")
            best_model = study.best_trial.user_attrs["model_spec"]
            assert a["model_spec"] == best_model and a["train_spec"]["seed"] == a["seed"]


@pytest.mark.slow
def test_config_file_retrains_exactly_that_configuration(matrix: dict, tmp_path: Path,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("HPO_MODELS_DIR", str(tmp_path / "models"))
    url = copy_store(matrix, tmp_path)
    store = open_storage(url)
    document = export_study(store, "autoencoder-mmnist-convlstm")
    (tmp_path / "best.yaml").write_text(dump_export(document))
    # The exported configuration is the one the comparison already retrained: nothing to do.
    plan = plan_compare(url, "autoencoder", "mmnist", cells=["convlstm"], seeds=2,
                        config=str(tmp_path / "best.yaml"))
    assert run_compare(plan, url, progress=False)["ran"] == 0
    # A third seed adds exactly the fixed and the optimized retrain of seed 2.
    assert main(["compare", "--arch", "autoencoder", "--data", "mmnist", "--cells", "convlstm",
                 "--seeds", "3", "--config", str(tmp_path / "best.yaml"), "--storage", url,
                 "--quiet"]) == 0
    trials = optuna.load_study(study_name=COMPARE, storage=url).trials
    new = [t.user_attrs for t in trials if t.user_attrs["seed"] == 2]
    assert sorted(a["role"] for a in new) == ["fixed", "optimized"]
    (optimized,) = [a for a in new if a["role"] == "optimized"]
    exported = document["configurations"][0]
    assert optimized["model_spec"] == exported["model_spec"]
    assert {k: v for k, v in optimized["train_spec"].items() if k not in ("seed", "device")} \
        == {k: v for k, v in exported["train_spec"].items() if k != "seed"}
    assert len(trials) == 10


def test_frames_survive_the_store_encoding() -> None:
    frames = torch.randint(0, 256, (3, 1, 5, 7), dtype=torch.uint8)
    decoded = decode_frames(encode_frames(frames))  # numpy float32 in [0, 1]
    assert decoded.dtype == np.float32 and decoded.shape == (3, 1, 5, 7)
    assert (np.round(decoded * 255).astype(np.uint8) == frames.numpy()).all()


def test_missing_studies_and_bad_numbers_are_one_line(capsys, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_storage(url)
    with pytest.raises(HpoError, match="no optimized configuration for autoencoder on mmnist"):
        plan_compare(url, "autoencoder", "mmnist")
    with pytest.raises(HpoError, match="no optimized stlstm configuration in study "
                                       "autoencoder-mmnist-stlstm or autoencoder-mmnist"):
        plan_compare(url, "autoencoder", "mmnist", cells=["stlstm"])
    with pytest.raises(HpoError, match="--seeds must be at least 1"):
        plan_compare(url, "autoencoder", "mmnist", seeds=0)
    assert main(["compare", "--arch", "autoencoder", "--data", "mmnist", "--cells", "gru",
                 "--storage", url]) == 2
    assert "unknown cell 'gru'" in capsys.readouterr().err
    assert optuna.get_all_study_names(url) == []  # nothing was created


@pytest.mark.slow
def test_another_budget_applies_the_sampled_values_to_that_budget(matrix: dict) -> None:
    plan = plan_compare(matrix["url"], "autoencoder", "mmnist", cells=["stlstm"], seeds=1,
                        budget="small")
    best = optuna.load_study(study_name="autoencoder-mmnist-stlstm",
                             storage=matrix["url"]).best_trial
    fixed, optimized = plan.retrains
    small = budgets.get("small")
    assert (plan.budget, plan.data.height, plan.data.n_in) == ("small", small.frame_height,
                                                               small.max_in)
    assert (optimized.train.epochs, optimized.train.steps_per_epoch) == \
        small.epochs_steps("mmnist")
    # the configuration as it trained at smoke (where batch_size was fixed at 4 and not sampled)
    trained = {**best.user_attrs["model_spec"]["config"], **best.user_attrs["train_spec"]}
    assert "batch_size" not in best.params and trained["batch_size"] == 4
    assert optimized.train.lr == best.params["lr"] == trained["lr"]
    assert optimized.train.batch_size == 4
    depth = best.params["depth"]
    assert optimized.model.config["depth"] == depth
    assert optimized.model.config["hidden"] == best.params["hidden"] == trained["hidden"]
    assert optimized.source.endswith("applied to budget small")
    assert fixed.model.config == {"depth": 2, "hidden": 32, "kernel": 3}  # the seed's, uncapped


def test_a_damaged_checkpoint_is_retrained_and_the_newest_good_one_reused(tmp_path: Path,
                                                                          capsys) -> None:
    """A fixed run's checkpoint that no longer loads is not reused (it was, forever); the
    retrain's newer checkpoint is what the next comparison reuses."""
    args = ["--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--quiet"]
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    assert main(["run", *args, "--cell", "convlstm", "--trials", "1", "--workers", "1",
                 "--search-space", str(space)]) == 0
    assert main(["compare", "--arch", "autoencoder", "--data", "mmnist", "--cells", "convlstm",
                 "--seeds", "1", "--quiet"]) == 0
    fixed = optuna.load_study(study_name="fixed-autoencoder-mmnist-convlstm",
                              storage="sqlite:///studies/hpo.db")
    first = Path(fixed.trials[0].user_attrs["checkpoint"])
    assert first.is_absolute() and first.is_file()  # not relative to the working directory
    first.write_bytes(b"not a checkpoint")

    def compare_again() -> str:
        optuna.delete_study(study_name=COMPARE, storage="sqlite:///studies/hpo.db")
        capsys.readouterr()
        assert main(["compare", "--arch", "autoencoder", "--data", "mmnist", "--cells",
                     "convlstm", "--seeds", "1"]) == 0
        return capsys.readouterr().err

    log = compare_again()
    assert "trial 0 not reused" in log and "training seed 0" in log
    fixed_trials = optuna.load_study(study_name="fixed-autoencoder-mmnist-convlstm",
                                     storage="sqlite:///studies/hpo.db").trials
    assert len(fixed_trials) == 2 and fixed_trials[1].state == TrialState.COMPLETE
    assert "reusing trial 1" in compare_again()
