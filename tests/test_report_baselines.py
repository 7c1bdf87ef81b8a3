"""The report sets every model against the trivial predictors its study recorded (black frames,
the last input frame copied, the mean input frame): trivial rows, skill, "NOT LEARNED"; stores of
version 0.1 (no baselines) say the skill is unknown. Stores built by hand: no CLI, no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_stores import baselines, compare_study, search_study, table

from hpo_vidpred.report import write_report
from hpo_vidpred.store.records import TRIVIAL

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "store-0.1.0" / "store.db"
NO_BASELINES = "no trivial baselines recorded (store written by hpo-vidpred 0.1); skill unknown"
TEST = {"black": 0.05, "copy_last": 0.03, "mean_input": 0.04}  # best: copy-last, 0.03
# fixed: mean 0.0291 > 0.9 * 0.03 (not learned); tuned: mean 0.0205 (learned)
VALUES = {("convlstm", "fixed"): [0.029, 0.0292], ("convlstm", "optimized"): [0.020, 0.021]}
EXPECTED_COLUMNS = {"data", "arch", "cell", "role", "budget", "n", "seeds", "test_mse_mean",
                    "test_mse_std", "test_ssim_mean", "test_psnr_mean", "test_mse_frame_mean",
                    "test_mae_mean", "improvement_pct", "skill", "learned", "x_black",
                    "x_copy_last", "x_mean_input", "best_trivial"}


@pytest.fixture
def report(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 's.db'}"
    # the search's best val_mse 0.020 does not beat copy-last (0.021) on validation by 10%
    search_study(url, baselines("val", 0.06, 0.021, 0.05))
    compare_study(url, VALUES, baselines("test", **TEST))
    summary = write_report(url, tmp_path / "r")
    assert (summary["comparisons"], summary["rows"]) == (1, 2)
    return tmp_path / "r"


def test_trivial_rows_skill_and_not_learned_in_every_table(report: Path) -> None:
    md = (report / "tables.md").read_text()
    quality = {(r["cell"], r["role"]): r for r in table(md, "mmnist / autoencoder: test split")}
    for name, label in TRIVIAL.items():
        row = quality[(label, "trivial")]
        mse = TEST[name]
        assert [row["MSE"], row["SSIM"], row["PSNR (dB)"], row["MSE/frame"]] == [
            f"{mse:.4g}", f"{0.5 - mse:.4f}", f"{10 + mse * 100:.2f}", f"{mse * 256:.4g}"]
        assert row["skill"] == row["learned"] == "-"
    fixed, tuned = quality[("convlstm", "fixed")], quality[("convlstm", "tuned")]
    assert fixed["skill"] == f"{1 - 0.0291 / 0.03:.3g}"
    assert fixed["learned"] == "NOT LEARNED (MSE: copy-last)"
    assert tuned["skill"] == f"{1 - 0.0205 / 0.03:.3g}" and tuned["learned"] == "yes"
    assert ("NOT LEARNED: convlstm fixed (skill 0.03): it does not beat copying the last frame "
            "by 10% in MSE (= 0.58x black, 0.97x copy-last, 0.73x mean-input)") in md

    # results.csv: the trivial rows with their numbers, skill and ratios for the models
    results = pd.read_csv(report / "results.csv")
    assert EXPECTED_COLUMNS <= set(results.columns)
    rows = {(r.cell, r.role): r for r in results.itertuples()}
    for name, label in TRIVIAL.items():
        row = rows[(label, "trivial")]
        assert row.test_mse_mean == TEST[name] and row.test_mse_frame_mean == TEST[name] * 256
        assert row.test_ssim_mean == pytest.approx(0.5 - TEST[name], rel=1e-15)
        assert pd.isna(row.skill) and pd.isna(row.learned)
    for role, mses in (("fixed", VALUES[("convlstm", "fixed")]),
                       ("optimized", VALUES[("convlstm", "optimized")])):
        row, mse = rows[("convlstm", role)], sum(mses) / len(mses)
        assert row.skill == pytest.approx(1 - mse / min(TEST.values()), rel=1e-12)
        assert row.x_black == pytest.approx(mse / TEST["black"], rel=1e-12)
        assert row.x_copy_last == pytest.approx(mse / TEST["copy_last"], rel=1e-12)
        assert row.best_trivial == "copy_last"
        assert bool(row.learned) is (mse <= 0.9 * min(TEST.values()))
    assert rows[("convlstm", "fixed")].learned in (False, "False")
    assert rows[("convlstm", "optimized")].learned in (True, "True")

    # the opening paragraph of the index and of tables.md names what did not learn
    index = (report / "index.html").read_text()
    opening = ("NOT LEARNED: mmnist / autoencoder / convlstm fixed (skill 0.03): it does not beat "
               "copying the last frame by 10%")
    assert opening in index and opening in md.split("\n## ", 1)[0]
    assert index.index(opening) < index.index("mmnist / autoencoder: test split")
    assert "convlstm tuned (skill" not in index.split("<h2>", 1)[0]

    # search studies: the best val_mse against the validation baselines
    (study,) = table(md, "Search studies")
    assert study["best val_mse"] == "0.02"
    assert study["skill"] == f"{1 - 0.020 / 0.021:.3g}"
    assert study["learned"] == "NOT LEARNED (MSE: copy-last)"
    (best,) = table(md, "Best configurations")
    assert best["val_mse"] == "0.02" and best["learned"] == "NOT LEARNED (MSE: copy-last)"
    assert "best of search study autoencoder-mmnist-convlstm (trial 0, validation split)" in md
    page = (report / "study-autoencoder-mmnist-convlstm.html").read_text()
    assert "NOT LEARNED: convlstm best, trial 0, val_mse 0.02 (skill 0.0476)" in page
    assert "copying the last frame" in page

    tex = (report / "tables.tex").read_text()
    assert "copy-last & trivial" in tex and "NOT LEARNED" in tex


def test_every_model_learned_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    compare_study(url, {("convlstm", "optimized"): [0.010, 0.011]}, baselines("test", **TEST))
    write_report(url, tmp_path / "r")
    md = (tmp_path / "r" / "tables.md").read_text()
    (tuned, *trivial) = table(md, "mmnist / autoencoder: test split")
    assert tuned["learned"] == "yes" and len(trivial) == 3
    assert "NOT LEARNED: mmnist" not in md
    assert "Every model beat the trivial predictors (black, copy-last, mean-input): by at least " \
           "10% in MSE, and on MAE and SSIM where recorded" in (tmp_path / "r" / "index.html"
                                                                ).read_text()


def test_a_store_of_version_0_1_reports_skill_unknown(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copyfile(FIXTURE, db)  # never write to the committed store
    summary = write_report(f"sqlite:///{db}", tmp_path / "r")
    assert summary["comparisons"] == 1 and summary["search_studies"] == 2
    md = (tmp_path / "r" / "tables.md").read_text()
    index = (tmp_path / "r" / "index.html").read_text()
    assert NO_BASELINES in md and NO_BASELINES in index
    assert "NOT LEARNED: " not in md.split("\n## ", 1)[0] and "Every model" not in md
    for row in table(md, "mmnist / autoencoder: test split"):
        assert row["role"] != "trivial" and row["skill"] == "-" and row["learned"] == "-"
    assert {r["skill"] for r in table(md, "Search studies")} == {"-"}
    results = pd.read_csv(tmp_path / "r" / "results.csv")
    assert EXPECTED_COLUMNS <= set(results.columns)
    assert set(results.role) == {"fixed", "optimized"}
    assert results.skill.isna().all() and results.learned.isna().all()
    for name in ("index.html", "tables.tex", "plotly.min.js", "style.css",
                 "strips/mmnist-autoencoder-0.png", "study-autoencoder-mmnist-convlstm.html"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
