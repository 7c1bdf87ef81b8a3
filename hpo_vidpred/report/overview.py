"""The report's opening: the budget and device banner, and the overview table.

- **Banner** (every page and ``tables.md``): per dataset, the budget the studies ran at, what it
  changed against the dataset's standard setting, and whether the numbers are comparable with
  published ones (they are not when the frames, the task or the test set differ); the devices
  ms/step was measured on and whether other runs of the store shared the machine meanwhile.
- **Overview** (OpenSTL's table, across architectures and cells): one block per dataset x
  architecture x cell with the fixed and the tuned model's test MSE, MAE, SSIM and PSNR (mean ±
  sample std over n seeds), parameters, ms/step with its device, search compute and the verdict
  against the trivial predictors; ★ marks the best model of each dataset on each metric; every
  combination not run (or not compared) is listed with the command that runs it. As
  ``overview.csv``: one row per dataset x architecture x cell, full precision.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Optional, Sequence

import pandas as pd

from ..store.records import study_budget, trial_cell, trial_counts
from .collect import ORDER, Collection, SearchStudy, compute_hours, rank
from .tables import (ROLE_NAMES, ROLES, SKILL_NOTE, TIMING_NOTE, Table, fmt, fmt_int,
                     metric_cells, records, row_metrics, timing_cell, verdict_cells)

__all__ = ["overview_table", "overview_frame", "banner", "study_banner", "DATASETS", "BEST"]

DATASETS = {"mmnist": "Moving MNIST", "kth": "KTH", "kitti": "KITTI"}
BEST = "★"  # marks the best model of a dataset on a metric
# (metric, better): the overview's quality columns
_QUALITY = (("mse", min), ("mae", min), ("ssim", max), ("psnr", max))
# data fields whose change makes numbers incomparable with published ones (train/val sizes and
# the training length only change how well a model is trained and how exactly it is scored)
_SAME_TASK = ("data.train_size", "data.val_size", "data.seed", "data.stride", "data.eval_stride")


# --------------------------------------------------------------------------- banner
def _budget_groups(studies: Iterable[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(data, budget) -> the budget's summary and the union of what it changed, in order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for s in studies:
        budget, changes = study_budget(s.attrs)
        group = groups.setdefault((s.field("data"), budget), {"summary": "", "changes": {}})
        group["summary"] = group["summary"] or (s.attrs.get("budget") or {}).get("summary", "")
        group["changes"].update(dict.fromkeys(changes))
    for group in groups.values():  # the recorded changes ("data.height: 64 -> 32") first
        group["changes"] = dict.fromkeys(sorted(group["changes"], key=lambda c: " -> " not in c))
    return dict(sorted(groups.items(), key=lambda kv: (rank(kv[0][0]), kv[0])))


def _budget_line(data: str, budget: str, group: Mapping[str, Any]) -> str:
    changes = list(group["changes"])
    task = [c for c in changes if c.startswith("data.") and not c.startswith(_SAME_TASK)]
    training = [c for c in changes if c.startswith("train.")]
    name = DATASETS.get(data, data)
    text = f"{data} at budget {budget}" + (f" ({group['summary']})" if group["summary"] else "")
    text += ": " + ("; ".join(changes) if changes else "the dataset's standard frames and task")
    if task:
        verdict = (f"NOT comparable with published {name} numbers (the frames, the task or the "
                   "test set differ); compare the models here with each other only")
    elif training:
        verdict = (f"the standard {name} frames and task, trained shorter than published runs: "
                   "expect higher errors than published numbers")
    else:
        verdict = f"the standard {name} frames, task and training length"
    return f"{text}. {verdict}."


def _timing_line(store: Collection, studies: Sequence[Any]) -> Optional[str]:
    """Where ms/step was measured and whether the machine was shared meanwhile."""
    timed = [t for s in studies for t in s.trials if t.user_attrs.get("step_ms") is not None]
    if not timed:
        return None
    devices = Counter(str(t.user_attrs.get("device", "?")) for t in timed)
    known = [store.overlap(t) for t in timed]
    shared = [n for n in known if n]
    unknown = sum(1 for n in known if n is None)
    text = "ms/step measured on " + ", ".join(f"{d} ({n} run{'s' if n > 1 else ''})"
                                              for d, n in devices.most_common())
    if shared:
        text += (f"; {len(shared)} of them trained while other runs of this store used the same "
                 f"machine (up to {max(shared)} at once): those timings shared the cores and are "
                 "indicative only")
    else:
        text += "; no two runs of this store overlapped on one machine"
    if unknown:
        text += f"; for {unknown} the store does not say when they trained"
    return text + ". Other processes on the machine are not recorded."


def banner(store: Collection, studies: Optional[Sequence[Any]] = None) -> list[str]:
    """The budget and device lines for ``studies`` (default: every collected study)."""
    studies = store.studies() if studies is None else studies
    lines = [_budget_line(data, budget, group)
             for (data, budget), group in _budget_groups(studies).items()]
    timing = _timing_line(store, studies)
    return lines + ([timing] if timing else [])


def study_banner(store: Collection, s: SearchStudy) -> list[str]:
    """The banner of one search study's page."""
    return banner(store, [s])


# --------------------------------------------------------------------------- overview
def _combinations(store: Collection, results: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Every dataset x architecture x cell of the datasets in the store: the known ones in
    :data:`ORDER`, then any other the studies name."""
    out = []
    for data in store.datasets():
        archs = list(ORDER[1]) + sorted({s.field("arch") for s in store.studies()
                                         if s.field("data") == data} - set(ORDER[1]))
        cells = list(ORDER[2]) + sorted(
            {c for c in results.loc[results.role != "trivial", "cell"] if c not in ORDER[2]})
        out += [(data, arch, cell) for arch in archs for cell in cells]
    return out


def _search_of(store: Collection, data: str, arch: str, cell: str) -> Optional[SearchStudy]:
    """The search study that tuned this cell: pinned to it, else one that sampled it."""
    found = [s for s in store.search if s.field("data") == data and s.field("arch") == arch
             and (s.field("cell") == cell or (not s.field("cell") and any(
                 trial_cell(t) == cell for t in s.trials)))]
    return min(found, key=lambda s: (s.field("cell") != cell, s.name), default=None)


def _defaults(store: Collection, data: str) -> dict[str, Any]:
    """Budget, trials and seeds of the dataset's other studies (for the commands of the
    combinations not run): the most common budget, the most trials, the most seeds."""
    studies = [s for s in store.studies() if s.field("data") == data]
    budgets = Counter(s.field("budget") for s in studies)
    trials = [trial_counts(s.trials)["finished"] for s in store.search if s.field("data") == data]
    seeds = [len({t.user_attrs.get("seed") for t in c.trials}) for c in store.compare
             if c.field("data") == data]
    return {"budget": budgets.most_common(1)[0][0] if budgets else "small",
            "trials": max(trials, default=20), "seeds": max(seeds, default=3)}


def _command(store: Collection, data: str, arch: str, cell: str, by: Mapping[str, Any],
             search: Optional[SearchStudy], d: Mapping[str, Any]) -> str:
    """What runs the missing part of a combination: its comparison when a search exists (the
    search stays as it is), else the whole matrix cell (search, fixed runs, comparison)."""
    if by and {"fixed", "optimized"} <= set(by):
        return ""
    if search is not None:
        return (f"hpo compare --arch {arch} --data {data} --cells {cell} --seeds {d['seeds']} "
                f"--budget {search.field('budget')} --storage {store.url}")
    return (f"hpo matrix --data {data} --archs {arch} --cells {cell} --trials {d['trials']} "
            f"--seeds {d['seeds']} --budget {d['budget']} --storage {store.url}")


def overview_frame(store: Collection, results: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x architecture x cell (``overview.csv``): ``status`` (compared,
    searched, fixed only, not run), the command that runs what is missing, and per role
    (``fixed_``, ``tuned_``) n, the test metrics' mean and std, parameters, ms/step, device,
    timing overlap and verdict; the search study and its compute."""
    rows = []
    models = results[results.role.isin(ROLES)] if not results.empty else results
    for data, arch, cell in _combinations(store, results):
        mine = records(models[(models.data == data) & (models.arch == arch)
                              & (models.cell == cell)]) if not models.empty else []
        by = {r["role"]: r for r in mine}
        search = _search_of(store, data, arch, cell)
        fixed = any(f.field("data") == data and f.field("arch") == arch and f.field("cell") == cell
                    for f in store.fixed)
        status = ("compared" if by else "searched, not compared" if search else
                  "fixed only" if fixed else "not run")
        d = _defaults(store, data)
        row: dict[str, Any] = {
            "data": data, "arch": arch, "cell": cell, "budget": (mine[0]["budget"] if mine
                                                                 else d["budget"]),
            "status": status, "command": _command(store, data, arch, cell, by, search, d)}
        for role in ROLES:
            r, key = by.get(role, {}), ROLE_NAMES[role]
            row[f"{key}_n"] = r.get("n")
            for m, _ in _QUALITY:
                row[f"{key}_{m}_mean"] = r.get(f"test_{m}_mean")
                row[f"{key}_{m}_std"] = r.get(f"test_{m}_std")
            for k in ("n_params", "step_ms_mean", "device", "timing_overlap", "learned",
                      "beaten_by", "skill"):
                row[f"{key}_{k}"] = r.get(k)
        cpu, gpu = compute_hours(search.trials) if search else (None, None)
        row.update(search_study=search.name if search else "",
                   search_trials=trial_counts(search.trials)["finished"] if search else None,
                   search_cpu_hours=cpu, search_gpu_hours=gpu)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for m, better in _QUALITY:  # the best model of each dataset on each metric
        if frame.empty:
            break
        best = []
        for _, group in frame.groupby("data", sort=False):
            values = pd.concat([group[f"fixed_{m}_mean"], group[f"tuned_{m}_mean"]]).dropna()
            best.append(better(values) if len(values) else None)
        frame[f"best_{m}"] = frame.data.map(dict(zip(frame.data.unique(), best, strict=True)))
    return frame


def _cells(row: Mapping[str, Any], key: str, baselines: Optional[Mapping[str, Any]]
           ) -> list[str]:
    """The quality, cost and verdict cells of one role of an overview row."""
    r = {f"test_{m}_{s}": row.get(f"{key}_{m}_{s}") for m, _ in _QUALITY for s in ("mean", "std")}
    quality = metric_cells(r, [m for m, _ in _QUALITY])
    for i, (m, _) in enumerate(_QUALITY):
        if r[f"test_{m}_mean"] is not None and r[f"test_{m}_mean"] == row.get(f"best_{m}"):
            quality[i] += f" {BEST}"
    timing = timing_cell({"step_ms_mean": row.get(f"{key}_step_ms_mean"),
                          "device": row.get(f"{key}_device"),
                          "timing_overlap": row.get(f"{key}_timing_overlap")})
    return [fmt_int(row.get(f"{key}_n")), *quality, fmt_int(row.get(f"{key}_n_params")), timing,
            _search_cell(row) if key == "tuned" else "-",
            verdict_cells(row_metrics(r), baselines)[1]]


def _search_cell(row: Mapping[str, Any]) -> str:
    if row.get("search_trials") is None:
        return "-"
    return (f"{int(row['search_trials'])} trials, {row['search_cpu_hours']:.2f} CPU h"
            + (f", {row['search_gpu_hours']:.2f} GPU h" if row["search_gpu_hours"] else ""))


def overview_table(store: Collection, results: pd.DataFrame) -> Optional[Table]:
    """The overview table (see the module docstring) and its notes: what ★ means, the trivial
    predictors per dataset, what each combination not compared needs."""
    frame = overview_frame(store, results)
    if frame.empty:
        return None
    baselines = {c.field("data") + "/" + c.field("arch"): c.baselines for c in store.compare}
    rows, missing = [], []
    for row in records(frame):
        head = [row["data"], row["arch"], row["cell"]]
        base = baselines.get(f"{row['data']}/{row['arch']}")
        shown = [ROLE_NAMES[r] for r in ROLES if row.get(f"{ROLE_NAMES[r]}_n") is not None]
        rows += [head + [key] + _cells(row, key, base) for key in shown]
        if row["status"] != "compared" or len(shown) < 2:
            status = row["status"] if not shown else (
                "tuned not run" if "tuned" not in shown else "fixed not run")
            rows.append(head + [status] + ["-"] * 7
                        + [_search_cell(row) if "tuned" not in shown else "-", "-"])
            missing.append(f"{row['data']} / {row['arch']} / {row['cell']}: {row['status']}; "
                           f"runs with: {row['command']}")
    trivial = []
    for data in store.datasets():
        c = next((c for c in store.compare if c.field("data") == data and c.baselines), None)
        if c is not None:
            trivial.append(f"trivial predictors on the {data} test split: " + "; ".join(
                f"{label} MSE {c.baselines[name]['mse']:.4g}, MAE "
                f"{fmt(c.baselines[name].get('mae'), '.4g')}, SSIM "
                f"{fmt(c.baselines[name].get('ssim'), '.4f')}"
                for name, label in (("black", "black"), ("copy_last", "copy-last"),
                                    ("mean_input", "mean-input")) if name in c.baselines))
    notes = [f"test split; fixed = the seed's published configuration, tuned = the best "
             f"configuration of the search (published defaults vs tuned); mean ± sample "
             f"standard deviation over n seeds; {BEST}: the best model of the dataset on that "
             "metric (lower MSE and MAE, higher SSIM and PSNR)",
             TIMING_NOTE, "learned: " + SKILL_NOTE, *trivial, *(f"not run: {m}" for m in missing)]
    return Table("overview", "Overview: every dataset x architecture x cell (test split)",
                 pd.DataFrame(rows, columns=["data", "arch", "cell", "role", "n", "MSE", "MAE",
                                             "SSIM", "PSNR (dB)", "params", "ms/step",
                                             "search", "learned"]),
                 f"hpo report --storage {store.url}", notes, section="overview", sparse=3)
