"""Learning-curve tables (benchmarks/lc_table.py): a recording made with `hpo run --sampler
sobol` exports to one CSV, an import on another store continues it with exactly the
configurations the first store would have drawn next, and a configuration left unfinished at the
export runs again there."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo_vidpred.cli import main
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.study.sobol import SobolSampler
from hpo_vidpred.specs import StudySpec
from hpo_vidpred.store.lifecycle import fail_and_requeue

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RUN = ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--sampler",
       "sobol", "--pruner", "none", "--epochs", "2", "--record-test", "--workers", "1",
       "--study", "lc", "--quiet"]


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("lc_table", BENCHMARKS / "lc_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params(url: str) -> list[dict]:
    return [t.params for t in optuna.load_study(study_name="lc", storage=url).trials
            if t.state == TrialState.COMPLETE]


def test_a_table_exports_imports_and_continues_the_same_sequence(tmp_path: Path) -> None:
    lc = _module()
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    assert main([*RUN, "--trials", "3", "--storage", first]) == 0
    # a fourth configuration whose worker stopped before it finished
    plan = plan_study(StudySpec(arch="autoencoder", data="mmnist", budget="smoke",
                                sampler="sobol", pruner="none", epochs=2, record_test=True,
                                name="lc"))
    study = optuna.load_study(study_name="lc", storage=first,
                              sampler=SobolSampler(plan.sample_space.dimensions()))
    running = study.ask()
    plan.sample_space.sample(running)

    lc.export(first, ["lc"], tmp_path / "table" / "t", command="hpo run ...")
    rows = list(csv.DictReader(open(tmp_path / "table" / "t.csv")))
    assert [(r["index"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE"),
                                                        ("2", "COMPLETE"), ("3", "RUNNING")]
    assert all(r["val_mse_2"] and r["test_mse"] and r["train_s_1"] for r in rows[:3])
    card = lc.read_card(tmp_path / "table" / "t.csv")
    assert card["epochs"] == 2 and card["studies"][0]["name"] == "lc"
    assert card["baselines"]["black"]["mse"] > 0  # the trivial predictors, kept with the table

    assert lc.import_table(tmp_path / "table" / "t.csv", second) == {"lc": 4}
    imported = optuna.load_study(study_name="lc", storage=second)
    waiting = [t for t in imported.trials if t.state == TrialState.WAITING]
    assert [t.params for t in waiting] == [running.params]  # queued to run again
    original = optuna.load_study(study_name="lc", storage=first).trials
    order = [list(optuna.load_study(study_name="lc", storage=url).user_attrs["sampling_space"]
                  ["params"]) for url in (first, second)]
    assert order[0] == order[1]  # the file's order: the Sobol dimensions and the table's columns
    assert imported.user_attrs["baselines"] == card["baselines"]  # a re-export keeps them
    again = lc.export(second, ["lc"], tmp_path / "again" / "t", command="hpo run ...")
    assert again["baselines"] == card["baselines"] and again["first_start"] == card["first_start"]
    for got, want in zip(imported.trials[:3], original[:3]):
        assert got.params == want.params and got.value == want.value
        assert got.intermediate_values == want.intermediate_values

    # both stores continue: the unfinished configuration, then Sobol points 4 and 5
    fail_and_requeue(study, running, "its worker stopped")  # what a worker's retry does
    assert main([*RUN, "--trials", "6", "--storage", first]) == 0
    assert main([*RUN, "--trials", "6", "--storage", second]) == 0
    assert _params(first) == _params(second) and len(_params(second)) == 6

    summary = lc.summary(tmp_path / "table" / "t.csv")
    assert summary["complete"] == 3 and summary["spearman_to_final"][-1] == 1.0


def test_a_table_without_its_card_is_one_line(tmp_path: Path) -> None:
    import pytest

    table = tmp_path / "t.csv"
    table.write_text("study,seed,index\n")
    with pytest.raises(SystemExit, match=r"^error: no card .*t\.md beside the table .*t\.csv; "):
        _module().read_card(table)


def test_the_attempt_of_a_stopped_worker_is_marked_and_left_out_of_the_summary(
        tmp_path: Path) -> None:
    module = _module()
    rows = [{"index": 0, "state": "COMPLETE", "reason": "completed", "lr": "0.1", "val_mse_1": "1"},
            {"index": 1, "state": "FAIL", "reason": "", "lr": "0.2", "val_mse_1": ""},
            {"index": 2, "state": "COMPLETE", "reason": "completed", "lr": "0.2", "val_mse_1": "2"},
            {"index": 3, "state": "FAIL", "reason": "diverged", "lr": "0.3", "val_mse_1": ""}]
    marked = module._mark_retried([dict(r) for r in rows], ["lr"])
    assert marked[1]["reason"] == f"{module.RETRIED}; index 2 trained it again"
    assert [r["reason"] for i, r in enumerate(marked) if i != 1] == ["completed", "completed",
                                                                      "diverged"]


def test_the_summary_sets_each_seed_repeat_against_the_main_study(tmp_path: Path) -> None:
    """Seed noise on the configurations the main study and each repeat both trained: a
    configuration that learned with one seed and not with the other shows in the spread and
    the rank correlation; a retried attempt is left out."""
    import json

    finals = {"main": [0.010, 0.012, 0.018, 0.014], "rep": [0.0101, 0.0121, 0.0085, None]}
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["study", "index", "state", "reason", "val_mse_1"])
        writer.writeheader()
        for study, values in finals.items():
            for index, value in enumerate(values):
                writer.writerow({"study": study, "index": index, "state": "COMPLETE" if value
                                 else "FAIL", "reason": "" if value else _module().RETRIED,
                                 "val_mse_1": value or ""})
    card = {"epochs": 1, "studies": [{"name": "main"}, {"name": "rep"}]}
    (tmp_path / "t.md").write_text(f"```json\n{json.dumps(card)}\n```\n")
    (noise,) = _module().summary(tmp_path / "t.csv")["noise"]
    assert noise["study"] == "rep" and noise["configurations"] == 3  # index 3: main only
    assert noise["median_cv_final"] < 0.01 and noise["max_cv_final"] > 0.5
    assert noise["spearman_to_main"] == -0.5  # ranks 1, 2, 3 against 2, 3, 1


def test_an_imported_attempt_of_a_stopped_worker_does_not_count_towards_trials(
        tmp_path: Path) -> None:
    """As in the store it came from, the attempt that another index trained again is its retry
    (a table imported after each machine change would otherwise lose a configuration per
    stopped attempt)."""
    from hpo_vidpred.store.records import trial_counts

    lc = _module()
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    assert main([*RUN, "--trials", "3", "--storage", first]) == 0
    lc.export(first, ["lc"], tmp_path / "t", command="hpo run ...")
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    rows[1].update(state="FAIL", value="", reason=f"{lc.RETRIED}; index 2 trained it again",
                   **{k: "" for k in rows[1] if k.startswith(("val_", "train_s_", "val_s_"))})
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert lc.import_table(tmp_path / "t.csv", second) == {"lc": 3}
    trials = optuna.load_study(study_name="lc", storage=second).trials
    assert trials[2].system_attrs["retry_history"] == [1]
    counts = trial_counts(trials)
    assert (counts["finished"], counts["complete"], counts["retried"]) == (2, 2, 1)
    assert main([*RUN, "--trials", "3", "--storage", second]) == 0  # one more configuration
    assert len(_params(second)) == 3
