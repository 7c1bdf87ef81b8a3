"""The report answers the comparison: the overview table across datasets, architectures and
cells, "learned" judged on MSE, MAE and SSIM, statistics held back where the trials cannot
support them, trained values, the budget and device banner, and no link to an empty file.

One store built by hand (no training): a search of 1 complete trial, a search of 12, a
multi-objective search, fixed studies and a comparison whose tuned model black frames beat on
SSIM and MAE."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from report_stores import (baselines, compare_study, fixed_study, grown_search, search_study,
                           table)

from hpo_vidpred.report import write_report
from hpo_vidpred.report.studies import MIN_COMPLETE

# test split: black frames score MAE 0.15 and SSIM 0.45 (report_stores.predictor)
TEST = baselines("test", 0.05, 0.06, 0.055)
VAL = baselines("val", 0.05, 0.06, 0.055)
FIXED, TUNED = [0.030, 0.032], [0.020, 0.021]
# the tuned model: low MSE, but black frames score a better SSIM and MAE
BLURRED = {"ssim": 0.40, "mae": 0.16}
OVERVIEW = "Overview: every dataset x architecture x cell (test split)"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("overview")
    url = f"sqlite:///{root / 's.db'}"
    grown_search(url, "autoencoder-mmnist-convlstm", 12, VAL)
    grown_search(url, "prednet-mmnist-convlstm", 1, VAL, arch="prednet")
    grown_search(url, "autoencoder-mmnist-stlstm", 5, VAL, cell="stlstm",
                 objectives=("val_mse", "ms_per_step"))
    fixed_study(url, "convlstm")
    fixed_study(url, "convlstm", arch="prednet")
    compare_study(url, {("convlstm", "fixed"): FIXED, ("convlstm", "optimized"): TUNED}, TEST,
                  metrics={("convlstm", "optimized"): BLURRED}, started="2026-01-01T00:00:00")
    write_report(url, root / "r")
    return root / "r"


def test_the_overview_table_has_every_combination_and_metric(report: Path) -> None:
    md = (report / "tables.md").read_text()
    rows = table(md, OVERVIEW)
    assert list(rows[0]) == ["data", "arch", "cell", "role", "n", "MSE", "MAE", "SSIM",
                             "PSNR (dB)", "params", "ms/step", "search", "learned"]
    # every architecture x cell of the dataset: two roles where compared, one line otherwise
    assert [(r["arch"], r["cell"], r["role"]) for r in rows] == [
        ("autoencoder", "convlstm", "fixed"), ("autoencoder", "convlstm", "tuned"),
        ("autoencoder", "stlstm", "searched, not compared"),
        ("prednet", "convlstm", "searched, not compared"),
        ("prednet", "stlstm", "not run"),
        ("spatiotemporal", "convlstm", "not run"), ("spatiotemporal", "stlstm", "not run")]
    fixed, tuned = rows[0], rows[1]
    assert [fixed[k] for k in ("n", "MSE", "MAE", "SSIM", "params")] == [
        "2", "0.031 ± 0.0014", "0.0465 ± 0.0021 ★", "0.8690 ± 0.0014 ★", "100"]
    # the best of the dataset on each metric is marked: tuned on MSE, fixed on MAE and SSIM
    assert tuned["MSE"] == "0.0205 ± 0.00071 ★" and "★" not in fixed["MSE"]
    assert tuned["SSIM"] == "0.4000 ± 0" and tuned["MAE"] == "0.16 ± 0"
    assert fixed["ms/step"] == "10.0 on cpu, alone" and tuned["search"].startswith("13 trials,")
    assert fixed["learned"] == "yes"
    assert tuned["learned"] == "LOST STRUCTURE (SSIM: black, mean-input, copy-last; MAE: black)"
    # what is missing, with the command that runs it
    assert ("- not run: mmnist / prednet / stlstm: not run; runs with: hpo matrix --data mmnist "
            "--archs prednet --cells stlstm --trials 13 --seeds 2 --budget smoke --storage "
            "sqlite:///") in md
    # a search without comparison: its comparison (hpo matrix would refuse this multi-objective
    # search's name with a single-objective spec)
    assert "- not run: mmnist / autoencoder / stlstm: searched, not compared; runs with: hpo " \
           "compare --arch autoencoder --data mmnist --cells stlstm --seeds 2 --budget smoke" in md
    index = (report / "index.html").read_text()
    # first on the page, after the heading and the banner
    assert index.index('class="banner"') < index.index('id="overview"') < index.index(
        "Did the models learn?") < index.index("mmnist / autoencoder: test split")
    assert 'report overview"' in index
    tex = (report / "tables.tex").read_text()
    assert "Overview: every dataset x architecture x cell" in tex and r"$\star$" in tex
    # overview.csv: one row per dataset x architecture x cell, full precision
    csv = pd.read_csv(report / "overview.csv")
    assert len(csv) == 6 and {"tuned_mae_mean", "tuned_ssim_mean", "fixed_mse_std",
                              "tuned_beaten_by", "command", "status"} <= set(csv.columns)
    row = csv[(csv.arch == "autoencoder") & (csv.cell == "convlstm")].iloc[0]
    assert row.tuned_mse_mean == pytest.approx(0.0205) and row.tuned_ssim_mean == 0.40
    assert row.tuned_beaten_by == "ssim:black ssim:mean_input ssim:copy_last mae:black"


def test_a_model_black_frames_beat_on_ssim_is_flagged_in_words(report: Path) -> None:
    md = (report / "tables.md").read_text()
    index = (report / "index.html").read_text()
    opening = ("LOST STRUCTURE: mmnist / autoencoder / convlstm tuned: trivial predictors score "
               "better on SSIM (its 0.4; black 0.45, mean-input 0.445, copy-last 0.44) and MAE "
               "(its 0.16; black 0.15)")
    assert opening in md.split("\n## ", 1)[0]  # the report's first lines
    assert opening in index.split('mmnist / autoencoder: test split')[0]  # before the details
    assert "Its low MSE came with lost structure: an SSIM below black frames' means it predicts " \
           "a blur that minimizes MSE" in html.unescape(index)
    quality = {(r["cell"], r["role"]): r for r in table(md, "mmnist / autoencoder: test split")}
    assert quality[("convlstm", "tuned")]["learned"].startswith("LOST STRUCTURE (SSIM: black")
    assert quality[("convlstm", "tuned")]["MAE"] == "0.16 ± 0"  # MAE beside MSE, SSIM, PSNR
    assert '<td class="warn">LOST STRUCTURE (SSIM: black' in index
    results = pd.read_csv(report / "results.csv")
    tuned = results[(results.cell == "convlstm") & (results.role == "optimized")].iloc[0]
    assert bool(tuned.learned_mse) is True and bool(tuned.learned) is False
    assert "ssim:black" in tuned.beaten_by


def test_statistics_are_held_back_below_the_threshold(report: Path) -> None:
    assert MIN_COMPLETE == 10
    md = (report / "tables.md").read_text()
    one = (report / "study-prednet-mmnist-convlstm.html").read_text()
    many = (report / "study-autoencoder-mmnist-convlstm.html").read_text()
    pareto = (report / "study-autoencoder-mmnist-stlstm.html").read_text()
    # 1 complete trial (lr 0.0098 at the edge of its range): no warning, no importance, a line
    # saying why; no parallel coordinates from a single line
    for page, n in ((one, "1 complete trial,"), (pareto, "5 complete trials,")):
        assert f"edge warnings held back: {n} fewer than 10" in page
        assert f"hyperparameter importance held back: {n} fewer than 10" in page
        assert "sits at the edge of [" not in page and "importance (PED-ANOVA)" not in page
    assert "parallel coordinates held back: 1 complete trial(s)" in one
    # 12 complete trials: the warning and the importance figure are shown
    assert "WARNING (convlstm best, trial 0): lr = 0.0098 sits at the edge of [0.0001, 0.01]" in md
    assert "importance (PED-ANOVA)" in many and "held back" not in many
    # learning curves with epochs and a legend; pruned trials in the history
    for page in (one, many, pareto):
        assert "learning curves (val_mse per epoch)" in page and '"title":{"text":"epoch"}' in page
    assert '"name":"pruned (1): last val_mse"' in many
    assert '"name":"best: trial 0"' in many and '"name":"pruned (1)"' in many


def test_trained_values_banner_and_links(report: Path) -> None:
    md = (report / "tables.md").read_text()
    best = {r["study"]: r for r in table(md, "Best configurations")}
    # sampled hidden=20, trained 16 (a study recorded before spaces were narrowed to the budget)
    assert best["autoencoder-mmnist-convlstm"]["trained values"] == \
        "lr=0.0098, hidden=16 [sampled 20], depth=2"
    front = table(md, "Study autoencoder-mmnist-stlstm: Pareto front")
    assert front[0]["trained values"].startswith("lr=0.0098, hidden=16 [sampled 20]")
    # the budget and device banner on every page and in tables.md
    budget = ("mmnist at budget smoke (seconds on a CPU, for tests): data.height: 64 -> 16; "
              "searched widths at most 8")
    comparable = "NOT comparable with published Moving MNIST numbers"
    assert budget in md.split("\n## ", 1)[0] and comparable in md.split("\n## ", 1)[0]
    pages = sorted(report.glob("*.html"))
    assert len(pages) == 4
    for page in pages:
        text = page.read_text()
        banner = html.unescape(text.split('<div class="banner">', 1)[1].split("</div>", 1)[0])
        assert budget in banner and comparable in banner, page.name
        assert "ms/step measured on cpu" in banner and "Other processes" in banner, page.name
        # no link to a missing or empty file
        for target in re.findall(r'(?:href|src)="([^"#]+)"', text):
            assert (report / target).is_file() and (report / target).stat().st_size > 0, target


def test_a_store_without_comparisons_links_no_empty_results(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    search_study(url, VAL)
    write_report(url, tmp_path / "r")
    index = (tmp_path / "r" / "index.html").read_text()
    assert not (tmp_path / "r" / "results.csv").exists() and "results.csv" not in index
    assert 'href="tables.md"' in index


def test_one_trial_gets_axes_that_fit_it(report: Path) -> None:
    from hpo_vidpred.report.collect import collect
    from hpo_vidpred.report.figures import curves_figure, fronts_figure, history_figure
    from hpo_vidpred.store import open_storage

    url = f"sqlite:///{report.parent / 's.db'}"
    store = collect(open_storage(url, read_only=True), url)
    one = store.search_study("prednet-mmnist-convlstm")
    history = history_figure(one)
    low, high = history.layout.yaxis.range
    assert 0 < low < 0.010 < 0.03 < high  # the complete trial (0.010) and the pruned one (0.03)
    names = [t.name for t in history.data]
    assert "pruned (1): last val_mse" in names and "black (trivial) 0.05" in names
    # the curves: an epoch axis with whole steps and one legend entry per group
    curves = curves_figure(one)
    assert curves.layout.xaxis.title.text == "epoch" and curves.layout.xaxis.dtick == 1
    assert [t.name for t in curves.data if t.showlegend is not False][:2] == [
        "pruned (1)", "best: trial 0"]
    # the front: the trivial predictors far beyond the trials (0.010-0.014 against 0.05-0.06)
    # stay off the axis, named in the legend
    front = fronts_figure([store.search_study("autoencoder-mmnist-stlstm")])
    low, high = front.layout.xaxis.range
    assert high < 0.02
    off = [t for t in front.data if "(trivial)" in t.name]
    assert len(off) == 3 and all(t.visible == "legendonly" and t.name.endswith("off the axis")
                                 for t in off)
    # the three trivial predictors never share one line style
    assert len({(t.line.dash, t.line.color) for t in off}) == 3
