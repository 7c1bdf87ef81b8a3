"""``hpo report``: every file, and numbers that agree with the store read independently."""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image
from smoke_matrix import COMPARE, SEARCH, matrix_fixture

from hpo_vidpred.cli import main
from hpo_vidpred.report import write_report
from hpo_vidpred.specs import StudySpec
from hpo_vidpred.study import plan_study

smoke = matrix_fixture()  # the smoke matrix, run once per session


def _rows(markdown: str, title: str) -> list[list[str]]:
    """The body rows of the Markdown table under ``## <title>...``."""
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]


def _csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as f:
        return {(r["cell"], r["role"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_matrix_report_has_every_file_and_the_stores_numbers(matrix: dict) -> None:
    assert matrix["rc"] == 0, matrix["err"]
    report, url = Path(matrix["report"]), matrix["url"]
    for name in ("index.html", "tables.md", "tables.tex", "results.csv", "plotly.min.js",
                 "style.css", "strips/mmnist-autoencoder.png",
                 *(f"study-{s}.html" for s in SEARCH)):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    index = (report / "index.html").read_text()
    assert ("hpo matrix --data mmnist --archs autoencoder --cells convlstm,stlstm --trials 3 "
            "--seeds 2 --budget smoke") in index  # the command that produced it
    assert "published defaults vs tuned" in index
    md, tex = (report / "tables.md").read_text(), (report / "tables.tex").read_text()
    results = _csv(report / "results.csv")

    # Independently from the store: group the comparison's trials, mean and sample std.
    groups = defaultdict(list)
    for t in optuna.load_study(study_name=COMPARE, storage=url).trials:
        if t.state == TrialState.COMPLETE:
            groups[(t.user_attrs["cell"], t.user_attrs["role"])].append(t)
    assert len(groups) == 4 and len(results) == 4
    quality = {r[1]: r for r in _rows(md, "mmnist / autoencoder: test split")}
    cost = {r[1]: r for r in _rows(md, "mmnist / autoencoder: size, speed")}
    for (cell, role), trials in groups.items():
        mse = [t.value for t in trials]
        ssim = [t.user_attrs["test_ssim"] for t in trials]
        psnr = [t.user_attrs["test_psnr"] for t in trials]
        row = results[(cell, role)]
        assert int(row["n"]) == len(trials) == 2
        for name, values in (("mse", mse), ("ssim", ssim), ("psnr", psnr)):
            assert float(row[f"test_{name}_mean"]) == pytest.approx(statistics.mean(values),
                                                                     rel=1e-12)
            assert float(row[f"test_{name}_std"]) == pytest.approx(statistics.stdev(values),
                                                                    rel=1e-9, abs=1e-15)
        column = 3 if role == "fixed" else 4
        assert quality[cell][column] == (f"{statistics.mean(mse):.4g} ± "
                                         f"{statistics.stdev(mse):.2g}")
        assert quality[cell][2] == "2"
        ssim_column = 6 if role == "fixed" else 7
        assert quality[cell][ssim_column].startswith(f"{statistics.mean(ssim):.4f} ± ")
        assert cost[cell][2 if role == "fixed" else 3] == f"{trials[0].user_attrs['n_params']:,}"
    for cell in ("convlstm", "stlstm"):
        fixed = statistics.mean(t.value for t in groups[(cell, "fixed")])
        tuned = statistics.mean(t.value for t in groups[(cell, "optimized")])
        assert quality[cell][5].startswith(f"{100 * (fixed - tuned) / fixed:+.1f}%")
        search = optuna.load_study(study_name=f"autoencoder-mmnist-{cell}", storage=url)
        hours = sum(t.user_attrs.get("train_seconds") or 0 for t in search.trials) / 3600
        assert cost[cell][8:12] == [search.study_name, "3", f"{hours:.3f}", "0.000"]
        best = min((t for t in search.trials if t.state == TrialState.COMPLETE),
                   key=lambda t: t.value)
        assert any(r[3] == search.study_name and r[4] == str(best.number)
                   and r[5] == f"{best.value:.4g}" for r in _rows(md, "Best configurations"))
    studies = {r[0]: r for r in _rows(md, "Search studies")}
    for name in SEARCH:
        trials = optuna.load_study(study_name=name, storage=url).trials
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        assert studies[name][5] == "3" and studies[name][7] == f"{100 * pruned / 3:.0f}%"
    assert "$\\pm$" in tex and "\\toprule" in tex and "Reproduce: \\texttt{hpo compare" in tex
    assert md.count("Reproduce: `hpo ") == md.count("\n## ")  # every table says its command
    assert "budget smoke: data.height: 64 -> 16" in md  # budget changes are stated
    strip = Image.open(report / "strips" / "mmnist-autoencoder.png")
    assert strip.height >= 6 * 48  # input, truth, fixed and tuned for two cells


# --------------------------------------------------------------------------- a store made by hand
def _search_study(url: str) -> None:
    spec = StudySpec(arch="autoencoder", data="mmnist", cell="convlstm", budget="smoke")
    study = optuna.create_study(study_name="autoencoder-mmnist-convlstm", storage=url)
    study.set_user_attr("spec", plan_study(spec).record())
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "batch_size": CategoricalDistribution([4, 8, 16, 32]),
             "depth": IntDistribution(1, 3), "hidden": IntDistribution(8, 64, log=True),
             "kernel": IntDistribution(3, 7, step=2)}
    model = {"arch": "autoencoder", "cell": "convlstm", "channels": 1, "peephole": "conv",
             "config": {"depth": 2, "hidden": 4, "kernel": 3}}
    rows = [  # state, value, lr, seconds, device, extra attrs
        (TrialState.COMPLETE, 0.020, 0.0098, 360.0, "cpu", {}),
        (TrialState.COMPLETE, 0.025, 0.001, 720.0, "cuda:0", {}),
        (TrialState.PRUNED, None, 0.0002, 36.0, "cpu", {}),
        (TrialState.FAIL, None, 0.009, 18.0, "cpu",
         {"stop_reason": "diverged", "fail_reason": "diverged: non-finite loss in epoch 1"}),
    ]
    for state, value, lr, seconds, device, extra in rows:
        study.add_trial(create_trial(
            state=state, value=value, distributions=dists,
            params={"lr": lr, "batch_size": 8, "depth": 2, "hidden": 16, "kernel": 5},
            user_attrs={"model_spec": model, "train_spec": {"lr": lr, "seed": 0},
                        "train_seconds": seconds, "device": device, "n_params": 1234, **extra}))


def _compare_study(url: str) -> None:
    study = optuna.create_study(study_name="compare-autoencoder-mmnist", storage=url)
    study.set_user_attr("kind", "compare")
    study.set_user_attr("spec", {"compare": {"arch": "autoencoder", "data": "mmnist",
                                             "budget": "smoke"}, "data": {"n_in": 2}})
    study.set_user_attr("budget", {"budget": "smoke", "changes": ["data.height: 64 -> 16"]})
    values = {("convlstm", "fixed"): [0.030, 0.031, 0.032],
              ("convlstm", "optimized"): [0.0305, 0.0295, 0.0315],
              ("stlstm", "fixed"): [0.040], ("stlstm", "optimized"): [0.020]}
    for (cell, role), mses in values.items():
        for seed, mse in enumerate(mses):
            attrs = {"role": role, "cell": cell, "seed": seed, "config_id": role,
                     "n_params": 100 if role == "fixed" else 50, "step_ms": 10.0,
                     "train_seconds": 1.0, "device": "cpu", "source_study":
                     "autoencoder-mmnist-convlstm" if role == "optimized" else "",
                     **{f"test_{m}": mse * k for m, k in (("mse", 1), ("mse_frame", 256),
                                                          ("mae", 3), ("psnr", 1000),
                                                          ("ssim", 10))},
                     "test_mse_per_step": [mse * 0.9, mse * 1.1]}
            study.add_trial(create_trial(value=mse, user_attrs=attrs))


def test_numbers_notes_and_warnings_from_a_known_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _search_study(url)
    _compare_study(url)
    summary = write_report(url, tmp_path / "r")
    assert (summary["search_studies"], summary["comparisons"], summary["rows"]) == (1, 1, 4)
    md = (tmp_path / "r" / "tables.md").read_text()
    quality = {r[1]: r for r in _rows(md, "mmnist / autoencoder: test split")}
    assert quality["convlstm"][3:6] == ["0.031 ± 0.001", "0.0305 ± 0.001",
                                        "+1.6% (within seed spread)"]
    assert quality["stlstm"][2:6] == ["1", "0.04", "0.02", "+50.0% (n=1: spread unknown)"]
    assert "convlstm: the fixed-vs-tuned difference (0.0005) is smaller than the seed-to-seed " \
           "spread (0.001): not a result" in md
    (study_row,) = _rows(md, "Search studies")
    # 4 finished: 2 complete, 1 pruned, 1 failed (diverged); 0.3 CPU h and 0.2 GPU h
    assert study_row[5:12] == ["4", "2", "25%", "25%", "25%", "0.115", "0.200"]
    cost = {r[1]: r for r in _rows(md, "mmnist / autoencoder: size, speed")}
    assert cost["convlstm"][8:12] == ["autoencoder-mmnist-convlstm", "4", "0.115", "0.200"]
    assert "WARNING (convlstm best, trial 0): lr = 0.0098 sits at the edge of [0.0001, 0.01]" in md
    hyper = {r[0]: r for r in _rows(md, "Study autoencoder-mmnist-convlstm: hyperparameters")}
    assert hyper["lr"][1:3] == ["nuisance", "searched [0.0001, 0.01] log"]
    assert hyper["lr"][4] == "at edge" and hyper["depth"][4] == ""
    assert hyper["cell"][1] == "scientific" and hyper["arch"][1] == "scientific"
    assert hyper["(training)"][1] == "fixed" and "epochs=2" in hyper["(training)"][2]
    cells = _rows(md, "mmnist / autoencoder: convlstm vs stlstm")
    assert cells == [["autoencoder", "0.0305 ± 0.001", "0.02", "+34.4% lower MSE", "yes",
                      "no"]]
    results = _csv(tmp_path / "r" / "results.csv")
    assert float(results[("convlstm", "optimized")]["test_mse_mean"]) == pytest.approx(0.0305)
    assert math.isclose(float(results[("convlstm", "optimized")]["improvement_pct"]),
                        100 * (0.031 - 0.0305) / 0.031)
    tex = (tmp_path / "r" / "tables.tex").read_text()
    assert r"autoencoder-mmnist-convlstm" in tex and r"val\_mse" in tex and r"25\%" in tex

    # --studies selects: only the comparison, so no search tables and no study pages
    write_report(url, tmp_path / "c", "compare-*")
    assert "Search studies" not in (tmp_path / "c" / "tables.md").read_text()
    assert not list((tmp_path / "c").glob("study-*.html"))


def test_a_store_without_matching_studies_is_one_line(capsys, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _search_study(url)
    assert main(["report", "--storage", url, "--studies", "kth-*"]) == 2
    assert "no search or comparison study matching 'kth-*'" in capsys.readouterr().err
    assert main(["report", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no study store at" in capsys.readouterr().err


def test_without_the_basic_bundle_the_full_plotly_is_written(tmp_path: Path,
                                                              monkeypatch) -> None:
    from plotly.offline import get_plotlyjs

    import hpo_vidpred.report as report

    url = f"sqlite:///{tmp_path / 's.db'}"
    _compare_study(url)
    monkeypatch.setattr(report, "_BASIC_BUNDLE", tmp_path / "missing.js")
    write_report(url, tmp_path / "r")
    assert (tmp_path / "r" / "plotly.min.js").read_text() == get_plotlyjs()
