"""A model against the trivial predictors, in one place: ratios, skill and the verdicts that every
summary and report shows.

- :func:`judge`: a model whose MSE is not at least :data:`LEARNED_MARGIN` below the best
  trivial predictor's has not learned;
- :func:`judge_metrics`: besides, a trivial predictor that scores a better MAE or SSIM means the
  model lost structure (typically the blur that minimizes MSE);
- :func:`verdict_label` (a table cell), :func:`verdict_text` (a sentence), :func:`ratio_text`
  (a summary line's tail) say so, naming the metric and the predictor.

The trivial predictors' metrics are what a study records as its ``baselines``
(:func:`hpo_vidpred.store.records.study_baselines`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["BEATING", "LEARNED_MARGIN", "STRUCTURE", "TRIVIAL", "judge", "judge_metrics",
           "ratio_text", "trivial_scores", "verdict_label", "verdict_text"]

TRIVIAL = {"black": "black", "copy_last": "copy-last", "mean_input": "mean-input"}
LEARNED_MARGIN = 0.10  # a model must beat the best trivial predictor by this share to count
BEATING = {"black": "predicting all-black frames", "copy_last": "copying the last frame",
           "mean_input": "predicting the mean input frame"}
# metrics besides MSE on which a trivial predictor must not beat a model, and which way is better
STRUCTURE = {"ssim": "higher", "mae": "lower"}


def judge(mse: float | None, baselines: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model's MSE against the trivial predictors on the same split and frames: ``ratios``
    (name -> MSE / that predictor's MSE), ``best_trivial`` (its name), ``skill`` (1 - MSE / the
    best trivial MSE) and ``learned`` (beats the best trivial predictor by
    :data:`LEARNED_MARGIN`); all None without baselines or MSE."""
    if mse is None or not baselines:
        return {"ratios": {}, "best_trivial": None, "skill": None, "learned": None}
    trivial = {name: baselines[name]["mse"] for name in TRIVIAL if name in baselines}
    best = min(trivial, key=trivial.get)
    return {"ratios": {name: mse / value if value > 0 else None for name, value in trivial.items()},
            "best_trivial": best, "skill": 1.0 - mse / trivial[best] if trivial[best] > 0 else None,
            "learned": mse <= (1.0 - LEARNED_MARGIN) * trivial[best]}


def judge_metrics(metrics: Mapping[str, Any], baselines: Mapping[str, Any] | None
                  ) -> dict[str, Any]:
    """:func:`judge` of ``metrics["mse"]``, and every trivial predictor that scores better than
    the model on a metric of :data:`STRUCTURE` (SSIM, MAE; strictly, without a margin):
    ``beaten`` = metric -> [(predictor, its value)], best predictor first; ``lost_structure``
    (its SSIM is below black frames'); ``ok``: learned and beaten on nothing (None without
    baselines). Metrics the model or the baselines lack are not judged (older stores)."""
    verdict = judge(metrics.get("mse"), baselines)
    beaten: dict[str, list[tuple[str, float]]] = {}
    for metric, better in STRUCTURE.items():
        value = metrics.get(metric)
        if value is None or not baselines or not _finite(value):
            continue
        scores = [(name, float(baselines[name][metric])) for name in TRIVIAL
                  if name in baselines and _finite(baselines[name].get(metric))]
        winners = [(n, v) for n, v in scores if (v > value if better == "higher" else v < value)]
        if winners:
            beaten[metric] = sorted(winners, key=lambda nv: nv[1], reverse=better == "higher")
    ok = None if verdict["learned"] is None else bool(verdict["learned"] and not beaten)
    return {**verdict, "beaten": beaten, "ok": ok,
            "lost_structure": any(n == "black" for n, _ in beaten.get("ssim", ()))}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def verdict_label(verdict: Mapping[str, Any]) -> str:
    """A table cell for a :func:`judge_metrics` verdict: ``yes``; ``NOT LEARNED (MSE:
    copy-last)``; ``LOST STRUCTURE (SSIM: black; MAE: black, copy-last)``; ``-`` without
    baselines. Each part names the metric and the trivial predictors that beat the model on it."""
    if verdict["learned"] is None:
        return "-"
    parts = [] if verdict["learned"] else [f"MSE: {TRIVIAL[verdict['best_trivial']]}"]
    parts += [f"{m.upper()}: " + ", ".join(TRIVIAL[n] for n, _ in who)
              for m, who in verdict["beaten"].items()]
    if not parts:
        return "yes"
    return ("NOT LEARNED" if not verdict["learned"] else "LOST STRUCTURE") + \
        f" ({'; '.join(parts)})"


def verdict_text(what: str, metrics: Mapping[str, Any],
                 baselines: Mapping[str, Any] | None) -> str | None:
    """A model's verdict in words, or None when it learned and no trivial predictor beats it on
    any metric (or nothing can be judged): ``NOT LEARNED: <what> (skill 0.04): it does not beat
    copying the last frame by 10% in MSE (= 0.91x black, 0.96x copy-last)``, and/or ``LOST
    STRUCTURE: <what>: trivial predictors score better on SSIM (its 0.726; black 0.737) ...``,
    with a plain sentence when a low MSE came with an SSIM below black frames'."""
    v = judge_metrics(metrics, baselines)
    if v["ok"] is None or v["ok"]:
        return None
    lines = []
    if not v["learned"]:
        ratios = ", ".join(f"{r:.2f}x {TRIVIAL[n]}" for n, r in v["ratios"].items()
                           if r is not None)
        lines.append(f"NOT LEARNED: {what} (skill {v['skill']:.3g}): it does not beat "
                     f"{BEATING[v['best_trivial']]} by {LEARNED_MARGIN:.0%} in MSE (= {ratios})")
    if v["beaten"]:
        beats = " and ".join(
            f"{metric.upper()} (its {metrics[metric]:.4g}; " + ", ".join(
                f"{TRIVIAL[n]} {value:.4g}" for n, value in who) + ")"
            for metric, who in v["beaten"].items())
        text = ("" if lines else f"LOST STRUCTURE: {what}: ") + \
            f"trivial predictors score better on {beats}"
        if v["lost_structure"]:
            text += (". Its low MSE came with lost structure: an SSIM below black frames' means "
                     "it predicts a blur that minimizes MSE, not the moving shapes"
                     if v["learned"] else ", its SSIM even below black frames'")
        lines.append(text)
    return "; ".join(lines)


def ratio_text(mse: float | None, baselines: Mapping[str, Any] | None,
               metrics: Mapping[str, Any] | None = None) -> str:
    """``"= 0.51x black, 0.33x copy-last"`` (and ``"; NOT LEARNED: ..."`` when it did not beat
    the best trivial predictor by 10%, ``"; LOST STRUCTURE: ..."`` when one beats it on a metric
    of :data:`STRUCTURE` given in ``metrics``); ``""`` without baselines."""
    verdict = judge_metrics({**(metrics or {}), "mse": mse}, baselines)
    if verdict["best_trivial"] is None:
        return ""
    ratios = verdict["ratios"]
    text = "= " + ", ".join(f"{ratios[n]:.2f}x {TRIVIAL[n]}" for n in ("black", "copy_last")
                            if ratios.get(n) is not None)
    if not verdict["learned"]:
        text += (f"; NOT LEARNED: it does not beat predicting {TRIVIAL[verdict['best_trivial']]}"
                 f" frames by {LEARNED_MARGIN:.0%}")
    if verdict["beaten"]:
        text += "; LOST STRUCTURE: " + "; ".join(
            f"{', '.join(TRIVIAL[n] for n, _ in who)} better on {m.upper()} "
            f"({who[0][1]:.4g} vs {metrics[m]:.4g})" for m, who in verdict["beaten"].items())
        if verdict["lost_structure"]:
            text += " (SSIM below black frames': a blur that minimizes MSE)"
    return text


def trivial_scores(baselines: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """The trivial predictors' MSE, MAE, SSIM and PSNR (what summaries carry to judge by)."""
    return {name: {m: baselines[name][m] for m in ("mse", "mae", "ssim", "psnr")
                   if m in baselines[name]}
            for name in TRIVIAL if baselines and name in baselines}
