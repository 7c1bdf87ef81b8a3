"""The report's numbers: studies read from the store into rows and tables.

Conventions (the report's test recomputes them from the store with the Optuna API):

- per data x arch x cell x role, over the comparison study's complete retrains of the latest
  configuration of that role (``config_id``): mean and sample standard deviation (ddof 1; none for
  one seed) of each test metric; shown as ``f"{mean:.4g} ± {std:.2g}"`` (SSIM ``.4f``, PSNR
  ``.2f``)
- improvement = ``100 * (fixed MSE - tuned MSE) / fixed MSE`` (positive: the tuned model errs
  less); a difference smaller than the larger of the two standard deviations is marked as
  within the seed-to-seed spread
- search compute = the search study's ``train_seconds`` summed over all its trials, split by the
  device they ran on (``cpu`` -> CPU hours, anything else -> GPU hours)
- a best value sits at the edge of its range when it equals an int range's bound or an ordered
  numeric choice's first or last value, or lies in the outer 5 % of a float range (log scale for
  log ranges)
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .export import best_trials, study_budget, study_kind, trial_cell
from .study import trial_counts

__all__ = ["Table", "SearchStudy", "CompareStudy", "Store", "collect", "result_rows",
           "role_groups", "compute_hours", "compare_tables", "fmt_mean_std", "num", "fmt_int",
           "METRICS", "ROLES", "LABEL"]

METRICS = ("mse", "mse_frame", "mae", "psnr", "ssim")
ROLES = ("fixed", "optimized")
LABEL = "published defaults vs tuned"


# --------------------------------------------------------------------------- collection
@dataclass
class SearchStudy:
    """A study of ``hpo run``."""

    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]
    study: optuna.Study

    @property
    def spec(self) -> dict[str, Any]:
        return self.attrs["spec"]

    def field(self, key: str) -> Any:
        return self.spec["study"].get(key, "")

    def best_per_cell(self) -> dict[str, FrozenTrial]:
        return {trial_cell(t): t for t in reversed(best_trials(self.study, 1, per_cell=True))}

    def command(self, storage: str) -> str:
        finished = trial_counts(self.trials)["finished"]
        cell = f" --cell {self.field('cell')}" if self.field("cell") else ""
        return (f"hpo run --arch {self.field('arch')} --data {self.field('data')}{cell} "
                f"--trials {finished} --budget {self.field('budget')} --sampler "
                f"{self.field('sampler')} --pruner {self.field('pruner')} --storage {storage}")


@dataclass
class CompareStudy:
    """A study of ``hpo compare``."""

    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]

    def field(self, key: str) -> Any:
        return self.attrs["spec"]["compare"][key]


@dataclass
class Store:
    """The studies a report covers."""

    url: str  # masked
    pattern: str
    search: list[SearchStudy] = field(default_factory=list)
    compare: list[CompareStudy] = field(default_factory=list)
    other: list[tuple[str, str, int]] = field(default_factory=list)  # name, kind, trials

    def search_study(self, name: str) -> Optional[SearchStudy]:
        return next((s for s in self.search if s.name == name), None)


def collect(storage: Any, url: str, pattern: str = "*") -> Store:
    """Read every study whose name matches ``pattern`` (a glob, or several separated by commas)
    from ``storage``."""
    store = Store(url=url, pattern=pattern)
    globs = [g.strip() for g in pattern.split(",") if g.strip()] or ["*"]
    for name in sorted(optuna.get_all_study_names(storage)):
        if not any(fnmatch.fnmatchcase(name, g) for g in globs):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        attrs, trials = dict(study.user_attrs), study.get_trials(deepcopy=False)
        kind = study_kind(attrs)
        if kind == "search":
            store.search.append(SearchStudy(name, attrs, trials, study))
        elif kind == "compare":
            store.compare.append(CompareStudy(name, attrs, trials))
        else:
            store.other.append((name, kind, len(trials)))
    order = _order()
    store.search.sort(key=lambda s: (order(s.field("data"), s.field("arch")), s.name))
    store.compare.sort(key=lambda c: (order(c.field("data"), c.field("arch")), c.name))
    return store


def _order():
    from . import archs, data
    from .cells import CELLS

    datasets, architectures, cells = data.DATASETS.names(), archs.ARCHS.names(), CELLS.names()

    def rank(d: str, a: str = "", c: str = "") -> tuple:
        return tuple(seq.index(x) if x in seq else len(seq)
                     for seq, x in ((datasets, d), (architectures, a), (cells, c)))
    return rank


# --------------------------------------------------------------------------- numbers
def role_groups(compare: CompareStudy) -> dict[tuple[str, str], list[FrozenTrial]]:
    """(cell, role) -> complete retrains of the most recently finished configuration."""
    by_config: dict[tuple[str, str], dict[str, list[FrozenTrial]]] = {}
    for t in compare.trials:
        if t.state != TrialState.COMPLETE or "role" not in t.user_attrs:
            continue
        a = t.user_attrs
        by_config.setdefault((a["cell"], a["role"]), {}).setdefault(a["config_id"], []).append(t)
    out = {}
    for key, groups in by_config.items():
        latest = max(groups.values(), key=lambda g: max(t.datetime_complete for t in g))
        out[key] = sorted(latest, key=lambda t: t.user_attrs["seed"])
    return out


def _stats(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None


def compute_hours(trials: Iterable[FrozenTrial]) -> tuple[float, float]:
    """(CPU hours, GPU hours) of ``train_seconds`` over ``trials``."""
    cpu = gpu = 0.0
    for t in trials:
        seconds = t.user_attrs.get("train_seconds") or 0.0
        if str(t.user_attrs.get("device", "cpu")).startswith("cpu"):
            cpu += seconds
        else:
            gpu += seconds
    return cpu / 3600, gpu / 3600


def result_rows(store: Store) -> list[dict[str, Any]]:
    """One row per data x arch x cell x role (what ``results.csv`` holds)."""
    from .cells import CELLS

    rows = []
    for c in store.compare:
        groups = role_groups(c)
        for cell in sorted({k[0] for k in groups}, key=lambda x: (CELLS.names() + [x]).index(x)):
            fixed_mse = _stats([t.user_attrs["test_mse"] for t in groups.get((cell, "fixed"), [])])
            for role in ROLES:
                group = groups.get((cell, role), [])
                if not group:
                    continue
                a0 = group[0].user_attrs
                row: dict[str, Any] = {"data": c.field("data"), "arch": c.field("arch"),
                                       "cell": cell, "role": role, "budget": c.field("budget"),
                                       "n": len(group), "seeds": " ".join(
                                           str(t.user_attrs["seed"]) for t in group)}
                for metric in METRICS:
                    mean, std = _stats([t.user_attrs[f"test_{metric}"] for t in group])
                    row[f"test_{metric}_mean"], row[f"test_{metric}_std"] = mean, std
                steps = np.mean([t.user_attrs["test_mse_per_step"] for t in group], axis=0)
                row["test_mse_per_step_mean"] = " ".join(f"{v:.6g}" for v in steps)
                row["n_params"] = a0.get("n_params")
                row["step_ms_mean"] = _stats([t.user_attrs.get("step_ms") or math.nan
                                              for t in group])[0]
                row["train_seconds_mean"] = _stats([t.user_attrs.get("train_seconds") or 0.0
                                                    for t in group])[0]
                row["source"] = a0.get("source", "")
                row["source_study"] = a0.get("source_study", "")
                row["improvement_pct"] = (100 * (fixed_mse[0] - row["test_mse_mean"])
                                          / fixed_mse[0] if role == "optimized"
                                          and fixed_mse[0] else None)
                search = store.search_study(row["source_study"]) if role == "optimized" else None
                if search is not None:
                    row["search_trials"] = trial_counts(search.trials)["finished"]
                    row["search_cpu_hours"], row["search_gpu_hours"] = compute_hours(
                        search.trials)
                rows.append(row)
    return rows


# --------------------------------------------------------------------------- formatting
def num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_mean_std(mean: Optional[float], std: Optional[float], spec: str = ".4g",
                 std_spec: str = ".2g") -> str:
    """``mean ± std`` (just the mean for one seed, ``-`` for none)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:{spec}}" + (f" ± {std:{std_spec}}" if std is not None else "")


@dataclass
class Table:
    """A titled table with the command that reproduces it and notes under it."""

    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    command: str
    notes: list[str] = field(default_factory=list)
    section: str = ""  # the report section it belongs to


# --------------------------------------------------------------------------- the tables
def _compare_command(store: Store, c: CompareStudy, rows: Sequence[Mapping[str, Any]]) -> str:
    cells = ",".join(dict.fromkeys(r["cell"] for r in rows))
    n = max(r["n"] for r in rows)
    return (f"hpo compare --arch {c.field('arch')} --data {c.field('data')} --cells {cells} "
            f"--seeds {n} --budget {c.field('budget')} --storage {store.url}")


def compare_tables(store: Store, c: CompareStudy, rows: Sequence[Mapping[str, Any]]
                   ) -> list[Table]:
    """The tables of one comparison: quality, cost and (two cells) tuned vs tuned."""
    data, arch = c.field("data"), c.field("arch")
    command = _compare_command(store, c, rows)
    by = {(r["cell"], r["role"]): r for r in rows}
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    budget, changes = study_budget(c.attrs)
    quality, cost, spread_notes = [], [], []
    for cell in cells:
        f, o = by.get((cell, "fixed"), {}), by.get((cell, "optimized"), {})
        n = f"{f.get('n', 0)}/{o.get('n', 0)}" if f.get("n") != o.get("n") else str(f.get("n"))
        change = "-"
        if o.get("improvement_pct") is not None:
            change = f"{o['improvement_pct']:+.1f}%"
            spread = max(x for x in (f.get("test_mse_std"), o.get("test_mse_std"), -1.0)
                         if x is not None)
            difference = abs(f["test_mse_mean"] - o["test_mse_mean"])
            if spread < 0:
                change += " (n=1: spread unknown)"
            elif difference < spread:
                change += " (within seed spread)"
                spread_notes.append(f"{cell}: the fixed-vs-tuned difference ({difference:.2g}) is "
                                    f"smaller than the seed-to-seed spread ({spread:.2g}): not "
                                    "a result")
        quality.append([arch, cell, n] + [fmt_mean_std(r.get(f"test_{m}_mean"),
                                                       r.get(f"test_{m}_std"), *spec)
                                          for m, spec in (("mse", ()),) for r in (f, o)]
                       + [change]
                       + [fmt_mean_std(r.get(f"test_{m}_mean"), r.get(f"test_{m}_std"), *spec)
                          for m, spec in (("ssim", (".4f", ".2g")), ("psnr", (".2f", ".2g")),
                                          ("mse_frame", ())) for r in (f, o)])
        cost.append([arch, cell, fmt_int(f.get("n_params")), fmt_int(o.get("n_params")),
                     _fmt(f.get("step_ms_mean"), ".1f"), _fmt(o.get("step_ms_mean"), ".1f"),
                     _fmt(f.get("train_seconds_mean"), ".1f"),
                     _fmt(o.get("train_seconds_mean"), ".1f"), o.get("source_study", "-"),
                     str(o.get("search_trials", "-")), _fmt(o.get("search_cpu_hours"), ".3f"),
                     _fmt(o.get("search_gpu_hours"), ".3f")])
    seeds = "n = seeds (fixed/tuned where they differ); mean ± sample standard deviation"
    label = (f"'{LABEL}': the seed's published configuration against the best one the search "
             "found; both retrained with the same seeds and budget. This is not a fair 'A beats "
             "B' comparison (only one side was tuned).")
    budget_note = f"budget {budget}: " + ("; ".join(changes) if changes else "no changes")
    key = f"{data}-{arch}"
    tables = [
        Table(f"quality-{key}", f"{data} / {arch}: test split, {LABEL} (fixed vs optimized)",
              ["arch", "cell", "n", "MSE fixed", "MSE tuned", "improvement", "SSIM fixed",
               "SSIM tuned", "PSNR fixed (dB)", "PSNR tuned (dB)", "MSE/frame fixed",
               "MSE/frame tuned"], quality, command,
              [label, seeds, budget_note] + spread_notes, section=data),
        Table(f"cost-{key}", f"{data} / {arch}: size, speed and search compute", [
            "arch", "cell", "params fixed", "params tuned", "ms/step fixed", "ms/step tuned",
            "retrain s fixed", "retrain s tuned", "search study", "search trials",
            "search CPU h", "search GPU h"], cost, command,
              ["ms/step: mean over the seeds' optimizer steps (validation excluded); retrain s: "
               "wall time of one retrain; search compute: train_seconds of every trial of the "
               "search study", budget_note], section=data),
    ]
    cell_table = _cells_table(store, c, by, cells, command)
    return tables + ([cell_table] if cell_table else [])


def _cells_table(store: Store, c: CompareStudy, by: Mapping, cells: Sequence[str],
                 command: str) -> Optional[Table]:
    tuned = [by.get((cell, "optimized")) for cell in cells]
    if len(cells) != 2 or not all(tuned):
        return None
    a, b = tuned
    sources = [store.search_study(r["source_study"]) for r in tuned]
    same = (all(sources) and len({s.name for s in sources}) == 1) or (
        all(sources) and len({(trial_counts(s.trials)["finished"], s.field("budget"),
                              s.field("sampler")) for s in sources}) == 1)
    difference = 100 * (a["test_mse_mean"] - b["test_mse_mean"]) / a["test_mse_mean"]
    spread = max(x for x in (a.get("test_mse_std"), b.get("test_mse_std"), -1.0)
                 if x is not None)
    within = 0 <= spread and abs(a["test_mse_mean"] - b["test_mse_mean"]) < spread
    return Table(
        f"cells-{c.field('data')}-{c.field('arch')}",
        f"{c.field('data')} / {c.field('arch')}: {cells[0]} vs {cells[1]}, both tuned",
        ["arch", f"MSE {cells[0]} tuned", f"MSE {cells[1]} tuned",
         f"{cells[1]} vs {cells[0]}", "same search budget", "within seed spread"],
        [[c.field("arch"), fmt_mean_std(a["test_mse_mean"], a["test_mse_std"]),
          fmt_mean_std(b["test_mse_mean"], b["test_mse_std"]), f"{difference:+.1f}% lower MSE"
          if difference >= 0 else f"{-difference:.1f}% higher MSE", "yes" if same else "no",
          "yes" if within else ("unknown (n=1)" if spread < 0 else "no")]],
        command,
        ["A fair cell comparison needs both cells tuned with the same budget (same trials, "
         "budget and sampler); 'same search budget' says whether they were."],
        section=c.field("data"))


def fmt_int(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}"
