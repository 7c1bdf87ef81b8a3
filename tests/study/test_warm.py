"""Warm starts: the best configurations of other studies run first, mapped into this space."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from smoke_matrix import stop_when

from hpo_vidpred.cli import main
from hpo_vidpred.study.warm import map_params
from hpo_vidpred.search_space import load_search_space

WIDE = """params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  depth: {type: int, low: 1, high: 3}
  hidden: {type: int, low: 2, high: 8}
  kernel: {type: int, low: 3, high: 5, step: 2}
"""
NARROW = """fixed: {depth: 1}
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  hidden: {type: int, low: 2, high: 4}
  batch_size: {type: categorical, choices: [2, 4]}
"""
RUN = ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--workers", "1",
       "--quiet"]


def _space(text: str):
    Path("s.yaml").write_text(text)
    return load_search_space("s.yaml", "autoencoder", {"depth", "hidden", "kernel", "patch"})


def test_values_are_clipped_snapped_mapped_or_dropped_with_a_line_each() -> None:
    space = _space(NARROW)
    params, changes = map_params({"lr": 0.05, "hidden": 7, "depth": 3, "batch_size": 3,
                                  "kernel": 5}, space)
    assert params == {"lr": 0.01, "hidden": 4, "batch_size": 2}
    assert changes == ["lr: 0.05 -> 0.01 (clipped into [0.001, 0.01])",
                       "hidden: 7 -> 4 (clipped into [2, 4])",
                       "depth=3 dropped (not searched here)",
                       "batch_size: 3 -> 2 (nearest choice of [2, 4])",
                       "kernel=5 dropped (not searched here)"]
    assert map_params({"lr": 0.005, "hidden": 3}, space) == ({"lr": 0.005, "hidden": 3}, [])
    layered = _space("params:\n  depth: {type: int, low: 1, high: 2}\n"
                     "  hidden: {type: int, low: 2, high: 8, per_layer: depth}\n")
    params, changes = map_params({"hidden": 6, "hidden_1": 9, "depth": 2}, layered)
    assert params == {"hidden_1": 8, "depth": 2}  # one value per layer maps layer by layer
    assert changes == ["hidden=6 dropped (searched per layer here)",
                       "hidden_1: 9 -> 8 (clipped into [2, 8])"]


def test_a_study_starts_with_the_top_k_of_another(capsys) -> None:
    Path("wide.yaml").write_text(WIDE)
    Path("narrow.yaml").write_text(NARROW)
    assert main([*RUN, "--trials", "4", "--search-space", "wide.yaml", "--study", "first",
                 "--pruner", "none"]) == 0  # four complete trials to start from
    first = optuna.load_study(study_name="first", storage="sqlite:///studies/hpo.db")
    top_all = sorted((t for t in first.trials if t.state == TrialState.COMPLETE),
                     key=lambda t: t.value)
    top = top_all[:2]
    capsys.readouterr()
    assert main([*RUN, "--trials", "3", "--search-space", "narrow.yaml", "--study", "second",
                 "--warm-start", "first", "--warm-top", "2"]) == 0
    out = capsys.readouterr().out
    second = optuna.load_study(study_name="second", storage="sqlite:///studies/hpo.db")
    for t, source in zip(second.trials[:2], top, strict=True):  # the top-2, best first, mapped
        assert t.user_attrs["warm_start"] == f"study first trial {source.number}"
        assert t.params["hidden"] == min(source.params["hidden"], 4)
        assert f"warm start: study first trial {source.number}" in out
    assert "warm_start" not in second.trials[2].user_attrs  # then the sampler's own
    assert second.user_attrs["warm_start"] == {"sources": ["first"], "top": 2}
    # resumed: the same sources are not enqueued again
    assert main([*RUN, "--trials", "4", "--search-space", "narrow.yaml", "--study", "second",
                 "--warm-start", "first", "--warm-top", "2"]) == 0
    assert "warm start:" not in capsys.readouterr().out
    trials = optuna.load_study(study_name="second", storage="sqlite:///studies/hpo.db").trials
    assert sum("warm_start" in t.user_attrs for t in trials) == 2 and len(trials) == 4
    # never more than the trials left to run: --trials is never overshot
    assert main([*RUN, "--trials", "1", "--search-space", "narrow.yaml", "--study", "third",
                 "--warm-start", "first", "--warm-top", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("warm start:")]
    assert len([line for line in lines if "not enqueued" not in line]) == 1
    assert len(lines) == min(3, len(top_all)) and "not enqueued" in lines[-1]
    third = optuna.load_study(study_name="third", storage="sqlite:///studies/hpo.db").trials
    assert len(third) == 1 and third[0].state == TrialState.COMPLETE
    # a configuration this study tried already is not enqueued again, and not said to be
    prepare = ["store", "prepare", *RUN, "--trials", "5", "--search-space", "narrow.yaml",
               "--study", "fourth"]
    assert main(prepare) == 0
    fourth = optuna.load_study(study_name="fourth", storage="sqlite:///studies/hpo.db")
    tried, _ = map_params(dict(top[0].params), _space(NARROW))
    fourth.add_trial(optuna.trial.create_trial(
        params=tried, value=0.5, distributions={
            "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
            "hidden": optuna.distributions.IntDistribution(2, 4)}))
    capsys.readouterr()
    assert main([*prepare, "--warm-start", "first", "--warm-top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"warm start: study first trial {top[0].number} (value "
                        f"{top[0].value:.5g}) already tried here, not enqueued")
    assert lines[1].startswith(f"warm start: study first trial {top[1].number} (value ")
    assert ") enqueued" in lines[1]
    fourth = optuna.load_study(study_name="fourth", storage="sqlite:///studies/hpo.db").trials
    assert [t.state for t in fourth] == [TrialState.COMPLETE, TrialState.WAITING]


@pytest.mark.parametrize("prepare", [False, True], ids=["run", "prepare"])
@pytest.mark.parametrize("source_args,source,message", [
    (["--arch", "prednet"], "other", "--warm-start other: a study of prednet, not autoencoder"),
    (None, "nothing", "--warm-start nothing: no such study in this store (its studies: none)"),
    (None, "new", "--warm-start new: that is this study, whose configurations ran here already"),
])
def test_a_source_that_cannot_warm_this_study_is_one_line_and_creates_nothing(
        source_args, source, message, prepare, capsys) -> None:
    """hpo store prepare checks what hpo run checks (it created the study and exited 0, and
    then every job of the array failed)."""
    Path("narrow.yaml").write_text(NARROW)
    if source_args:
        Path("p.yaml").write_text("params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
        assert main(["run", *source_args, "--data", "mmnist", "--budget", "smoke", "--trials", "1",
                     "--workers", "1", "--quiet", "--search-space", "p.yaml", "--study",
                     "other"]) == 0
    capsys.readouterr()
    assert main([*(["store", "prepare"] if prepare else []), *RUN, "--trials", "1",
                 "--search-space", "narrow.yaml", "--study", "new", "--warm-start", source]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert "new" not in optuna.get_all_study_names("sqlite:///studies/hpo.db")


def test_the_warm_start_label_is_kept_through_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C during a warm-started trial: its retry, run first next time, still says where its
    configuration came from (every attribute was cleared)."""
    Path("narrow.yaml").write_text(NARROW)
    db = tmp_path / "store.db"
    store = ["--search-space", "narrow.yaml", "--storage", f"sqlite:///{db}"]
    assert main(["store", "prepare", *RUN, "--trials", "1", "--study", "source", *store]) == 0
    optuna.load_study(study_name="source", storage=f"sqlite:///{db}").add_trial(
        optuna.trial.create_trial(params={"lr": 0.005, "hidden": 3}, value=0.02, distributions={
            "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
            "hidden": optuna.distributions.IntDistribution(2, 4)},
            user_attrs={"model_spec": {}, "train_spec": {}}))  # as hpo run records them
    run = subprocess.Popen([sys.executable, "-m", "hpo_vidpred.cli", *RUN, "--trials", "2",
                            "--study", "target", "--warm-start", "source", *store],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def training() -> bool:  # the warm trial is inside the objective (its parameters sampled)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                return conn.execute(
                    "SELECT COUNT(*) FROM trials JOIN studies USING (study_id) JOIN trial_params "
                    "USING (trial_id) WHERE study_name = 'target' AND state = 'RUNNING'"
                ).fetchone()[0] > 0
        except sqlite3.Error:
            return False

    _, err = stop_when(run, training, sig=signal.SIGINT)
    assert run.returncode == 130, err
    attempt, retry = optuna.load_study(study_name="target", storage=f"sqlite:///{db}").trials
    assert attempt.state == TrialState.FAIL and attempt.user_attrs["fail_reason"] == "interrupted"
    assert retry.state == TrialState.WAITING and retry.params == attempt.params
    assert retry.user_attrs["warm_start"] == attempt.user_attrs["warm_start"] == \
        "study source trial 0"
