"""The replay benchmark (benchmarks/replay.py) on small synthetic tables whose answers are known:
random search's compute to reach the top k of n configurations, a strategy that stops what
cannot win spending less, the outside schedulers running on the same table."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str) -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def synthetic_table(folder: Path, n: int = 40, epochs: int = 4, cost: float = 1.0,
                    numeric: bool = False) -> Path:
    """n configurations of one categorical parameter ``c`` (sampling one uniformly at random is
    drawing a configuration uniformly), configuration i ending at 1 + i: curves fall towards
    their final value, every epoch costs ``cost`` seconds. ``numeric``: one float ``x`` in
    [0, 1] instead, configuration i at x = (i + 0.5) / n."""
    rows = []
    for i in range(n):
        final = 1.0 + i
        row = {"study": "syn", "seed": 0, "index": i, "number": i, "state": "COMPLETE",
               "reason": "completed", **({"x": (i + 0.5) / n} if numeric else {"c": i}),
               "value": final}
        for e in range(1, epochs + 1):
            row[f"val_mse_{e}"] = final * (1 + (epochs - e) / epochs)
            for m in ("ssim", "mae", "psnr"):
                row[f"val_{m}_{e}"] = 0.0
            row[f"train_s_{e}"] = cost
            row[f"val_s_{e}"] = 0.0
        rows.append(row)
    path = folder / "syn.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    param = {"x": {"type": "float", "low": 0.0, "high": 1.0}} if numeric else \
        {"c": {"type": "categorical", "choices": list(range(n))}}
    space = {"arch": "synthetic", "fixed": {}, "params": param}
    card = {"format": "hpo-vidpred-lc-table/1", "epochs": epochs, "baselines": None,
            "studies": [{"name": "syn", "seed": 0, "sampling_space": space,
                         "search_space": space, "study": {"arch": "autoencoder"}}]}
    (folder / "syn.md").write_text("# synthetic\n\n```json\n" + json.dumps(card) + "\n```\n")
    return path


def test_random_search_needs_n_over_k_full_trials_to_reach_the_top_k(tmp_path: Path) -> None:
    """Drawing with replacement, the first of the top k among n comes after a geometric number
    of trials: mean n / k, median ceil(ln 0.5 / ln(1 - k/n))."""
    replay = _module("replay")
    n, epochs = 40, 4
    table = replay.load_table(synthetic_table(tmp_path, n=n, epochs=epochs))
    assert table.final.tolist() == [1.0 + i for i in range(n)]
    k = math.ceil(0.02 * n)  # the top2pct target: the best configuration
    target = 1.0 + k - 1
    times = []
    for seed in range(300):
        run = replay.simulate(replay.make_strategy("random", table, seed, 1), table, 1,
                              horizon=60 * n * epochs, until=target)
        times.append(replay.first_time(run["anytime"], target))
    times = np.array(times)
    assert np.all(np.isfinite(times))
    assert np.mean(times) == pytest.approx(epochs * n / k, rel=0.12)
    p = k / n
    assert np.median(times) == pytest.approx(epochs * math.ceil(math.log(0.5) / math.log(1 - p)),
                                             rel=0.15)
    # and each trial trained all epochs: the simulated clock is the sum of epoch costs
    assert np.all(times % epochs == 0)


def test_distinct_snapping_answers_each_new_proposal_with_a_row_not_used_yet(
        tmp_path: Path) -> None:
    replay = _module("replay")
    table = replay.load_table(synthetic_table(tmp_path, n=4, epochs=2, numeric=True))

    def snap(t: Any, x: float) -> int:
        return t.snap(replay.locate(t.space, {"x": x}))
    nearest, distinct = table.for_run(distinct=False), table.for_run(distinct=True)
    assert [snap(nearest, x) for x in (0.13, 0.12, 0.11, 0.9)] == [0, 0, 0, 3]
    assert [snap(distinct, x) for x in (0.13, 0.12, 0.11, 0.9)] == [0, 1, 2, 3]
    assert snap(distinct, 0.12) == 1  # the same configuration again: the same row
    assert snap(distinct, 0.6) == 2 and distinct.used == {0, 1, 2, 3}  # all used: the nearest
    assert table.used == set()  # each run keeps its own record


def test_the_replay_reports_targets_speedups_and_anytime_curves(tmp_path: Path) -> None:
    replay = _module("replay")
    path = synthetic_table(tmp_path, n=30, epochs=4)
    result = replay.replay(path, ["random", "tpe", "tpe-median", "hpo-default", "asha", "bohb",
                                  "dehb"], seeds=4, workers=2, budget_trials=25, jobs=1)
    assert result["targets"]["top2pct"] == 1.0
    assert result["table"]["configurations"] == 30 and result["table"]["points"] == 4
    assert result["target"] >= 1.0  # plain TPE's median result after 20 full trials
    plain = result["strategies"]["tpe"]
    assert plain["speedup_vs_plain_tpe"]["median"] == 1.0
    for name, entry in result["strategies"].items():
        assert entry["seeds"] == 4 and 0 <= entry["reached"] <= 4
        lo, hi = entry["speedup_vs_plain_tpe"]["ci95"]
        assert lo <= hi
        assert len(entry["anytime"]["median"]) == len(entry["anytime"]["t_s"])
    # stopping strategies train fewer epochs per configuration than full trials
    assert result["strategies"]["asha"]["epochs_per_run"] > 0
    # the Optuna strategies: where the returned configuration stood after 20 complete trials
    after = result["strategies"]["tpe"]["after_20"]
    assert after["seeds"] == 4 and after["q25"] <= after["median"] <= after["q75"]


def test_promotion_options_are_apart_by_colons_so_a_list_of_strategies_keeps_them(
        tmp_path: Path) -> None:
    replay = _module("replay")
    table = replay.load_table(synthetic_table(tmp_path, n=8, epochs=4))
    default = replay.make_strategy("promote", table, 0, 1).scheduler
    tuned = replay.make_strategy("promote:eta=2:first=1:margin=0.2", table, 0, 1).scheduler
    assert tuned.rungs != default.rungs and tuned.stop.margin == 0.2
    assert tuned.rungs == replay.make_strategy("promote:eta=2:first=1", table, 0, 1).scheduler.rungs


def test_the_reality_check_puts_real_trials_on_the_tables_clock(tmp_path: Path,
                                                                 capsys) -> None:
    """Real trials are charged the seconds of the configuration the replay answers their
    parameters with, on the worker free first; the real best-so-far is read on the replay's
    grid against its interquartile band."""
    import datetime

    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    _module("replay")
    reality = _module("reality_check")
    path = synthetic_table(tmp_path, n=10, epochs=4, cost=1.0)  # configuration i ends at 1 + i
    start = datetime.datetime(2026, 1, 1)
    trials = []
    # (configuration, state, epochs trained): a pruned trial is charged its 2 epochs only
    for k, (c, state, epochs) in enumerate([(5, "COMPLETE", 4), (2, "COMPLETE", 4),
                                            (8, "PRUNED", 2), (0, "COMPLETE", 4)]):
        trial = optuna.trial.create_trial(
            params={"c": c}, distributions={"c": CategoricalDistribution(list(range(10)))},
            value=1.0 + c if state == "COMPLETE" else None, state=TrialState[state],
            intermediate_values={e: (1.0 + c) * (1 + (4 - e) / 4) for e in range(1, epochs + 1)})
        trial.datetime_start = start + datetime.timedelta(seconds=k)  # started in this order
        trial.datetime_complete = start + datetime.timedelta(seconds=k + 2)
        trials.append(trial)
    trials.reverse()  # (the order they are stored in does not matter)
    table = reality.rp.load_table(path).for_run(distinct=False)
    one = reality.real_curve(table, trials, workers=1)
    # one worker: 4 + 4 + 2 + 4 seconds; best 6 at 4 s, 3 at 8 s, 1 at 14 s
    assert one["anytime"] == [(4.0, 6.0), (8.0, 3.0), (14.0, 1.0)]
    assert one["complete"] == 3 and one["trials"] == 4 and one["end_s"] == 14.0
    # the three full trials trained exactly their rows' values
    assert one["nearest_answer"] == {"trials": 3, "spearman": 1.0, "median_ratio": 1.0}
    # the wall clock (trials that pause and resume): real ends 2, 3, (4), 5 s after the first
    # start, scaled so that the 5 s spend the 14 table seconds charged
    wall = reality.real_curve(table, trials, workers=1, clock="wall")
    assert [(round(t, 6), v) for t, v in wall["anytime"]] == [(5.6, 6.0), (8.4, 3.0),
                                                             (14.0, 1.0)]
    assert wall["wall_s"] == 5.0
    two = reality.real_curve(table, trials, workers=2)
    # two workers: trials 0 and 1 end at 4, the pruned one at 6, the last at 8
    assert two["anytime"] == [(4.0, 3.0), (8.0, 1.0)] and two["end_s"] == 8.0
    band = {"t_s": [0, 2, 4, 6, 8, 10], "q25": [None, None, 4.0, 4.0, 0.5, 0.5],
            "q75": [None, None, 5.0, 5.0, 2.0, 2.0]}
    # on the grid up to 14 s where the upper quartile has a value: at 4 and 6 the value 6 is
    # above [4, 5]; at 8 and 10 the value 3 is above [0.5, 2]
    assert reality.against_band(one["anytime"], band, one["end_s"]) == {
        "points": 4, "inside": 0.0, "below": 0.0, "above": 1.0}
    # two workers, up to 8 s: 3 is below [4, 5] at 4 and 6, and 1 inside [0.5, 2] at 8
    assert reality.against_band(two["anytime"], band, two["end_s"]) == {
        "points": 3, "inside": 0.333, "below": 0.667, "above": 0.0}
    # from the command line, on a store, with the figure
    storage = f"sqlite:///{tmp_path / 'real.db'}"
    study = optuna.create_study(study_name="real", storage=storage)
    for trial in sorted(trials, key=lambda t: t.datetime_start):
        study.add_trial(trial)
    replayed = {"workers": 1, "seeds": 3, "table": {"best_final": 1.0, "median_final": 5.0},
                "strategies": {"tpe": {"anytime": {**band, "median": band["q25"]},
                                       "after_20": {"seeds": 3, "q25": 1.0, "median": 1.0,
                                                    "q75": 2.0}}}}
    (tmp_path / "replay.json").write_text(json.dumps(replayed))
    argv = ["--table", str(path), "--replay", str(tmp_path / "replay.json"), "--storage",
            storage, "--studies", "tpe=real", "--figure", str(tmp_path / "r.png")]
    assert reality.main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["strategies"]["tpe"]
    assert out["anytime"] == [[4.0, 6.0], [8.0, 3.0], [14.0, 1.0]] and out["complete"] == 3
    assert out["band"]["above"] == 1.0 and out["real_after_20"] is None  # fewer than 20 trials
    assert (tmp_path / "r.png").stat().st_size > 0
    assert reality.main([*argv[:-4], "--studies", "tpe"]) == 2


def test_a_seed_replays_the_same_run_with_hyperband_too(tmp_path: Path) -> None:
    """Optuna's Hyperband puts a trial in a bracket by a hash of the study's name: an unnamed
    study (a random name) made the same seed replay differently, and seeds unpaired."""
    replay = _module("replay")
    path = synthetic_table(tmp_path, n=30, epochs=9)
    for name in ("tpe-hyperband", "hpo-default"):
        runs = [[replay.run_one(str(path), name, seed, 1, horizon=400.0) for seed in range(4)]
                for _ in range(2)]
        assert [(r["anytime"], r["epochs"]) for r in runs[0]] == \
            [(r["anytime"], r["epochs"]) for r in runs[1]]


def test_the_default_strategies_leave_bohb_out_only_with_several_workers(
        tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    replay = _module("replay")
    asked = []

    def fake(table, names, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        asked.append(list(names))
        return {"table": {"name": "t", "configurations": 1}, "target": 1.0, "seeds": 1,
                "workers": 1, "strategies": {}}
    monkeypatch.setattr(replay, "replay", fake)
    path = str(synthetic_table(tmp_path, n=4, epochs=2))
    assert replay.main(["--table", path, "--workers", "1"]) == 0
    assert replay.main(["--table", path, "--workers", "4"]) == 0
    assert "bohb left out with several workers" in capsys.readouterr().err
    assert replay.main(["--table", path, "--workers", "4", "--strategies", "tpe,bohb"]) == 0
    assert asked == [list(replay.STRATEGIES), [s for s in replay.STRATEGIES if s != "bohb"],
                     ["tpe", "bohb"]]


def test_a_replay_on_the_tables_first_configurations(
        tmp_path: Path, capsys) -> None:  # noqa: ANN001
    replay = _module("replay")
    path = synthetic_table(tmp_path, n=30, epochs=2)
    (tmp_path / "prefix").mkdir()
    prefix = replay.prefix_table(path, 12, tmp_path / "prefix")
    assert replay.load_table(prefix).final.tolist() == [1.0 + i for i in range(12)]
    assert replay.main(["--table", str(path), "--first", "12", "--seeds", "2", "--strategies",
                        "random,tpe", "--jobs", "1", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["table"]
    assert (table["configurations"], table["first"]) == (12, 12)
