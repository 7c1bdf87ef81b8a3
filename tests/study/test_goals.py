"""Multi-objective studies: both values stored, the Pareto front in the summary, report and export
(--pick), pruning on the validation-MSE curve where Optuna cannot prune."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo_vidpred.cli import main
from hpo_vidpred.errors import HpoError
from hpo_vidpred.study.goals import Guard, choose, knee
from hpo_vidpred.store.records import pareto_front

SPACE = "params:\n  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n"
RUN = ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--workers", "1",
       "--search-space", "space.yaml"]
BASELINES = {"split": "val", "black": {"mse": 0.03}, "copy_last": {"mse": 0.05},
             "mean_input": {"mse": 0.04}}


def _study(points: list[list[float]]) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for values in points:
        study.add_trial(create_trial(values=values, params={"lr": 0.01}, user_attrs={
            "model_spec": {"cell": "convlstm"}, "train_spec": {}},
            distributions={"lr": FloatDistribution(1e-3, 1e-1)}))
    return study


def test_the_front_is_the_non_dominated_trials_and_pick_chooses_by_rule() -> None:
    # (val_mse, ms_per_step): 0 and 1 and 3 are non-dominated, 2 is dominated by 1
    study = _study([[0.010, 100.0], [0.012, 40.0], [0.013, 50.0], [0.020, 10.0]])
    front = pareto_front(study)
    assert [t.number for t in front] == [0, 1, 3]  # best val_mse first
    assert knee(front, ["minimize", "minimize"]).number == 1  # nearest the ideal corner
    goals = ("val_mse", "ms_per_step")
    directions = ["minimize", "minimize"]
    assert choose(front, goals, directions, "fastest-within:5%").number == 0
    assert choose(front, goals, directions, "fastest-within:25%").number == 1
    with pytest.raises(HpoError, match="use knee or fastest-within:P%"):
        choose(front, goals, directions, "cheapest")
    with pytest.raises(HpoError, match="needs ms_per_step"):
        choose(front, ("val_mse", "params"), directions, "fastest-within:5%")


def test_multi_objective_trials_are_pruned_on_the_median_of_the_val_mse_curves() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for i in range(5):  # five complete trials whose epoch-1 val_mse is 0.010 .. 0.014
        study.add_trial(create_trial(values=[0.01 + 0.001 * i, 1.0],
                                     user_attrs={"val_mse_curve": [0.01 + 0.001 * i, 0.009]}))
    worse, better = study.ask(), study.ask()
    guard = Guard(worse, BASELINES, epochs=4, multi=True, prune=True)
    guard.report(0.0125, 1)
    assert guard.should_prune() and worse.user_attrs["val_mse_curve"] == [0.0125]
    guard = Guard(better, BASELINES, epochs=4, multi=True, prune=True)
    guard.report(0.011, 1)
    assert not guard.should_prune()
    guard.report(0.031, 2)  # no better than predicting black after two epochs
    assert guard.should_prune() and guard.tripped
    off = Guard(study.ask(), BASELINES, epochs=4, multi=True, prune=False)  # --pruner none
    off.report(0.5, 2)
    assert not off.should_prune()


def test_a_multi_objective_study_end_to_end(tmp_path: Path, capsys) -> None:
    Path("space.yaml").write_text(SPACE)
    assert main([*RUN, "--trials", "4", "--objectives", "val_mse,ms_per_step,params", "--quiet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name="autoencoder-mmnist", storage="sqlite:///studies/hpo.db")
    assert [d.name for d in study.directions] == ["MINIMIZE"] * 3
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.values) == 3 for t in complete)
    for t in complete:
        assert t.values[0] == t.user_attrs["val_mse"] and t.values[1] == t.user_attrs["step_ms"]
        assert t.values[2] == t.user_attrs["n_params"]
        assert t.user_attrs["val_mse_curve"][t.user_attrs["best_epoch"] - 1] == t.values[0]
    # the front, read off the trials here: no complete trial dominated by another
    def dominated(a, b) -> bool:
        return all(x >= y for x, y in zip(a.values, b.values)) and a.values != b.values
    front = sorted((t for t in complete if not any(dominated(t, o) for o in complete)),
                   key=lambda t: t.values[0])
    assert [e["number"] for e in summary["front"]] == [t.number for t in front]
    assert summary["objectives"] == ["val_mse", "ms_per_step", "params"]
    assert main(["export", "--study", "autoencoder-mmnist", "--pick", "knee", "--format",
                 "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    chosen = knee(front, ["minimize"] * 3)
    assert exported["pick"] == "knee" and [c["trial"] for c in exported["configurations"]] \
        == [chosen.number]
    assert main(["export", "--study", "autoencoder-mmnist", "--top", "0"]) == 2  # not ignored
    assert capsys.readouterr().err == "error: --top must be at least 1\n"
    assert main(["report", "--out", "rep"]) == 0
    tables = Path("rep/tables.md").read_text()
    assert "Pareto front of val_mse, ms_per_step, params" in tables
    assert "Pareto front" in Path("rep/study-autoencoder-mmnist.html").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--objectives", "ms_per_step,val_mse"], "must start with val_mse"),
    (["--objectives", "val_ssim"], "must start with val_mse"),
    (["--objectives", "val_mse,val_mse"], "distinct names"),
    (["--objectives", ""], "--objectives needs at least one name, e.g. val_mse"),
    (["--objectives", "val_mse,speed"], "unknown objective 'speed'"),
    (["--objectives", "val_mse,params", "--sampler", "cmaes"], "optimizes one objective"),
])
def test_objectives_a_study_cannot_have_are_one_line(argv, message, capsys) -> None:
    Path("space.yaml").write_text(SPACE)
    assert main([*RUN, "--trials", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not Path("studies/hpo.db").exists()


def test_pick_needs_a_front(capsys) -> None:
    Path("space.yaml").write_text(SPACE)
    assert main([*RUN, "--trials", "1", "--quiet"]) == 0
    assert main(["export", "--study", "autoencoder-mmnist", "--pick", "knee"]) == 2
    assert "has one objective" in capsys.readouterr().err


def test_the_report_draws_each_cells_front_in_one_figure() -> None:
    """One multi-objective study per cell: the report's index answers "what does each cell cost"
    with both fronts in one figure, each the non-dominated trials of its cell."""
    import re

    from hpo_vidpred.report.figures import _non_dominated

    Path("space.yaml").write_text(SPACE)
    for cell in ("convlstm", "stlstm"):
        assert main([*RUN, "--trials", "3", "--cell", cell, "--objectives", "val_mse,params",
                     "--quiet"]) == 0
    assert main(["report", "--out", "rep"]) == 0
    index = Path("rep/index.html").read_text()
    assert "Quality against cost per cell" in index
    names = re.findall(r'"name":"(\w+): front \((\d+)\)"', index)
    assert sorted(n for n, _ in names) == ["convlstm", "stlstm"]
    for cell, count in names:
        study = optuna.load_study(study_name=f"autoencoder-mmnist-{cell}",
                                  storage="sqlite:///studies/hpo.db")
        assert int(count) == len(pareto_front(study)) >= 1
    assert "black" in index and "copy-last" in index  # the trivial predictors drawn
    assert "Fixed vs optimized" not in index  # no comparison in this store: no warning about one
    points = [(1.0, 5.0, "a"), (2.0, 3.0, "b"), (3.0, 4.0, "c"), (0.5, 9.0, "d")]
    assert [p[2] for p in _non_dominated(points, (1, 1))] == ["d", "a", "b"]
    assert [p[2] for p in _non_dominated(points, (1, -1))] == ["d"]  # second maximised
