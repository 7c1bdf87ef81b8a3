"""What ``hpo run`` says at its end (:func:`summarize`, ``--json``; :func:`format_summary`, a
few lines), and the one line that warns of a long run (:func:`eta_line`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from ..store import mask_url
from ..store.records import (
    pareto_front,
    ratio_text,
    sampled_differences,
    study_baselines,
    study_objectives,
    trained_params,
    trial_cell,
    trial_counts,
    trial_metrics,
    trial_mse,
    trivial_scores,
    uncounted_numbers,
)

__all__ = ["eta_line", "format_summary", "summarize"]


def eta_line(seconds: float, budget: str, device: str) -> str:
    """The one line that warns of a long run: ``about 8 h per trial at budget seed on cpu``."""
    minutes = seconds / 60
    length = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
    hint = ("; --budget small is the CPU demo" if device.startswith("cpu") and budget != "small"
            else "")
    return f"note: about {length} per trial at budget {budget} on {device}{hint}"


def summarize(study: optuna.Study, storage_url: str, target: int, seconds: float,
              ran: int, notes: list[str] | None = None) -> dict[str, Any]:
    """The end-of-run summary (what ``--json`` prints): ``best`` is the best trial by the first
    objective, ``front`` (several objectives) the Pareto-optimal trials, best-quality first."""
    trials = study.get_trials(deepcopy=False)
    uncounted = uncounted_numbers(trials)
    goals = list(study_objectives(study.user_attrs))
    front = pareto_front(study)
    baselines = study_baselines(study.user_attrs)

    def entry(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
        sampled = sampled_differences(t)  # only in studies recorded before spaces were narrowed
        return {"number": t.number, "value": t.values[0], "values": dict(zip(goals, t.values)),
                "val_mse": trial_mse(t), "params": trained_params(t), "cell": trial_cell(t),
                "val_ssim": t.user_attrs.get("val_ssim"), "val_mae": trial_metrics(t)["mae"],
                **({"sampled": sampled} if sampled else {})}
    return {
        "study": study.study_name,
        "storage": mask_url(storage_url),
        "target": target,
        "objectives": goals,
        "trials": trial_counts(trials),
        "ran_this_run": ran,
        "seconds": round(seconds, 1),
        "best": entry(front[0]) if front else None,
        **({"front": [entry(t) for t in front]} if len(goals) > 1 else {}),
        "baselines": None if baselines is None else {
            name: baselines[name]["mse"] for name in ("black", "copy_last", "mean_input")
            if name in baselines},
        "trivial": trivial_scores(baselines),
        "failures": [{"number": t.number, "reason": t.user_attrs.get(
                          "fail_reason", "its worker stopped (no heartbeat)")}
                     for t in trials
                     if t.state == TrialState.FAIL and t.number not in uncounted],
        "notes": list(notes or []),
    }


def _best_line(best: Mapping[str, Any], baselines: Mapping[str, Any], prefix: str) -> str:
    """``val_mse 0.0093 = 0.50x black, 0.33x copy-last (trial 16): params``; with several
    objectives the ratios follow in brackets."""
    sampled = best.get("sampled", {})
    params = ", ".join(f"{k}={_fmt(v)}" + (f" [sampled {_fmt(sampled[k])}]" if k in sampled
                                           else "") for k, v in best["params"].items()) or "-"
    metrics = {"mae": best.get("val_mae"), "ssim": best.get("val_ssim")}
    ratios = ratio_text(best["val_mse"], baselines, metrics) if best["val_mse"] is not None else ""
    values = ", ".join(f"{k} {v:.6g}" for k, v in best["values"].items())
    if ratios:
        values += f" {ratios}" if list(best["values"]) == ["val_mse"] else \
            f" [val_mse {ratios}]"
    return f"{prefix}{values} (trial {best['number']}): {params}"


def format_summary(summary: Mapping[str, Any]) -> str:
    """The end-of-run summary as a few lines for a terminal."""
    counts = summary["trials"]
    lines = [
        f"study {summary['study']} ({summary['storage']}): {counts['finished']}/{summary['target']}"
        f" finished trials: {counts['complete']} complete, {counts['pruned']} pruned"
        + (f" ({counts['unpromoted']} of them paused at a rung and not promoted)"
           if counts.get("unpromoted") else "") + ", "
        f"{counts['failed']} failed" + (f"; {counts['retried']} lost to a stopped worker and "
                                        "run again" if counts["retried"] else ""),
    ]
    baselines = summary.get("trivial") or {k: {"mse": v}
                                           for k, v in (summary.get("baselines") or {}).items()}
    if summary["best"] is None:
        lines.append("best: none yet (no complete trial)")
    elif "front" in summary:
        lines.append(f"Pareto front of {', '.join(summary['objectives'])} "
                     f"({len(summary['front'])} trials, best {summary['objectives'][0]} first):")
        lines += [_best_line(t, baselines, "  ") for t in summary["front"]]
    else:
        lines.append(_best_line(summary["best"], baselines, "best "))
    by_reason: dict[str, list[int]] = {}
    for failure in summary["failures"]:
        by_reason.setdefault(failure["reason"], []).append(failure["number"])
    for reason, numbers in by_reason.items():
        shown = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
        lines.append(f"failed: {reason} (trial{'s' if len(numbers) > 1 else ''} {shown})")
    minutes, seconds = divmod(summary["seconds"], 60)
    pool = ""
    if "workers" in summary:
        pool = f" ({summary['workers']} worker{'s' if summary['workers'] > 1 else ''} on " \
               f"{', '.join(summary['devices'])})"
    lines.append(f"time used: {int(minutes)} min {seconds:.0f} s for {summary['ran_this_run']} "
                 f"trials in this run{pool}")
    lines += summary["notes"]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)
