"""What studies record: one spec check, readers, the trivial baselines' verdicts, and a store
written by version 0.1 that still opens, resumes and reports."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from hpo_vidpred.cli import main
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import DataSpec, ModelSpec, TrainSpec
from hpo_vidpred.store import open_storage
from hpo_vidpred.store.records import (
    config_id,
    judge,
    open_record,
    ratio_text,
    spec_differences,
    study_baselines,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-0.1.0"
BASELINES = {"split": "val", "black": {"mse": 0.02}, "copy_last": {"mse": 0.03},
             "mean_input": {"mse": 0.025}}


def test_judge_and_ratio_text_against_the_best_trivial_predictor() -> None:
    verdict = judge(0.01, BASELINES)
    assert verdict["best_trivial"] == "black"
    assert verdict["ratios"] == pytest.approx({"black": 0.5, "copy_last": 1 / 3,
                                               "mean_input": 0.4})
    assert verdict["skill"] == pytest.approx(0.5) and verdict["learned"] is True
    assert ratio_text(0.01, BASELINES) == "= 0.50x black, 0.33x copy-last"
    # within 10% of predicting black: not learned, and said so
    assert judge(0.0185, BASELINES)["learned"] is False
    assert "NOT LEARNED" in ratio_text(0.0185, BASELINES)
    assert judge(0.018, BASELINES)["learned"] is True  # exactly 10% better counts
    assert judge(0.01, None) == {"ratios": {}, "best_trivial": None, "skill": None,
                                 "learned": None}
    assert ratio_text(0.01, None) == ""


def test_fields_added_since_a_study_was_recorded_count_at_their_defaults() -> None:
    new = {"model": {"arch": "autoencoder", "forget_bias": 0.0}, "train": {"lr": 0.001}}
    old = {"model": {"arch": "autoencoder"}, "train": {"lr": 0.001}}
    assert spec_differences(old, new) == []
    assert spec_differences(old, {**new, "model": {"arch": "autoencoder", "forget_bias": 1.0}}) \
        == ["model.forget_bias: 0.0 -> 1.0"]
    assert spec_differences(old, {**new, "train": {"lr": 0.01}}) == ["train.lr: 0.001 -> 0.01"]


def test_config_ids_of_older_stores_stay_valid() -> None:
    model, train, data = ModelSpec(config={"depth": 1}), TrainSpec(), DataSpec()
    assert config_id(model, train, data) == config_id(model, TrainSpec(seed=5, device="cpu"),
                                                      DataSpec(root="elsewhere"))
    from dataclasses import replace

    assert config_id(replace(model, forget_bias=1.0), train, data) != \
        config_id(model, train, data)


def test_open_record_checks_the_spec_once(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    record = {"fixed": {"arch": "autoencoder"}, "train": {"lr": 0.001}}
    budget = {"budget": "smoke", "changes": []}
    assert open_record(storage, "s", "fixed", record, budget=budget, create=False) is None
    study = open_record(storage, "s", "fixed", record, budget=budget,
                        extra={"baselines": BASELINES})
    assert study.user_attrs["kind"] == "fixed" and study_baselines(study.user_attrs) == BASELINES
    assert open_record(storage, "s", "fixed", record, budget=budget).study_name == "s"
    with pytest.raises(HpoError, match=r"exists with a different spec \(train.lr: 0.001 -> 0.1\); "
                                       "do this"):
        open_record(storage, "s", "fixed", {**record, "train": {"lr": 0.1}}, budget=budget,
                    fix="do this")
    with pytest.raises(HpoError, match="was not made by 'hpo compare'"):
        open_record(storage, "s", "compare", record, budget=budget)


@pytest.mark.slow
def test_a_store_written_by_version_0_1_opens_resumes_and_reports(tmp_path: Path,
                                                                   monkeypatch, capsys) -> None:
    """tests/fixtures/store-0.1.0: a search study (3 trials), a pinned-cell study (2), the fixed
    run and a comparison, written by commit 873dcfe (hpo-vidpred 0.1.0) at the smoke budget."""
    for name in ("store.db", "space.yaml"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///store.db"
    assert main(["run", "--arch", "autoencoder", "--data", "mmnist", "--trials", "4",
                 "--budget", "smoke", "--workers", "1", "--storage", url, "--search-space",
                 "space.yaml", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4/4 finished trials" in out and "x black" in out  # baselines recorded on resume
    study = optuna.load_study(study_name="autoencoder-mmnist", storage=url)
    assert len(study.trials) == 4 and study.user_attrs["baselines"]["split"] == "val"
    # recorded before spaces were narrowed: it keeps sampling the space as written (batch 32 and
    # all), and what it shows is what trained
    assert "sampling_space" not in study.user_attrs
    assert study.trials[-1].distributions["batch_size"].choices == (4, 8, 16, 32)
    assert main(["compare", "--arch", "autoencoder", "--data", "mmnist", "--cells", "convlstm",
                 "--seeds", "1", "--storage", url, "--quiet"]) == 0
    assert "0 retrain(s) run now" in capsys.readouterr().out  # ids unchanged: nothing redone
    assert main(["export", "--study", "autoencoder-mmnist-convlstm", "--storage", url]) == 0
    exported = capsys.readouterr().out
    assert "format: hpo-vidpred-config/1" in exported
    best = optuna.load_study(study_name="autoencoder-mmnist-convlstm", storage=url).best_trial
    config = best.user_attrs["model_spec"]["config"]
    assert f"hidden: {config['hidden']}" in exported  # the trained width, whatever was sampled
    assert main(["report", "--storage", url, "--out", "rep"]) == 0
    tables = (tmp_path / "rep" / "tables.md").read_text()
    assert "mmnist / autoencoder: test split" in tables and "copy-last" in tables


def test_configurations_are_shown_as_trained_with_the_sampled_value_where_it_differed() -> None:
    """A study recorded before search spaces were narrowed to the budget capped values after
    sampling: every reader shows the trained value, the sampled one in brackets."""
    from optuna.distributions import FloatDistribution, IntDistribution

    from hpo_vidpred.store.records import params_text, sampled_differences, trained_params

    trial = optuna.trial.create_trial(
        params={"lr": 0.003, "depth": 2, "hidden": 60, "patch": 1, "width_2": 40},
        distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True),
                       "depth": IntDistribution(1, 3), "hidden": IntDistribution(8, 64),
                       "patch": IntDistribution(1, 4), "width_2": IntDistribution(8, 64)},
        value=0.01, user_attrs={
            "model_spec": {"cell": "convlstm", "config": {"depth": 2, "hidden": 16, "patch": 4,
                                                          "width": [8, 32]}},
            "train_spec": {"lr": 0.003, "batch_size": 16}})
    assert trained_params(trial) == {"lr": 0.003, "depth": 2, "hidden": 16, "patch": 4,
                                     "width_2": 32}
    assert sampled_differences(trial) == {"hidden": 60, "patch": 1, "width_2": 40}
    assert params_text(trial) == ("lr=0.003, depth=2, hidden=16 [sampled 60], patch=4 [sampled 1]"
                                  ", width_2=32 [sampled 40]")
    narrowed = optuna.trial.create_trial(params={"hidden": 16}, value=0.01,
                                         distributions={"hidden": IntDistribution(8, 16)},
                                         user_attrs={"model_spec": {"config": {"hidden": 16}}})
    assert params_text(narrowed) == "hidden=16" and sampled_differences(narrowed) == {}


def test_pruned_trials_left_paused_at_a_rung_are_counted_and_named() -> None:
    from optuna.trial import TrialState, create_trial

    from hpo_vidpred.store.records import PAUSED, STATUS, trial_counts
    from hpo_vidpred.study.summary import format_summary

    def pruned(status: str) -> optuna.trial.FrozenTrial:
        return create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.02},
                            system_attrs={STATUS: status})

    trials = [create_trial(value=0.01), pruned(PAUSED), pruned(PAUSED), pruned("training")]
    counts = trial_counts(trials)
    assert (counts["complete"], counts["pruned"], counts["unpromoted"]) == (1, 3, 2)
    summary = {"study": "s", "storage": "sqlite:///s.db", "target": 4, "trials": counts,
               "best": None, "failures": [], "seconds": 1.0, "ran_this_run": 4, "notes": []}
    assert "3 pruned (2 of them paused at a rung and not promoted), 0 failed" in \
        format_summary(summary)
    assert "not promoted" not in format_summary({**summary, "trials": trial_counts(trials[:1])})
