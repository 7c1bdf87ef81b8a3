"""The report's numbers and comparison tables, as pandas DataFrames.

Conventions (the report's tests recompute them from the store with the Optuna API):

- per data x arch x cell x role, over the comparison study's complete retrains of the latest
  configuration of that role (``config_id``): mean and sample standard deviation (ddof 1; none for
  one seed) of each test metric; shown as ``f"{mean:.4g} ± {std:.2g}"`` (SSIM ``.4f``, PSNR
  ``.2f``)
- improvement = ``100 * (fixed MSE - tuned MSE) / fixed MSE`` (positive: the tuned model errs
  less), shown as "x% lower / higher MSE"; a difference smaller than the larger of the two
  standard deviations is marked as within the seed-to-seed spread, one with one seed says
  "n=1: spread unknown"
- search compute = the search study's ``train_seconds`` summed over all its trials, split by the
  device they ran on (``cpu`` -> CPU hours, anything else -> GPU hours)
- trivial predictors (all-black frames, the last input frame copied forward, the mean of the input
  frames), scored by the study on the same split and frames as its models (comparisons: test,
  searches: validation): skill = ``1 - MSE / best trivial MSE`` of the mean MSE over seeds (a
  search study: of its best val_mse); a model is *not learned* when its MSE is not at least 10 %
  below the best trivial predictor's, and has *lost structure* when a trivial predictor scores a
  better MAE or SSIM (:func:`hpo_vidpred.store.records.judge_metrics`, one verdict for summaries
  and reports); ``learned`` is true only when neither holds; ``x_<name>`` = MSE / that
  predictor's MSE. Stores of version 0.1 recorded no baselines: skill unknown.
- ms/step: the mean over seeds of each retrain's optimizer-step time on its ``device``;
  ``timing_overlap``: the most other runs of the store that trained on the same machine while
  one of them did (:func:`hpo_vidpred.report.collect.overlaps`; none known: empty)
- a best value sits at the edge of its range when it equals an int range's bound or an ordered
  numeric choice's first or last value, or lies in the outer 5 % of a float range (log scale for
  log ranges)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..specs import METRICS
from ..store.records import (BEATING, LEARNED_MARGIN, TRIVIAL, judge_metrics, study_budget,
                             trial_counts, trial_metrics, verdict_label, verdict_text)
from .collect import CompareStudy, Collection, compute_hours, retrain_frame

__all__ = ["Table", "result_frame", "compare_tables", "skill_summary", "verdict_cells",
           "row_metrics", "fmt_mean_std", "num", "fmt_int", "fmt", "records", "METRICS", "ROLES",
           "ROLE_NAMES", "LABEL", "NO_BASELINES", "COLUMNS", "SKILL_NOTE", "change_text"]

ROLES = ("fixed", "optimized")
ROLE_NAMES = {"fixed": "fixed", "optimized": "tuned", "trivial": "trivial"}
LABEL = "published defaults vs tuned"
NO_BASELINES = "no trivial baselines recorded (store written by hpo-vidpred 0.1); skill unknown"
COLUMNS = ["data", "arch", "cell", "role", "budget", "n", "seeds",
           *(f"test_{m}_{s}" for m in METRICS for s in ("mean", "std")),
           "test_mse_per_step_mean", "n_params", "step_ms_mean", "train_seconds_mean", "source",
           "source_study", "improvement_pct", "search_trials", "search_cpu_hours",
           "search_gpu_hours", "device", "timing_overlap", "skill", "learned", "learned_mse",
           "beaten_by", "best_trivial", *(f"x_{name}" for name in TRIVIAL), "compare_study"]
SKILL_NOTE = ("skill = 1 - MSE / the best trivial predictor's MSE; NOT LEARNED: the MSE is not "
              f"at least {LEARNED_MARGIN:.0%} below the best trivial predictor's; LOST STRUCTURE: "
              "a trivial predictor scores a better MAE or SSIM (named in brackets with the "
              "metric; SSIM below black frames' means a blur that minimizes MSE); yes: neither")


@dataclass
class Table:
    """A titled table (a DataFrame of display strings) with the command that reproduces it and
    notes under it."""

    key: str
    title: str
    frame: pd.DataFrame
    command: str
    notes: list[str] = field(default_factory=list)
    section: str = ""  # the report section it belongs to
    sparse: int = 0  # in HTML, leading columns whose repeated values are left blank


# --------------------------------------------------------------------------- formatting
def num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt_mean_std(mean: Any, std: Any = None, spec: str = ".4g", std_spec: str = ".2g") -> str:
    """``mean ± std`` (just the mean for one seed, ``-`` for none)."""
    if _missing(mean):
        return "-"
    return f"{mean:{spec}}" + ("" if _missing(std) else f" ± {std:{std_spec}}")


def fmt_int(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value):,}"


def fmt(value: Any, spec: str) -> str:
    return "-" if _missing(value) else f"{value:{spec}}"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts, missing values (NaN, NA) as None."""
    return [{k: None if _missing(v) else v for k, v in row.items()}
            for row in frame.to_dict("records")]


# --------------------------------------------------------------------------- skill
def row_metrics(row: Mapping[str, Any], prefix: str = "test_", suffix: str = "_mean"
                ) -> dict[str, Optional[float]]:
    """The MSE, MAE and SSIM of a results row (what a model is judged on)."""
    return {m: None if _missing(row.get(f"{prefix}{m}{suffix}")) else
            float(row[f"{prefix}{m}{suffix}"]) for m in ("mse", "mae", "ssim")}


def verdict_cells(metrics: Mapping[str, Any], baselines: Optional[Mapping[str, Any]]
                  ) -> tuple[str, str]:
    """(skill, learned) as table cells: ``"0.42", "yes"`` / ``"-0.1", "NOT LEARNED (MSE:
    copy-last)"`` / ``"0.42", "LOST STRUCTURE (SSIM: black)"`` / ``"-", "-"`` without
    baselines (:func:`hpo_vidpred.store.records.verdict_label`)."""
    v = judge_metrics({k: None if _missing(x) else float(x) for k, x in metrics.items()},
                      baselines)
    if v["learned"] is None:
        return "-", "-"
    return fmt(v["skill"], ".3g"), verdict_label(v)


def skill_summary(store: Collection, results: pd.DataFrame) -> list[str]:
    """The report's opening lines: which models did not learn or lost structure (comparisons on
    the test split, search studies' best trials on the validation split), or that all learned;
    what is unknown."""
    lines, unknown, judged = [], [], 0
    for c in store.compare:
        if c.baselines is None:
            unknown.append(f"comparison {c.name}")
            continue
        for r in records(results[(results.compare_study == c.name)
                                 & (results.role != "trivial")]):
            judged += 1
            line = verdict_text(f"{r['data']} / {r['arch']} / {r['cell']} "
                                f"{ROLE_NAMES[r['role']]}", row_metrics(r), c.baselines)
            lines += [line] if line else []
    for s in store.search:
        if s.baselines is None:
            unknown.append(f"search study {s.name}")
            continue
        for cell, t in s.best_per_cell().items():
            judged += 1
            line = verdict_text(f"{s.field('data')} / {s.field('arch')} / {cell} best of search "
                                f"study {s.name} (trial {t.number}, validation split)",
                                trial_metrics(t), s.baselines)
            lines += [line] if line else []
    if judged and not lines:
        lines.append(("Every model" if not unknown else "Every model with recorded baselines")
                     + " beat the trivial predictors (black, copy-last, mean-input): by at least "
                     f"{LEARNED_MARGIN:.0%} in MSE, and on MAE and SSIM where recorded.")
    if unknown:
        lines.append(", ".join(unknown) + f": {NO_BASELINES}")
    return lines


# --------------------------------------------------------------------------- results
def _mean_steps(series: pd.Series) -> str:
    steps = [s for s in series if s is not None]
    return " ".join(f"{v:.6g}" for v in np.mean(steps, axis=0)) if steps else ""


def _devices(series: pd.Series) -> str:
    return ", ".join(sorted({str(d) for d in series if not _missing(d)}))


def _comparison_frame(store: Collection, c: CompareStudy) -> pd.DataFrame:
    retrains = retrain_frame(c)
    base = {"data": c.field("data"), "arch": c.field("arch"), "budget": c.field("budget"),
            "compare_study": c.name}
    parts = []
    if not retrains.empty:
        numeric = [f"test_{m}" for m in METRICS] + ["n_params", "step_ms", "train_seconds"]
        retrains[numeric] = retrains[numeric].apply(pd.to_numeric, errors="coerce")
        retrains["overlap"] = [store.overlap(t) for t in retrains.trial]
        stats = retrains.groupby(["cell", "role"], sort=False).agg(
            n=("seed", "size"), seeds=("seed", lambda s: " ".join(map(str, s))),
            **{f"test_{m}_{stat}": (f"test_{m}", stat) for m in METRICS
               for stat in ("mean", "std")},
            test_mse_per_step_mean=("test_mse_per_step", _mean_steps),
            n_params=("n_params", "first"), step_ms_mean=("step_ms", "mean"),
            train_seconds_mean=("train_seconds", lambda s: s.fillna(0.0).mean()),
            device=("device", _devices), timing_overlap=("overlap", "max"),
            source=("source", "first"), source_study=("source_study", "first")).reset_index()
        stats = stats.assign(**base)
        stats[["source", "source_study"]] = stats[["source", "source_study"]].fillna("")
        fixed = stats.loc[stats.role == "fixed"].set_index("cell")["test_mse_mean"]
        fixed_mse = stats.cell.map(fixed)
        stats["improvement_pct"] = (100 * (fixed_mse - stats.test_mse_mean) / fixed_mse).where(
            (stats.role == "optimized") & (fixed_mse > 0))
        extra = []
        for r in records(stats):
            search = store.search_study(r["source_study"]) if r["role"] == "optimized" else None
            v = judge_metrics(row_metrics(r), c.baselines)
            extra.append({"skill": v["skill"], "learned": v["ok"], "learned_mse": v["learned"],
                          "beaten_by": " ".join(f"{m}:{n}" for m, who in v["beaten"].items()
                                                for n, _ in who),
                          "best_trivial": v["best_trivial"],
                          **{f"x_{name}": ratio for name, ratio in v["ratios"].items()}})
            if search is not None:
                extra[-1]["search_trials"] = trial_counts(search.trials)["finished"]
                extra[-1]["search_cpu_hours"], extra[-1]["search_gpu_hours"] = compute_hours(
                    search.trials)
        stats = pd.concat([stats, pd.DataFrame(extra, index=stats.index)], axis=1)
        parts.append(stats)
    baselines = c.baselines or {}
    trivial = [{**base, "cell": label, "role": "trivial",
                **{f"test_{m}_mean": baselines[name].get(m) for m in METRICS},
                "test_mse_per_step_mean": " ".join(
                    f"{v:.6g}" for v in baselines[name].get("mse_per_step", [])),
                "source": f"trivial predictor ({BEATING[name]}) on the "
                          f"{baselines.get('split', 'test')} split"}
               for name, label in TRIVIAL.items() if name in baselines]
    if trivial:
        parts.append(pd.DataFrame(trivial))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def result_frame(store: Collection) -> pd.DataFrame:
    """One row per data x arch x cell x role and per trivial predictor of each comparison (role
    ``trivial``, cell its label): what ``results.csv`` holds, columns :data:`COLUMNS`."""
    frames = [f for f in (_comparison_frame(store, c) for c in store.compare) if not f.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame = frame.reindex(columns=COLUMNS)
    frame = frame.astype({"n": "Int64", "n_params": "Int64", "search_trials": "Int64",
                          "timing_overlap": "Int64", "learned": "boolean",
                          "learned_mse": "boolean"})
    return frame.astype({c: "float64" for c in COLUMNS if c.startswith(("test_", "x_")) and
                         c != "test_mse_per_step_mean"} | {
        c: "float64" for c in ("step_ms_mean", "train_seconds_mean", "improvement_pct",
                               "search_cpu_hours", "search_gpu_hours", "skill")})


# --------------------------------------------------------------------------- the tables
def _compare_command(store: Collection, c: CompareStudy, rows: Sequence[Mapping[str, Any]]) -> str:
    cells = ",".join(dict.fromkeys(r["cell"] for r in rows))
    n = max(r["n"] for r in rows)
    return (f"hpo compare --arch {c.field('arch')} --data {c.field('data')} --cells {cells} "
            f"--seeds {n} --budget {c.field('budget')} --storage {store.url}")


METRIC_SPECS = {"mse": (".4g", ".2g"), "mae": (".4g", ".2g"), "ssim": (".4f", ".2g"),
                "psnr": (".2f", ".2g"), "mse_frame": (".4g", ".2g")}


def metric_cells(r: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """``mean ± std`` of each test metric in ``names`` of a results row."""
    return [fmt_mean_std(r.get(f"test_{m}_mean"), r.get(f"test_{m}_std"), *METRIC_SPECS[m])
            for m in names]


def change_text(fixed: Mapping[str, Any], tuned: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    """The tuned model's MSE against the fixed one's (``"17.7% lower MSE (n=1: spread
    unknown)"``) and, when the difference is within the seed-to-seed spread, a note saying so."""
    pct = tuned.get("improvement_pct")
    if _missing(pct):
        return "-", None
    text = f"{abs(pct):.1f}% {'lower' if pct >= 0 else 'higher'} MSE"
    spread = max(x for x in (fixed.get("test_mse_std"), tuned.get("test_mse_std"), -1.0)
                 if not _missing(x))
    difference = abs(fixed["test_mse_mean"] - tuned["test_mse_mean"])
    if spread < 0:
        return text + " (n=1: spread unknown)", None
    if difference < spread:
        return text + " (within seed spread)", (
            f"{tuned['cell']}: the fixed-vs-tuned difference ({difference:.2g}) is smaller than "
            f"the seed-to-seed spread ({spread:.2g}): not a result")
    return text, None


def timing_cell(r: Mapping[str, Any]) -> str:
    """``"132.4 on cpu, shared"``: ms per step, the device, and whether other runs of the store
    trained on that machine at the same time (``shared?``: not recorded)."""
    if _missing(r.get("step_ms_mean")):
        return "-"
    overlap = r.get("timing_overlap")
    shared = "shared?" if _missing(overlap) else ("shared" if overlap > 0 else "alone")
    return f"{r['step_ms_mean']:.1f} on {r.get('device') or '?'}, {shared}"


TIMING_NOTE = ("ms/step: mean over the seeds' optimizer steps (validation excluded) on the device "
               "named; shared: other runs of this store trained on the same machine at the same "
               "time, so the time is indicative only; alone: none did (other processes on the "
               "machine are not recorded); shared?: the store does not say when it trained")


def compare_tables(store: Collection, c: CompareStudy, frame: pd.DataFrame) -> list[Table]:
    """The tables of one comparison (its rows of :func:`result_frame`): quality with the trivial
    predictors and skill, cost and (two cells) tuned vs tuned."""
    data, arch = c.field("data"), c.field("arch")
    rows = [r for r in records(frame) if r["role"] in ROLES]
    trivial = [r for r in records(frame) if r["role"] == "trivial"]
    command = _compare_command(store, c, rows)
    by = {(r["cell"], r["role"]): r for r in rows}
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    budget, changes = study_budget(c.attrs)
    quality, cost, spread_notes, learned_notes = [], [], [], []
    names = ("mse", "mae", "ssim", "psnr", "mse_frame")
    for cell in cells:
        f, o = by.get((cell, "fixed"), {}), by.get((cell, "optimized"), {})
        change, note = change_text(f, o) if f and o else ("-", None)
        spread_notes += [note] if note else []
        for r in (f, o):
            if not r:
                continue
            quality.append([arch, cell, ROLE_NAMES[r["role"]], str(r["n"]),
                            *metric_cells(r, names), change if r is o else "-",
                            *verdict_cells(row_metrics(r), c.baselines)])
            line = verdict_text(f"{cell} {ROLE_NAMES[r['role']]}", row_metrics(r), c.baselines)
            learned_notes += [line] if line else []
        cost.append([arch, cell, fmt_int(f.get("n_params")), fmt_int(o.get("n_params")),
                     timing_cell(f), timing_cell(o),
                     fmt(f.get("train_seconds_mean"), ".1f"),
                     fmt(o.get("train_seconds_mean"), ".1f"), o.get("source_study") or "-",
                     fmt_int(o.get("search_trials")), fmt(o.get("search_cpu_hours"), ".3f"),
                     fmt(o.get("search_gpu_hours"), ".3f")])
    quality += [[arch, r["cell"], "trivial", "-", *metric_cells(r, names), "-", "-", "-"]
                for r in trivial]
    seeds = "n = seeds; mean ± sample standard deviation"
    label = (f"'{LABEL}': the seed's published configuration against the best one the search "
             "found; both retrained with the same seeds and budget. This is not a fair 'A beats "
             "B' comparison (only one side was tuned).")
    split = (c.baselines or {}).get("split", "test")
    skill = (NO_BASELINES if c.baselines is None else
             f"trivial: predicting all-black frames (black), the last input frame copied forward "
             f"(copy-last) and the mean of the input frames (mean-input), scored on the same "
             f"{split} frames; {SKILL_NOTE} (means over seeds)")
    budget_note = f"budget {budget}: " + ("; ".join(changes) if changes else "no changes")
    key = f"{data}-{arch}"
    tables = [
        Table(f"quality-{key}", f"{data} / {arch}: test split, {LABEL} (fixed vs optimized)",
              pd.DataFrame(quality, columns=[
                  "arch", "cell", "role", "n", "MSE", "MAE", "SSIM", "PSNR (dB)", "MSE/frame",
                  "tuned vs fixed", "skill", "learned"]), command,
              [label, seeds, skill, budget_note] + learned_notes + spread_notes, section=data),
        Table(f"cost-{key}", f"{data} / {arch}: size, speed and search compute",
              pd.DataFrame(cost, columns=[
                  "arch", "cell", "params fixed", "params tuned", "ms/step fixed",
                  "ms/step tuned", "retrain s fixed", "retrain s tuned", "search study",
                  "search trials", "search CPU h", "search GPU h"]), command,
              [TIMING_NOTE + "; retrain s: wall time of one retrain; search compute: "
               "train_seconds of every trial of the search study", budget_note], section=data),
    ]
    cell_table = _cells_table(store, c, by, cells, command)
    return tables + ([cell_table] if cell_table else [])


def _cells_table(store: Collection, c: CompareStudy, by: Mapping, cells: Sequence[str],
                 command: str) -> Optional[Table]:
    tuned = [by.get((cell, "optimized")) for cell in cells]
    if len(cells) != 2 or not all(tuned):
        return None
    a, b = tuned
    sources = [store.search_study(r["source_study"]) for r in tuned]
    same = all(sources) and (len({s.name for s in sources}) == 1 or len({(
        trial_counts(s.trials)["finished"], s.field("budget"), s.field("sampler"))
        for s in sources}) == 1)
    difference = 100 * (a["test_mse_mean"] - b["test_mse_mean"]) / a["test_mse_mean"]
    spread = max(x for x in (a.get("test_mse_std"), b.get("test_mse_std"), -1.0)
                 if not _missing(x))
    within = 0 <= spread and abs(a["test_mse_mean"] - b["test_mse_mean"]) < spread
    row = [c.field("arch"), fmt_mean_std(a["test_mse_mean"], a.get("test_mse_std")),
           fmt_mean_std(b["test_mse_mean"], b.get("test_mse_std")),
           (f"{difference:+.1f}% lower MSE" if difference >= 0 else
            f"{-difference:.1f}% higher MSE") + (" (n=1)" if spread < 0 else ""),
           "yes" if same else "no",
           "yes" if within else ("unknown (n=1)" if spread < 0 else "no")]
    return Table(
        f"cells-{c.field('data')}-{c.field('arch')}",
        f"{c.field('data')} / {c.field('arch')}: {cells[0]} vs {cells[1]}, both tuned",
        pd.DataFrame([row], columns=[
            "arch", f"MSE {cells[0]} tuned", f"MSE {cells[1]} tuned", f"{cells[1]} vs {cells[0]}",
            "same search budget", "within seed spread"]),
        command,
        ["A fair cell comparison needs both cells tuned with the same budget (same trials, "
         "budget and sampler); 'same search budget' says whether they were. With one seed (n=1) "
         "the spread is unknown and a difference is not yet a result."],
        section=c.field("data"))
