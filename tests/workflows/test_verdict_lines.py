""""Learned" judged on every metric: a model that a trivial predictor beats on MSE (by the 10%
rule), MAE or SSIM is flagged, naming the metric and the predictor, in the summaries of
``hpo run``, ``hpo fixed``, ``hpo compare`` and ``hpo matrix`` (one verdict:
``store.records.judge_metrics``)."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hpo_vidpred.workflows import compare

from hpo_vidpred.workflows import fixed

from hpo_vidpred.study import summary as search
from hpo_vidpred.store.records import judge_metrics, verdict_label, verdict_text

# the trivial predictors of the example Moving MNIST report (test split): black frames score a
# better MAE and SSIM than a tuned autoencoder that learned the MSE-minimizing blur
BASELINES = {"split": "test",
             "black": {"mse": 0.0192, "mae": 0.0260, "ssim": 0.737, "psnr": 17.5},
             "copy_last": {"mse": 0.0279, "mae": 0.0397, "ssim": 0.672, "psnr": 17.0},
             "mean_input": {"mse": 0.0221, "mae": 0.0300, "ssim": 0.567, "psnr": 17.0}}
BLUR = {"mse": 0.0110, "mae": 0.0292, "ssim": 0.726}  # low MSE, structure lost
SHARP = {"mse": 0.0090, "mae": 0.0200, "ssim": 0.800}  # beats every predictor on every metric


def test_the_verdict_names_each_metric_and_predictor_that_beat_a_model() -> None:
    v = judge_metrics(BLUR, BASELINES)
    assert v["learned"] is True and v["ok"] is False and v["lost_structure"] is True
    assert v["beaten"] == {"ssim": [("black", 0.737)], "mae": [("black", 0.026)]}
    assert verdict_label(v) == "LOST STRUCTURE (SSIM: black; MAE: black)"
    text = verdict_text("tuned", BLUR, BASELINES)
    assert text.startswith("LOST STRUCTURE: tuned: trivial predictors score better on SSIM (its "
                           "0.726; black 0.737) and MAE (its 0.0292; black 0.026)")
    assert "low MSE came with lost structure" in text and "below black frames'" in text

    assert verdict_label(judge_metrics(SHARP, BASELINES)) == "yes"
    assert verdict_text("tuned", SHARP, BASELINES) is None
    # MSE within 10% of black: not learned, named by the metric and the predictor
    flat = {"mse": 0.0180, "mae": 0.0390, "ssim": 0.70}
    assert verdict_label(judge_metrics(flat, BASELINES)) == \
        "NOT LEARNED (MSE: black; SSIM: black; MAE: black, mean-input)"
    assert verdict_text("fixed", flat, BASELINES) == (
        "NOT LEARNED: fixed (skill 0.0625): it does not beat predicting all-black frames by 10% "
        "in MSE (= 0.94x black, 0.65x copy-last, 0.81x mean-input); trivial predictors score "
        "better on SSIM (its 0.7; black 0.737) and MAE (its 0.039; black 0.026, mean-input 0.03), "
        "its SSIM even below black frames'")
    # older stores: metrics missing on either side are not judged
    assert verdict_label(judge_metrics({"mse": 0.011}, BASELINES)) == "yes"
    assert verdict_label(judge_metrics(BLUR, {"black": {"mse": 0.0192}})) == "yes"
    assert verdict_label(judge_metrics(BLUR, None)) == "-"


def test_hpo_run_summary_flags_a_best_trial_beaten_on_ssim() -> None:
    study = optuna.create_study()
    study.set_user_attr("baselines", BASELINES)
    curves = {"val_mse": [0.02, 0.011], "val_mae": [0.035, BLUR["mae"]]}
    study.add_trial(create_trial(
        value=BLUR["mse"], params={"lr": 0.001}, distributions={"lr": FloatDistribution(1e-4, 1)},
        user_attrs={"val_mse": BLUR["mse"], "val_ssim": BLUR["ssim"], "best_epoch": 2,
                    "curves": curves, "model_spec": {"cell": "convlstm"},
                    "train_spec": {"lr": 0.001}}))
    summary = search.summarize(study, "sqlite:///x.db", 1, 1.0, 1)
    assert summary["best"]["val_mae"] == BLUR["mae"]
    assert summary["trivial"]["black"] == {"mse": 0.0192, "mae": 0.026, "ssim": 0.737,
                                           "psnr": 17.5}
    text = search.format_summary(summary)
    assert "best val_mse 0.011 = 0.57x black, 0.39x copy-last; LOST STRUCTURE: black better on " \
           "SSIM (0.737 vs 0.726); black better on MAE (0.026 vs 0.0292) (SSIM below black " \
           "frames': a blur that minimizes MSE) (trial 0): lr=0.001" in text
    summary["trivial"] = {}  # a summary without the trivial scores: MSE alone, as before
    assert "LOST STRUCTURE" not in search.format_summary(summary)


def test_hpo_fixed_summary_flags_lost_structure() -> None:
    summary = {"study": "fixed-a-mmnist-convlstm", "storage": "sqlite:///x.db", "trial": 0,
               "state": "COMPLETE", "stop_reason": "completed", "epochs": 4,
               "best_val_mse": BLUR["mse"], "best_epoch": 4, "val_ssim": BLUR["ssim"],
               "val_psnr": 19.8, "val_metrics": {**BLUR, "psnr": 19.8},
               "baselines": {k: v["mse"] for k, v in BASELINES.items() if k != "split"},
               "trivial": {k: v for k, v in BASELINES.items() if k != "split"},
               "n_params": 1000, "step_ms": 12.0, "device": "cpu", "train_seconds": 3.0,
               "checkpoint": None}
    text = fixed.format_summary(summary)
    assert "LOST STRUCTURE: black better on SSIM (0.737 vs 0.726)" in text
    summary["val_metrics"] = {**SHARP, "psnr": 20.0}
    summary["best_val_mse"] = SHARP["mse"]
    assert "LOST STRUCTURE" not in fixed.format_summary(summary)


def test_hpo_compare_summary_flags_each_row() -> None:
    def row(role: str, m: dict) -> dict:
        return {"cell": "convlstm", "role": role, "n": 2, "test_mse": [m["mse"], 0.001],
                "test_mae": [m["mae"], 0.001], "test_ssim": [m["ssim"], 0.01], "source": role}

    summary = {"study": "compare-a-mmnist", "storage": "sqlite:///x.db", "budget": "small",
               "seeds": [0, 1], "ran": 0, "notes": [],
               "rows": [row("fixed", SHARP), row("optimized", BLUR)],
               "baselines": {k: v["mse"] for k, v in BASELINES.items() if k != "split"},
               "trivial": {k: v for k, v in BASELINES.items() if k != "split"}}
    lines = compare.format_summary(summary).splitlines()
    assert "black mse 0.0192, mae 0.026, ssim 0.737" in lines[1]
    fixed_line, tuned_line = lines[2], lines[3]
    assert "fixed" in fixed_line and "LOST STRUCTURE" not in fixed_line
    assert "mae 0.0292, ssim 0.7260" in tuned_line
    assert "LOST STRUCTURE: black better on SSIM (0.737 vs 0.726)" in tuned_line


def test_hpo_matrix_summary_gives_each_row_its_verdict() -> None:
    from hpo_vidpred.workflows.matrix import format_summary

    def row(role: str, m: dict) -> dict:
        return {"cell": "convlstm", "role": role, "n": 1, "test_mse": [m["mse"], None],
                "test_mae": [m["mae"], None], "test_ssim": [m["ssim"], None]}

    trivial = {k: v for k, v in BASELINES.items() if k != "split"}
    text = format_summary({"storage": "sqlite:///x.db", "seconds": 60.0, "skipped": {},
                           "report": "r", "combinations": [{
                               "data": "mmnist", "arch": "autoencoder", "trivial": trivial,
                               "rows": [row("fixed", SHARP), row("optimized", BLUR)]}]})
    fixed_line, tuned_line = text.splitlines()[1:3]
    assert fixed_line.endswith("test mse 0.009  learned: yes")
    assert tuned_line.endswith("learned: LOST STRUCTURE (SSIM: black; MAE: black)")
