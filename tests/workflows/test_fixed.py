"""``hpo fixed`` end to end on CPU: the seed's autoencoder at the smoke budget, in a store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from smoke_matrix import stop_when, trials_in

from hpo_vidpred import archs
from hpo_vidpred.cli import main
from hpo_vidpred.errors import HpoError
from hpo_vidpred.workflows import fixed as fixed_job
from hpo_vidpred.workflows.fixed import fixed_params, plan_fixed, run_fixed
from hpo_vidpred.store import lifecycle

STUDY = "fixed-autoencoder-mmnist-convlstm"


def test_fixed_smoke_run_is_recorded_as_one_complete_trial(capsys, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'store.db'}"
    code = main(["fixed", "--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm",
                 "--budget", "smoke", "--storage", storage, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "epoch 2/2" in err and "ms/step" in err  # the progress bar
    summary = json.loads(out)
    assert summary["study"] == STUDY and summary["state"] == "COMPLETE"
    assert summary["n_params"] == 537411  # the seed's count, untouched by the budget

    study = optuna.load_study(study_name=STUDY, storage=storage)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == pytest.approx(summary["best_val_mse"])
    assert trial.value == min(trial.intermediate_values.values())
    assert sorted(trial.intermediate_values) == [1, 2]
    assert trial.params == {"cell": "convlstm", "peephole": "conv", "lr": 1e-3, "batch_size": 4,
                            "schedule": "step_half", "depth": 2, "hidden": 32, "kernel": 3}
    attrs = trial.user_attrs
    assert attrs["n_params"] == 537411 and attrs["stop_reason"] == "completed"
    assert attrs["best_epoch"] in (1, 2) and attrs["epochs"] == 2 and attrs["step_ms"] > 0
    assert attrs["model_spec"]["config"] == {"depth": 2, "hidden": 32, "kernel": 3}
    spec = study.user_attrs["spec"]
    assert spec["fixed"]["budget"] == "smoke"
    assert spec["data"]["height"] == 16 and spec["train"]["steps_per_epoch"] == 3
    assert "data.height: 64 -> 16" in study.user_attrs["budget"]["changes"]

    # The best weights are on disk and rebuild the same network.
    checkpoint = torch.load(attrs["checkpoint"], weights_only=True)
    assert checkpoint["model_spec"]["arch"] == "autoencoder"
    assert checkpoint["result"]["best_val_mse"] == pytest.approx(trial.value)

    # Another budget under the same name is refused before anything trains.
    with pytest.raises(HpoError, match=r"different spec \(fixed.budget: smoke -> small"):
        run_fixed(plan_fixed("autoencoder", "mmnist", "convlstm", "small"), storage)
    assert len(optuna.load_study(study_name=STUDY, storage=storage).trials) == 1


def test_fixed_plan_is_the_seeds_configuration() -> None:
    plan = plan_fixed("prednet", "kth", "stlstm", "seed", seed=3)
    assert plan.study_name == "fixed-prednet-kth-stlstm"
    assert plan.model == archs.fixed_spec("prednet", "kth", "stlstm")
    assert (plan.train.lr, plan.train.schedule, plan.train.seed) == (1e-3, "step_half", 3)
    assert (plan.train.epochs, plan.train.steps_per_epoch) == (20, 500)
    assert fixed_params(plan.model, plan.train)["depth"] == 3
    assert "hidden_1" in fixed_params(plan.model.__class__(config={"hidden": (8, 16)}), plan.train)


@pytest.mark.parametrize("args,message", [
    (["--arch", "lstm", "--data", "mmnist", "--cell", "convlstm"],
     "unknown architecture 'lstm'; choose one of: autoencoder"),
    (["--arch", "autoencoder", "--data", "ucf", "--cell", "convlstm"], "unknown dataset 'ucf'"),
    (["--arch", "autoencoder", "--data", "mmnist", "--cell", "gru"], "unknown cell 'gru'"),
    (["--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm", "--budget", "x"],
     "unknown budget 'x'"),
    (["--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm", "--config", "a.yaml"],
     "file not found: a.yaml"),
])
def test_bad_input_is_one_line_and_stores_nothing(capsys, args, message) -> None:
    assert main(["fixed", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not Path("studies").exists()


def test_missing_data_is_one_line_and_leaves_no_study(capsys, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'store.db'}"
    code = main(["fixed", "--arch", "autoencoder", "--data", "kth", "--cell", "convlstm",
                 "--budget", "smoke", "--storage", storage, "--data-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "KTH" in err and err.count("\n") == 1
    assert optuna.get_all_study_names(storage) == []


FIXED_ARGS = [sys.executable, "-m", "hpo_vidpred.cli", "fixed", "--arch", "autoencoder",
              "--data", "mmnist", "--cell", "convlstm", "--budget", "smoke", "--quiet"]


def test_sigterm_mid_training_fails_the_trial_and_a_rerun_trains_it(tmp_path: Path) -> None:
    """SIGTERM (a batch system's time limit) exited 143 and left the trial RUNNING for good:
    now it is FAIL ("interrupted"), the run says so in one line, and the rerun trains once."""
    db = tmp_path / "store.db"
    args = [*FIXED_ARGS, "--storage", f"sqlite:///{db}"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    _, err = stop_when(first, lambda: trials_in(db, STUDY, "RUNNING") >= 1)
    assert first.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted; everything finished so far is stored"
    (stopped,) = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}").trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == "interrupted"
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_fixed_trial_whose_process_died_is_failed_by_the_next_run(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """kill -9 leaves a fixed trial RUNNING; it beats now, so the next run of the study finds it
    stale after the grace period and fails it (not re-queued: that run asks anew)."""
    monkeypatch.setattr(fixed_job, "HEARTBEAT_S", 1)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    plan = plan_fixed("autoencoder", "mmnist", "convlstm", "smoke", device="cpu")
    study = plan.open(fixed_job.open_fixed_store(url), create=True)
    params = fixed_params(plan.model, plan.train)
    lifecycle.ask(study, {k: CategoricalDistribution([v]) for k, v in params.items()})
    time.sleep(3.5)  # its one heartbeat is older than the grace period (2 s) now
    run_fixed(plan, url, progress=False)
    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
