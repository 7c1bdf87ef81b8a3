"""The report's tables about search studies: outcomes, compute, best configurations and each
study's hyperparameters -- scientific (architecture, cell), nuisance (everything else searched)
and fixed, as the deep-learning tuning playbook (Google Research) names them -- with a warning
where a best value sits at the edge of its range (the range was too narrow).

Statistics that need many trials are held back below :data:`MIN_COMPLETE` complete trials, with
a line that says so: with a handful of trials the best one sits at an edge of some range by
chance, and importance estimates are noise.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..search_space import TRAIN_KEYS, param_base
from ..store.records import (TRIVIAL, judge, params_text, study_budget, trained_params, trial_cell,
                             trial_counts, trial_metrics, verdict_text)
from .collect import SearchStudy, Collection, compute_hours
from .tables import NO_BASELINES, SKILL_NOTE, Table, fmt, fmt_int, num, verdict_cells

__all__ = ["EDGE_SHARE", "MIN_COMPLETE", "edge_warnings", "outcome_shares", "best_config_table",
           "front_table", "studies_table", "study_tables", "held_back"]

EDGE_SHARE = 0.05  # the outer share of a float range that counts as its edge
MIN_COMPLETE = 10  # complete trials below which edge warnings and importance are held back
_SKILL = ("trivial predictors: black, copy-last, mean-input, scored on the same validation "
          f"frames; {SKILL_NOTE}; '-': no baselines recorded")


def held_back(s: SearchStudy, what: str) -> Optional[str]:
    """``"<what> held back: 1 complete trial, fewer than 10 ..."`` when the study has fewer than
    :data:`MIN_COMPLETE` complete trials, else None."""
    n = sum(1 for t in s.trials if t.state == TrialState.COMPLETE)
    if n >= MIN_COMPLETE:
        return None
    return (f"{what} held back: {n} complete trial{'s' if n != 1 else ''}, fewer than "
            f"{MIN_COMPLETE}; with so few, the best trial lands on a range's edge and one "
            "hyperparameter looks important by chance")


def edge_warnings(space: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Searched values of ``params`` at the edge of their range in ``space`` (the recorded
    search space), one line each."""
    out = []
    for name, value in params.items():
        base = name if name in space["params"] else param_base(name)
        p = space["params"].get(base)
        if p is None or isinstance(value, bool):
            continue
        if p["type"] == "categorical":
            numeric = [c for c in p["choices"] if isinstance(c, (int, float))
                       and not isinstance(c, bool)]
            if len(numeric) == len(p["choices"]) > 2 and value in (min(numeric), max(numeric)):
                end = "smallest" if value == min(numeric) else "largest"
                out.append(f"{name} = {value} is the {end} choice of {p['choices']}")
            continue
        low, high = p["low"], p["high"]
        if p["type"] == "int":
            at = value in (low, high)
        else:
            scale = (lambda x: math.log(x)) if p.get("log") else (lambda x: x)
            width = scale(high) - scale(low)
            position = (scale(value) - scale(low)) / width if width else 0.5
            at = position <= EDGE_SHARE or position >= 1 - EDGE_SHARE
        if at:
            out.append(f"{name} = {num(value)} sits at the edge of [{num(low)}, {num(high)}]")
    return out


def outcome_shares(trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """Finished trials and the share (%) of them pruned, failed and diverged (a diverged trial is
    also failed); re-queued failures of killed workers do not count (:func:`trial_counts`)."""
    counts = trial_counts(list(trials))
    diverged = sum(1 for t in trials if t.state == TrialState.FAIL and (
        t.user_attrs.get("stop_reason") == "diverged"
        or str(t.user_attrs.get("fail_reason", "")).startswith("diverged")))
    finished = counts["finished"]

    def share(n: int) -> float:
        return 100.0 * n / finished if finished else 0.0
    return {**counts, "diverged": diverged, "pruned_pct": share(counts["pruned"]),
            "failed_pct": share(counts["failed"]), "diverged_pct": share(diverged)}


def best_config_table(store: Collection) -> Optional[Table]:
    """The best complete trial per search study and cell, with its skill against the study's
    trivial predictors on the validation split."""
    rows, notes = [], []
    for s in store.search:
        for cell, t in s.best_per_cell().items():
            params = params_text(t, num)
            rows.append([s.field("data"), s.field("arch"), str(cell), s.name, str(t.number),
                         fmt(s.mse(t), ".4g"), *verdict_cells(trial_metrics(t), s.baselines),
                         fmt_int(t.user_attrs.get("n_params")), params])
            line = verdict_text(f"{s.name} {cell} trial {t.number}", trial_metrics(t),
                                s.baselines)
            notes += [line] if line else []
    if not rows:
        return None
    if any(s.baselines is None for s in store.search):
        notes.append(f"{NO_BASELINES}: " + ", ".join(s.name for s in store.search
                                                     if s.baselines is None))
    return Table("best-configurations", "Best configurations (validation split)",
                 pd.DataFrame(rows, columns=["data", "arch", "cell", "study", "trial", "val_mse",
                                             "skill", "learned", "params", "trained values"]),
                 f"hpo export --study STUDY --per-cell --storage {store.url}",
                 ["params: trainable parameters of the trained network; trained values: the "
                  "configuration as it trained (a value in brackets was sampled and changed by "
                  "the budget, in studies recorded before search spaces were narrowed to it)",
                  _SKILL] + notes, section="studies")


def studies_table(store: Collection) -> Optional[Table]:
    """One row per search study: budget, sampler, pruner, outcomes, compute, best value and its
    skill against the study's trivial predictors (validation split)."""
    rows = []
    for s in store.search:
        o = outcome_shares(s.trials)
        cpu, gpu = compute_hours(s.trials)
        front = s.front()
        metrics = trial_metrics(front[0]) if front else {"mse": None}
        rows.append([s.name, s.field("cell") or "searched", s.field("budget"),
                     f"{s.field('sampler')}, {s.field('pruner')}", str(o["finished"]),
                     str(o["complete"]), f"{o['pruned_pct']:.0f}% / {o['failed_pct']:.0f}% / "
                     f"{o['diverged_pct']:.0f}%", f"{cpu:.3f} / {gpu:.3f}",
                     fmt(metrics["mse"], ".4g"), *verdict_cells(metrics, s.baselines)])
    if not rows:
        return None
    return Table("studies", "Search studies: outcomes and compute", pd.DataFrame(rows, columns=[
        "study", "cell", "budget", "sampler, pruner", "finished", "complete",
        "pruned / failed / diverged", "CPU h / GPU h", "best val_mse", "skill", "learned"]),
        "hpo run --arch ARCH --data DATA [--cell CELL] --trials N --budget B (per study: its "
        "section below)",
        ["pruned / failed / diverged: shares of finished trials; diverged trials are failed "
         "trials with a non-finite loss; CPU h / GPU h: train_seconds of every trial by the "
         "device it ran on", _SKILL], section="studies")


def _describe_param(p: Mapping[str, Any]) -> str:
    if p["type"] == "categorical":
        text = "{" + ", ".join(map(str, p["choices"])) + "}"
    else:
        text = f"[{num(p['low'])}, {num(p['high'])}]" + (" log" if p.get("log") else "") + (
            f" step {num(p['step'])}" if p.get("step") is not None else "")
    if p.get("per_layer"):
        text += f", one per layer ({p['per_layer']})"
    if p.get("when"):
        text += ", when " + ", ".join(f"{k} in {v}" for k, v in p["when"].items())
    return text


def study_tables(store: Collection, s: SearchStudy) -> list[Table]:
    """The hyperparameters of one search study (scientific, nuisance, fixed) with the best value
    per cell and edge warnings."""
    space, spec = s.spec["search_space"], s.spec
    best = s.best_per_cell()
    searched = set(space["params"])
    rows = [["arch", "scientific", f"fixed in this study: {s.field('arch')}", "", ""]]
    if "cell" not in searched:
        pinned = s.field("cell") or spec["model"]["cell"]
        rows.append(["cell", "scientific", f"fixed in this study: {pinned}", "", ""])
    notes = _skill_notes(s, best)
    for name, p in space["params"].items():
        values = []
        for cell, t in best.items():
            trained = trained_params(t)
            value = trained.get(name, ", ".join(num(v) for k, v in trained.items()
                                                if re.fullmatch(rf"{re.escape(name)}_\d+", k)))
            values.append(f"{cell}: {num(value) if value != '' else '-'}")
        role = "scientific" if name == "cell" else "nuisance"
        rows.append([name, role, "searched " + _describe_param(p), "; ".join(values), ""])
    hold = held_back(s, "edge warnings")
    notes += [hold] if hold else []
    for cell, t in best.items() if not hold else ():
        for warning in edge_warnings(space, trained_params(t)):
            notes.append(f"WARNING ({cell} best, trial {t.number}): {warning}: the range was "
                         "probably too narrow; widen it and search again")
            name = param_base(warning.split(" = ")[0])
            for row in rows:
                if row[0] == name:
                    row[4] = "at edge"
    fixed = dict(space.get("fixed", {}))
    train = {k: v for k, v in spec["train"].items() if k not in searched}
    model_config = {k: v for k, v in spec["model"].get("config", {}).items() if k not in searched}
    if "peephole" not in searched:
        fixed.setdefault("peephole", spec["model"].get("peephole"))
    for group, values in (("training", {**train, **{k: v for k, v in fixed.items()
                                                    if k in TRAIN_KEYS}}),
                          ("model", {**model_config, **{k: v for k, v in fixed.items()
                                                        if k not in TRAIN_KEYS and k != "cell"}})):
        text = ", ".join(f"{k}={num(v)}" for k, v in values.items())
        rows.append([f"({group})", "fixed", text, "", ""])
    budget, changes = study_budget(s.attrs)
    o = outcome_shares(s.trials)
    cpu, gpu = compute_hours(s.trials)
    notes += [f"budget {budget}: " + ("; ".join(changes) if changes else "no changes"),
              f"sampler {s.field('sampler')}, pruner {s.field('pruner')}; {o['finished']} "
              f"finished trials: {o['complete']} complete, {o['pruned']} pruned "
              f"({o['pruned_pct']:.0f}%), {o['failed']} failed ({o['failed_pct']:.0f}%), "
              f"{o['diverged']} diverged ({o['diverged_pct']:.0f}%); search compute "
              f"{cpu:.3f} CPU h, {gpu:.3f} GPU h",
              "scientific: what the study is about (architecture, cell); nuisance: tuned so that "
              "the scientific ones are compared at their best; fixed: held constant (training "
              "length and evaluation sizes come from the budget)"]
    warm = [f"trial {t.number} <- {t.user_attrs['warm_start']}" for t in s.trials
            if "warm_start" in t.user_attrs]
    if warm:
        notes.append("warm-started (hpo run --warm-start): " + "; ".join(warm))
    tables = [Table(f"study-{s.name}", f"Study {s.name}: hyperparameters",
                    pd.DataFrame(rows, columns=["hyperparameter", "role", "values",
                                                "best (per cell)", "edge"]),
                    s.command(store.url), notes, section=s.name)]
    return tables + ([front_table(store, s)] if len(s.objectives) > 1 else [])


def front_table(store: Collection, s: SearchStudy) -> Table:
    """A multi-objective study's non-dominated configurations: the objectives, the skill of each
    against the trivial predictors (validation split), the sampled values; best first."""
    rows = []
    for t in s.front():
        params = params_text(t, num)
        rows.append([str(t.number), str(trial_cell(t) or "-"),
                     *(num(v) for v in t.values), *verdict_cells(trial_metrics(t), s.baselines),
                     fmt_int(t.user_attrs.get("n_params")), params])
    return Table(f"front-{s.name}", f"Study {s.name}: Pareto front of "
                 f"{', '.join(s.objectives)}", pd.DataFrame(rows, columns=[
                     "trial", "cell", *s.objectives, "skill", "learned", "params",
                     "trained values"]),
                 f"hpo export --study {s.name} --pick knee --storage {store.url}",
                 ["non-dominated: no other complete trial is at least as good in every objective "
                  "and better in one; ms_per_step measured on each trial's own device", _SKILL],
                 section=s.name)


def _skill_notes(s: SearchStudy, best: Mapping[str, FrozenTrial]) -> list[str]:
    """Per cell: the best val_mse against the trivial predictors on the validation split."""
    if s.baselines is None:
        return [f"best val_mse: {NO_BASELINES}"]
    split = s.baselines.get("split", "val")
    out = []
    for cell, t in best.items():
        v = judge(s.mse(t), s.baselines)
        line = verdict_text(f"{cell} best, trial {t.number}, val_mse {s.mse(t):.4g}",
                            trial_metrics(t), s.baselines)
        out.append(line or (
            f"{cell} best, trial {t.number}: val_mse {s.mse(t):.4g}, skill {fmt(v['skill'], '.3g')} "
            f"against the trivial predictors on the {split} split (= " + ", ".join(
                f"{r:.2f}x {TRIVIAL[n]}" for n, r in v["ratios"].items()
                if r is not None) + ")"))
    return out
