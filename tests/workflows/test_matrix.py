"""``hpo matrix``: the smoke matrix, interrupted and resumed, and what it refuses."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from smoke_matrix import COMPARE, FIXED, SEARCH, _finished, matrix_fixture

from hpo_vidpred.errors import HpoError
from hpo_vidpred.workflows.matrix import plan_matrix, run_matrix
from hpo_vidpred.store.records import trial_counts

smoke = matrix_fixture()  # the smoke matrix, run once per session


@pytest.mark.slow
def test_interrupted_matrix_resumes_without_redoing_anything(matrix: dict) -> None:
    url = matrix["url"]
    assert matrix["first_rc"] == 130, matrix["first_err"]  # stopped by SIGTERM mid-comparison
    last = matrix["first_err"].splitlines()[-1]
    assert last == "error: interrupted; everything finished so far is stored"
    assert matrix["running"] == matrix["after"] == []  # the interrupted fixed retrain is FAIL
    assert matrix["rc"] == 0, matrix["err"]
    before, now = matrix["before"], _finished(url)
    # The interruption came after both studies and at least one retrain had finished.
    assert all(s in before for s in SEARCH) and before[COMPARE]
    for study, trials in before.items():  # nothing finished before was touched again
        for number, record in trials.items():
            assert now[study][number] == record, (study, number)
    for name in SEARCH:  # finished studies were not continued
        assert now[name].keys() == before[name].keys()
        trials = optuna.load_study(study_name=name, storage=url).trials
        assert trial_counts(trials)["finished"] == 3
    compare = optuna.load_study(study_name=COMPARE, storage=url)
    complete = [t for t in compare.trials if t.state == TrialState.COMPLETE]
    keys = Counter((t.user_attrs["role"], t.user_attrs["cell"], t.user_attrs["seed"])
                   for t in complete)
    assert sorted(keys) == sorted((r, c, s) for r in ("fixed", "optimized")
                                  for c in ("convlstm", "stlstm") for s in (0, 1))
    assert set(keys.values()) == {1}  # each retrain exactly once
    stopped = []
    for name in FIXED:  # the fixed baselines: one complete `hpo fixed` trial per seed
        trials = optuna.load_study(study_name=name, storage=url).trials
        seeds = Counter(t.user_attrs["train_spec"]["seed"] for t in trials
                        if t.state == TrialState.COMPLETE)
        assert seeds == {0: 1, 1: 1}
        stopped += [t.user_attrs.get("fail_reason") for t in trials
                    if t.state == TrialState.FAIL]
    assert stopped == ["interrupted"]  # the fixed retrain SIGTERM stopped: FAIL, said why
    skipped = int(re.search(rf"{COMPARE}: (\d+) of 8 retrains already stored",
                            matrix["err"]).group(1))
    assert skipped == len(before[COMPARE]) >= 1  # the second run said what it kept
    assert "report:" in matrix["out"] and Path(matrix["report"], "index.html").is_file()


def test_plan_matrix_checks_every_name_before_running() -> None:
    with pytest.raises(HpoError, match="unknown dataset 'ucf'"):
        plan_matrix(["mmnist", "ucf"], trials=3)
    with pytest.raises(HpoError, match="unknown architecture 'lstm'"):
        plan_matrix(["mmnist"], ["lstm"], trials=3)
    with pytest.raises(HpoError, match="at least 1"):
        plan_matrix(["mmnist"], trials=0)
    plan = plan_matrix(["mmnist"], trials=3, seeds=2, budget="smoke")
    assert plan.archs == ("autoencoder", "prednet", "spatiotemporal")
    assert plan.cells == ("convlstm", "stlstm")
    assert plan.command("sqlite:///x.db", "reports/r") == (
        "hpo matrix --data mmnist --archs autoencoder,prednet,spatiotemporal --cells "
        "convlstm,stlstm --trials 3 --seeds 2 --budget smoke --storage sqlite:///x.db "
        "--out reports/r")
    # The comparisons retrain each fixed configuration: one that is missing is named now, not
    # after the searches.
    (Path("studies") / "fixed").mkdir(parents=True)
    (Path("studies") / "fixed" / "prednet.yaml").write_text("mmnist: {channels: 1}\n")
    with pytest.raises(HpoError, match="no fixed configuration of prednet for dataset 'kth' in "
                                       r"studies/fixed/prednet.yaml; choose one of: mmnist; or "
                                       "leave prednet out with --archs"):
        plan_matrix(["mmnist", "kth"], trials=3)
    assert plan_matrix(["kth"], ["autoencoder"], trials=3).archs == ("autoencoder",)


def test_missing_datasets_are_named_not_fatal_until_none_is_left(tmp_path: Path) -> None:
    plan = plan_matrix(["kth", "kitti"], ["autoencoder"], trials=1, budget="smoke",
                       data_dir=str(tmp_path / "nothing"))
    lines: list[str] = []
    with pytest.raises(HpoError, match=r"no dataset of --data is available: kth: .*; kitti: "):
        run_matrix(plan, f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "r"), log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["matrix", "matrix"]
    assert "skipping kth" in lines[0] and "skipping kitti" in lines[1]
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}") == []
