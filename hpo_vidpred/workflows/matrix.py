"""``hpo matrix``: every dataset x architecture x cell -- the study, the fixed baselines and the
comparison -- then the report (docs/design.md section 1; the seed's 3 x 2 x 3 = 18 experiments).

Each combination gets a search study with its cell pinned, ``{arch}-{data}-{cell}``, so both cells
of an architecture are tuned with the same budget (the same trials, sampler, pruner), which makes
the cell comparison fair. Then ``hpo compare`` retrains, per cell and seed, the seed's fixed
configuration (through ``hpo fixed``: study ``fixed-{arch}-{data}-{cell}``) and the study's best
one, and tests both. Every step skips what the store already holds -- a study continues up to
``--trials`` finished trials, a baseline or retrain that is stored is not trained again -- so an
interrupted matrix is resumed by running the same command again. A dataset whose files are missing
is reported and skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from .. import archs as archs_mod
from .. import budgets
from .. import data as data_mod
from ..cells import CELLS
from ..devices import resolve_devices
from ..errors import HpoError
from ..interrupts import interrupts
from ..specs import RunSpec, StudySpec
from ..store import mask_url, normalize_url
from ..store.records import judge_metrics, verdict_label
from .compare import plan_compare, run_compare
from ..study.strategy import PRUNERS, SAMPLERS
from ..study.plan import plan_study
from ..study.pool import run as run_study

__all__ = ["MatrixPlan", "plan_matrix", "run_matrix", "format_summary"]


@dataclass(frozen=True)
class MatrixPlan:
    """The validated combinations and settings of one ``hpo matrix`` run."""

    datasets: tuple[str, ...]
    archs: tuple[str, ...]
    cells: tuple[str, ...]
    trials: int
    seeds: int
    budget: str
    sampler: str = "tpe"
    pruner: str = "hyperband"
    workers: int = 1
    devices: str = "auto"
    data_dir: str = ""
    seed: int = 0

    def command(self, storage: str, out: str) -> str:
        """The ``hpo matrix`` command of this plan (``storage`` masked)."""
        text = (f"hpo matrix --data {','.join(self.datasets)} --archs {','.join(self.archs)} "
                f"--cells {','.join(self.cells)} --trials {self.trials} --seeds {self.seeds} "
                f"--budget {self.budget}")
        for flag, value, default in (("sampler", self.sampler, "tpe"),
                                     ("pruner", self.pruner, "hyperband"),
                                     ("workers", self.workers, 1),
                                     ("data-dir", self.data_dir, "")):
            if value != default:
                text += f" --{flag} {value}"
        return text + f" --storage {storage} --out {out}"

    def study_names(self, data: str, arch: str) -> list[str]:
        """The studies one dataset x architecture produces (for the report's selection)."""
        return ([f"{arch}-{data}-{c}" for c in self.cells] + [f"fixed-{arch}-{data}-{c}"
                                                               for c in self.cells]
                + [f"compare-{arch}-{data}"])


def _names(values: Optional[Sequence[str]], registry: Any) -> tuple[str, ...]:
    names = tuple(values) if values else tuple(registry.names())
    for name in names:
        registry.get(name)  # one line listing the valid names
    if len(set(names)) != len(names):
        raise HpoError(f"a {registry.kind} is listed twice: {', '.join(names)}")
    return names


def plan_matrix(datasets: Sequence[str], archs: Optional[Sequence[str]] = None,
                cells: Optional[Sequence[str]] = None, *, trials: int, seeds: int = 3,
                budget: str = "seed", sampler: str = "tpe", pruner: str = "hyperband",
                workers: int = 1, devices: str = "auto", data_dir: Optional[str] = None,
                seed: int = 0) -> MatrixPlan:
    """Check every name and number before anything runs (one line per problem)."""
    if trials < 1 or seeds < 1 or workers < 1:
        raise HpoError("--trials, --seeds and --workers must be at least 1")
    budgets.get(budget)
    SAMPLERS.get(sampler)
    PRUNERS.get(pruner)
    if not datasets:
        raise HpoError("--data needs at least one dataset, e.g. --data mmnist,kth,kitti")
    plan = MatrixPlan(datasets=_names(datasets, data_mod.DATASETS),
                      archs=_names(archs, archs_mod.ARCHS), cells=_names(cells, CELLS),
                      trials=trials, seeds=seeds, budget=budget, sampler=sampler, pruner=pruner,
                      workers=workers, devices=devices, data_dir=data_dir or "", seed=seed)
    for data in plan.datasets:  # the comparisons retrain each fixed configuration: known now
        for arch in plan.archs:
            try:
                archs_mod.fixed_spec(arch, data, plan.cells[0])
            except HpoError as exc:
                raise HpoError(f"{exc}; or leave {arch} out with --archs") from None
    return plan


def _available(plan: MatrixPlan, data: str) -> Optional[str]:
    """None when the dataset's files are there, else the reason (its one-line error)."""
    overrides = {"root": plan.data_dir} if plan.data_dir else {}
    try:
        data_mod.info(data_mod.default_spec(data, **overrides))
    except HpoError as exc:
        return str(exc)
    return None


@interrupts()  # Ctrl-C and SIGTERM between and inside the steps: nothing is left RUNNING
def run_matrix(plan: MatrixPlan, storage: Optional[str] = None, out: Optional[str] = None, *,
               progress: bool = True,
               log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run what is missing of every combination, then write the report. Returns the summary."""
    from ..report import default_out, write_report

    url = normalize_url(storage)
    started = time.time()
    skipped: dict[str, str] = {}
    done: list[dict[str, Any]] = []
    available = []
    for data in plan.datasets:
        reason = _available(plan, data)
        if reason is None:
            available.append(data)
        else:
            skipped[data] = reason
            log(f"matrix: skipping {data}: {reason}")
    if not available:
        raise HpoError("no dataset of --data is available: " + "; ".join(
            f"{d}: {r}" for d, r in skipped.items()))
    total = len(available) * len(plan.archs)
    step = 0
    for data in available:
        for arch in plan.archs:
            step += 1
            for cell in plan.cells:
                spec = StudySpec(arch=arch, data=data, cell=cell, budget=plan.budget,
                                 sampler=plan.sampler, pruner=plan.pruner,
                                 data_dir=plan.data_dir, seed=plan.seed)
                log(f"matrix [{step}/{total}] study {spec.study_name}: up to {plan.trials} "
                    "finished trials")
                summary = run_study(plan_study(spec), RunSpec(storage_url=url, trials=plan.trials,
                                                              workers=plan.workers,
                                                              devices=plan.devices,
                                                              progress=progress))
                log(f"matrix [{step}/{total}] study {spec.study_name}: "
                    f"{summary['trials']['finished']} finished, {summary['ran_this_run']} run now")
            log(f"matrix [{step}/{total}] fixed baselines and comparison compare-{arch}-{data}: "
                f"{plan.seeds} seed(s) per cell")
            compare = plan_compare(url, arch, data, cells=list(plan.cells),
                                   seeds=plan.seeds, budget=plan.budget,
                                   data_dir=plan.data_dir or None,
                                   device=resolve_devices(plan.devices)[0])
            result = run_compare(compare, url, progress=progress, log=log)
            done.append({"data": data, "arch": arch, "retrained_now": result["ran"],
                         "rows": result["rows"], "trivial": result.get("trivial", {})})
    names = ",".join(n for data in available for arch in plan.archs
                     for n in plan.study_names(data, arch))
    folder = str(out or default_out(url))
    report = write_report(url, folder, names, command=plan.command(mask_url(url), folder))
    log(f"matrix: report in {report['out']}")
    return {"storage": mask_url(url), "datasets": available, "skipped": skipped,
            "combinations": done, "report": report["out"],
            "seconds": round(time.time() - started, 1)}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The matrix summary as lines for a terminal."""
    lines = [f"matrix on {summary['storage']}: {len(summary['combinations'])} dataset x "
             f"architecture combination(s) in {summary['seconds'] / 60:.1f} min"]
    for combo in summary["combinations"]:
        for row in combo["rows"]:
            mse = row["test_mse"]
            text = "-" if mse[0] is None else f"{mse[0]:.5g}" + (
                f" +- {mse[1]:.2g}" if mse[1] is not None else "")
            verdict = judge_metrics({m: row.get(f"test_{m}", [None])[0]
                                     for m in ("mse", "mae", "ssim")}, combo.get("trivial"))
            learned = "" if mse[0] is None else f"  learned: {verdict_label(verdict)}"
            lines.append(f"  {combo['data']:7s} {combo['arch']:15s} {row['cell']:9s} "
                         f"{row['role']:9s} n={row['n']}  test mse {text}{learned}")
    for data, reason in summary["skipped"].items():
        lines.append(f"skipped {data}: {reason}")
    lines.append(f"report: {summary['report']}/index.html")
    return "\n".join(lines)
