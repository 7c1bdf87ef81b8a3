"""Studies with real training (smoke budget): records, resume, pinned cells, spec refusal,
pruning, divergence, the optuna CLI, and ``hpo run`` itself."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from objectives import Stub
from PIL import Image

from hpo_vidpred import cli
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import RunSpec, StudySpec
from hpo_vidpred.store import open_artifact_store, open_storage
from hpo_vidpred.study.strategy import PRUNERS, SAMPLERS
from hpo_vidpred.study.objective import Outcome
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.study.pool import run

SQLITE = "sqlite:///studies/hpo.db"
TINY = ("fixed: {depth: 1, hidden: 4, kernel: 3, batch_size: 4}\n"
        "params:\n"
        "  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n")


def _space(text: str, name: str = "space.yaml") -> str:
    Path(name).write_text(text)
    return name


def _plan(**kw):
    if "search_space" not in kw:
        kw["search_space"] = _space(TINY + "  cell: {type: categorical, choices: "
                                           "[convlstm, stlstm]}\n", "default.yaml")
    return plan_study(StudySpec(**{"budget": "smoke", **kw}))


def _study(name: str, url: str = SQLITE) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def test_trials_record_values_attributes_and_a_prediction_strip() -> None:
    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=3, progress=False))
    assert summary["trials"]["finished"] == 3 and summary["best"]["value"] > 0
    study = _study(plan.name)
    spec = study.user_attrs["spec"]
    assert spec["study"]["budget"] == "smoke" and spec["data"]["height"] == 16
    assert spec["search_space"]["params"]["lr"]["log"] is True
    assert study.user_attrs["package_version"] and study.user_attrs["git_commit"]
    store = open_artifact_store(SQLITE)
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        epochs = trial.user_attrs["epochs"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))  # val_mse/epoch
        for key in ("n_params", "stop_reason", "best_epoch", "step_ms", "train_seconds",
                    "val_ssim", "val_psnr", "device", "model_spec", "train_spec"):
            assert key in trial.user_attrs, key
        assert trial.user_attrs["model_spec"]["cell"] == trial.params["cell"]
        assert trial.user_attrs["train_spec"]["lr"] == trial.params["lr"]
        (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        with store.open_reader(meta.artifact_id) as reader:
            image = Image.open(io.BytesIO(reader.read()))
        assert image.format == "PNG" and image.height == 3 * (48 + 2)  # input, truth, predicted
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["stop_reason"] == "pruned" for t in pruned)


def test_resume_adds_trials_and_keeps_the_old_ones() -> None:
    plan = _plan()
    run(plan, RunSpec(storage_url=SQLITE, trials=2, progress=False))
    first = [(t.params, t.value) for t in _study(plan.name).trials]
    summary = run(_plan(), RunSpec(storage_url=SQLITE, trials=4, progress=False))
    trials = _study(plan.name).trials
    assert summary["ran_this_run"] == 2 and len(trials) == 4
    assert [(t.params, t.value) for t in trials[:2]] == first
    assert trials[2].params != trials[0].params  # the resumed sampler does not repeat itself
    again = run(_plan(), RunSpec(storage_url=SQLITE, trials=4, progress=False))
    assert again["ran_this_run"] == 0 and "nothing to run" in again["notes"][0]


def test_a_pinned_cell_is_never_sampled() -> None:
    plan = _plan(cell="stlstm")
    assert plan.name == "autoencoder-mmnist-stlstm"
    run(plan, RunSpec(storage_url=SQLITE, trials=3, progress=False))
    for trial in _study(plan.name).trials:
        assert "cell" not in trial.params
        assert trial.user_attrs["model_spec"]["cell"] == "stlstm"


def test_a_changed_spec_is_refused_and_nothing_is_lost() -> None:
    plan = _plan()
    run(plan, RunSpec(storage_url=SQLITE, trials=1, progress=False))
    wider = _space(TINY.replace("3.0e-2", "1.0e-1") + "  cell: {type: categorical, choices: "
                                                     "[convlstm, stlstm]}\n", "wider.yaml")
    with pytest.raises(HpoError) as info:
        run(_plan(search_space=wider), RunSpec(storage_url=SQLITE, trials=2, progress=False))
    text = str(info.value)
    assert "study 'autoencoder-mmnist' exists with a different spec" in text
    assert "search_space.params.lr.high: 0.03 -> 0.1" in text and "--study NAME" in text
    with pytest.raises(HpoError, match=r"study\.budget: smoke -> small"):
        run(plan_study(StudySpec(budget="small", search_space=plan.spec.search_space)),
            RunSpec(storage_url=SQLITE, trials=2, progress=False))
    assert len(_study(plan.name).trials) == 1
    # the way out the message names
    other = run(_plan(search_space=wider, name="wider"),
                RunSpec(storage_url=SQLITE, trials=1, progress=False))
    assert other["trials"]["finished"] == 1


def test_a_diverging_trial_is_recorded_with_its_reason_and_the_study_goes_on() -> None:
    # A float32 loss times 1e39 overflows: a non-finite loss, which train.py calls diverged.
    space = _space(TINY + "  frame_loss_weight: {type: categorical, choices: [1.0, 1.0e39]}\n")
    plan = _plan(search_space=space, sampler="random", pruner="none")
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=5, progress=False))
    trials = _study(plan.name).trials
    diverged = [t for t in trials if t.params["frame_loss_weight"] > 1]
    assert diverged and len(diverged) < len(trials)
    for t in diverged:
        assert t.state == TrialState.FAIL and t.user_attrs["stop_reason"] == "diverged"
        assert t.user_attrs["fail_reason"] == "diverged: non-finite loss in epoch 1"
    assert all(t.state == TrialState.COMPLETE for t in trials if t not in diverged)
    assert summary["trials"]["finished"] == 5
    assert {f["reason"] for f in summary["failures"]} == {"diverged: non-finite loss in epoch 1"}


class Curve(Stub):
    """Cheap objective: lr above 0.1 is a useless region whose curve never falls."""

    def __call__(self, trial, plan, device, artifact_store, eta=None) -> Outcome:
        lr = plan.space.sample(trial)["lr"]
        for epoch in range(1, plan.train.epochs + 1):
            value = 1.0 if lr > 0.1 else 0.5 * lr / epoch
            trial.report(value, epoch)
            if trial.should_prune():
                return Outcome(TrialState.PRUNED, reason=f"pruned after epoch {epoch}")
        return Outcome(TrialState.COMPLETE, value=value)


@pytest.mark.parametrize("pruner", sorted(PRUNERS.names()))
def test_a_pruner_prunes_the_useless_region(pruner: str) -> None:
    space = _space("params:\n  lr: {type: float, low: 1.0e-4, high: 1.0, log: true}\n")
    plan = _plan(search_space=space, sampler="random", pruner=pruner)
    run(plan, RunSpec(storage_url=SQLITE, trials=16, progress=False), objective=Curve())
    trials = _study(plan.name).trials
    useless = [t for t in trials if t.params["lr"] > 0.1]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if pruner == "none":
        assert not pruned
        return
    late = [t for t in useless if t.number >= 6]  # after the median pruner's 5 startup trials
    assert late and all(t.state == TrialState.PRUNED for t in late)
    assert min(t.value for t in trials if t.state == TrialState.COMPLETE) < 0.1


@pytest.mark.parametrize("sampler", sorted(SAMPLERS.names()))
def test_every_sampler_runs_a_conditional_space(sampler: str) -> None:
    space = _space("params:\n"
                   "  depth: {type: int, low: 1, high: 2}\n"
                   "  hidden: {type: int, low: 2, high: 8, per_layer: depth}\n"
                   "  cell: {type: categorical, choices: [convlstm, stlstm]}\n"
                   "  lr: {type: float, low: 1.0e-4, high: 1.0, log: true}\n")
    plan = _plan(search_space=space, sampler=sampler, pruner="none")
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=12, progress=False), objective=Curve())
    assert summary["trials"]["complete"] == 12
    for t in _study(plan.name).trials:
        assert len([k for k in t.params if k.startswith("hidden_")]) == t.params["depth"]


def test_bad_names_are_one_line_errors_before_anything_runs() -> None:
    for kw, message in [({"arch": "unet"}, "unknown architecture 'unet'"),
                        ({"sampler": "grid"}, "unknown sampler 'grid'; choose one of: tpe"),
                        ({"pruner": "wilcoxon"}, "unknown pruner 'wilcoxon'"),
                        ({"cell": "gru"}, "unknown cell 'gru'"),
                        ({"budget": "huge"}, "unknown budget 'huge'"),
                        ({"data": "ucf"}, "unknown dataset 'ucf'")]:
        with pytest.raises(HpoError, match=message):
            plan_study(StudySpec(**kw))
    assert not Path("studies").exists()


def test_hpo_run_prints_a_json_summary(capsys) -> None:
    space = _space(TINY)
    code = cli.main(["run", "--arch", "autoencoder", "--data", "mmnist", "--trials", "2",
                     "--budget", "smoke", "--search-space", space, "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"] == "autoencoder-mmnist" and summary["trials"]["finished"] == 2
    assert summary["storage"] == SQLITE and math.isfinite(summary["best"]["value"])
    # no --workers: the device's default (one single-threaded worker per core, at most 4)
    assert summary["workers"] == min(os.cpu_count() or 1, 4) and summary["devices"] == ["cpu"]
    assert Path("studies/hpo.db").is_file() and Path("studies/artifacts").is_dir()


def test_missing_data_is_one_line_before_any_study_exists(capsys) -> None:
    code = cli.main(["run", "--arch", "autoencoder", "--data", "kth", "--budget", "smoke",
                     "--data-dir", "nowhere"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: KTH folder") and err.count("\n") == 1
    assert optuna.get_all_study_names(storage=open_storage(SQLITE)) == []


def test_hpo_run_with_an_unreachable_store_fails_fast(capsys) -> None:
    started = time.monotonic()
    code = cli.main(["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke",
                     "--storage", "postgresql://me:pw@127.0.0.1:1/hpo"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 10
    assert err.startswith("error: cannot reach the study store postgresql+psycopg://me:***@")
    assert "pw@" not in err and err.count("\n") == 1


def test_the_optuna_command_line_reads_the_study() -> None:
    plan = _plan()
    run(plan, RunSpec(storage_url=SQLITE, trials=2, progress=False))
    optuna_cli = Path(sys.executable).parent / "optuna"
    out = subprocess.run([str(optuna_cli), "trials", "--study-name", plan.name, "--storage",
                          SQLITE, "-f", "json"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [row["number"] for row in rows] == [0, 1]
    assert {row["state"] for row in rows} <= {"COMPLETE", "PRUNED"}


BASELINES = {"split": "val", "black": {"mse": 0.02}, "copy_last": {"mse": 0.03},
             "mean_input": {"mse": 0.025}}


class Fixed(Stub):
    """Completes every trial with ``value``; records fixed baselines; announces a long run."""

    def __init__(self, value: float, eta_s: float = 0.0) -> None:
        self.value, self.eta_s = value, eta_s

    def baselines(self, plan, device) -> dict:
        return BASELINES

    def __call__(self, trial, plan, device, artifact_store, eta=None) -> Outcome:
        plan.space.sample(trial)
        if self.eta_s and eta is not None:
            eta(self.eta_s)
        return Outcome(TrialState.COMPLETE, value=self.value)


@pytest.mark.parametrize("value,learned", [(0.01, True), (0.019, False)])
def test_the_summary_sets_the_best_beside_the_trivial_predictors(value, learned) -> None:
    from hpo_vidpred.study.summary import format_summary

    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=2,
                                progress=False), objective=Fixed(value))
    assert _study(plan.name).user_attrs["baselines"] == BASELINES
    assert summary["baselines"] == {"black": 0.02, "copy_last": 0.03, "mean_input": 0.025}
    text = format_summary(summary)
    ratios = f"{value / 0.02:.2f}x black, {value / 0.03:.2f}x copy-last"
    assert f"best val_mse {value:.6g} = {ratios}" in text
    assert ("NOT LEARNED" in text) is not learned


def test_a_long_trial_is_announced_once_with_budget_and_device() -> None:
    plan = _plan()
    summary = run(plan, RunSpec(storage_url=SQLITE, trials=3,
                                progress=False), objective=Fixed(0.01, eta_s=8 * 3600))
    assert summary["notes"] == ["note: about 8.0 h per trial at budget smoke on cpu; --budget "
                                "small is the CPU demo"]


def test_training_projects_its_length_after_a_few_steps(monkeypatch) -> None:
    from hpo_vidpred import archs, train
    from hpo_vidpred import data as datasets
    from hpo_vidpred.specs import ModelSpec, TrainSpec

    data = datasets.load(datasets.default_spec("mmnist", height=16, width=16, n_in=2, n_out=2,
                                               val_size=4), "cpu")
    spec = TrainSpec(epochs=2, steps_per_epoch=6, batch_size=2, device="cpu")
    model = archs.create_model(ModelSpec(config={"depth": 1, "hidden": 2}))
    calls: list[float] = []
    train.train_and_evaluate(model, data, spec, eta=calls.append)
    assert calls == []  # a run of seconds is not announced
    monkeypatch.setattr(train, "ETA_NOTICE_S", 0.0)
    train.train_and_evaluate(model, data, spec, eta=calls.append)
    assert len(calls) == 1 and calls[0] > 0  # once, with all 12 steps projected


def test_a_trial_no_better_than_a_trivial_predictor_is_pruned_after_two_epochs() -> None:
    """Baselines no network reaches in a few steps (MSE 1e-6): every trial stops at epoch 2 of 3,
    said so; with --pruner none the same trials run to the end."""
    from hpo_vidpred import budgets
    from hpo_vidpred.study.objective import TrainObjective

    budget = budgets.Budget(name="smoke3", summary="3 epochs", schedule={"*": (3, 2)},
                            frame_height=16, max_in=2, max_out=2, max_batch=4, val_size=4,
                            max_width=8)
    budgets.BUDGETS.register("smoke3")(budget)

    class Unbeatable(TrainObjective):
        def baselines(self, plan, device) -> dict:
            return {"split": "val", **{k: {"mse": 1e-6} for k in ("black", "copy_last",
                                                                   "mean_input")}}
    try:
        for pruner, state in (("median", TrialState.PRUNED), ("none", TrialState.COMPLETE)):
            plan = _plan(budget="smoke3", pruner=pruner, name=f"guard-{pruner}")
            summary = run(plan, RunSpec(storage_url=SQLITE, trials=2,
                                        progress=False), objective=Unbeatable())
            assert summary["trials"]["finished"] == 2
            for t in _study(plan.name).trials:
                assert t.state == state
                assert t.user_attrs["epochs"] == (2 if pruner == "median" else 3)
    finally:
        budgets.BUDGETS._items.pop("smoke3")
