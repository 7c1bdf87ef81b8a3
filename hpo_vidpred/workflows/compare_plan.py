"""What ``hpo compare`` will retrain, resolved before anything runs: per cell the seed's fixed
configuration (through ``hpo fixed``) and the optimized one (the best trial of the cell's search
study, or a file of ``hpo export``), each with seeds 0..k-1 at one budget (see
:mod:`hpo_vidpred.workflows.compare`)."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import optuna
import yaml
from optuna.trial import FrozenTrial

from .. import archs
from .. import data as datasets
from ..cells import CELLS
from ..errors import HpoError
from ..devices import resolve_device
from ..specs import DataSpec, ModelSpec, StudySpec, TrainSpec, dict_changes, from_dict, to_record
from ..store import open_storage, sqlite_path
from ..store.records import best_trials, config_id, study_kind, trial_cell, trial_mse
from .export import load_configurations
from .fixed import FixedPlan, plan_fixed

__all__ = ["ComparePlan", "Retrain", "compare_name", "plan_compare"]


def compare_name(arch: str, data: str) -> str:
    """The comparison study of ``arch`` on ``data``."""
    return f"compare-{arch}-{data}"


@dataclass(frozen=True)
class Retrain:
    """One retrain: a configuration, a role, a cell and a seed."""

    role: str
    cell: str
    seed: int
    model: ModelSpec
    train: TrainSpec  # seed set to ``seed``
    data: DataSpec
    source: str  # where the configuration came from, for people
    source_study: str = ""  # the search study it came from (optimized role)
    fixed_plan: Optional[FixedPlan] = None  # the fixed role trains through ``hpo fixed``

    @property
    def config_id(self) -> str:
        return config_id(self.model, self.train, self.data)

    @property
    def key(self) -> tuple[str, str, int, str]:
        return self.role, self.cell, self.seed, self.config_id


@dataclass(frozen=True)
class ComparePlan:
    """Everything ``hpo compare`` will retrain, resolved before anything runs."""

    arch: str
    data_name: str
    budget: str
    budget_changes: Mapping[str, Any]
    data: DataSpec
    cells: tuple[str, ...]
    seeds: tuple[int, ...]
    retrains: tuple[Retrain, ...]
    notes: tuple[str, ...] = ()

    @property
    def study_name(self) -> str:
        return compare_name(self.arch, self.data_name)

    def record(self) -> dict[str, Any]:
        """The study's spec, compared when it exists (another budget or data is refused)."""
        return {"compare": {"arch": self.arch, "data": self.data_name, "budget": self.budget},
                "data": to_record(self.data)}


# --------------------------------------------------------------------------- planning
def plan_compare(url: str, arch: str, data: str, *, cells: Optional[Sequence[str]] = None,
                 seeds: int = 3, budget: Optional[str] = None, config: Optional[str] = None,
                 data_dir: Optional[str] = None, device: str = "auto") -> ComparePlan:
    """Find each cell's optimized configuration (the store at ``url``, read only, or
    ``config``) and the fixed one; nothing is created or written.

    ``cells`` default to every registered cell; a default cell without a search study is skipped
    with a note, an asked-for one is an error. ``budget`` defaults to the search budget.
    """
    archs.ARCHS.get(arch)
    datasets.DATASETS.get(data)
    resolve_device(device)
    if seeds < 1:
        raise HpoError("--seeds must be at least 1")
    asked = list(cells) if cells else None
    for cell in asked or ():
        CELLS.get(cell)
    db = sqlite_path(url)
    sources = (_file_sources(config, arch, data, data_dir) if config else {}
               if db is not None and not db.is_file() else  # no store yet: nothing searched
               _store_sources(open_storage(url, read_only=True), arch, data,
                              asked or CELLS.names()))
    notes = []
    for cell in asked or CELLS.names():
        if cell not in sources:
            where = (f"{config}" if config else
                     f"study {arch}-{data}-{cell} or {arch}-{data}")
            if asked:
                raise HpoError(f"no optimized {cell} configuration in {where}; run hpo run "
                               f"--arch {arch} --data {data} --cell {cell} first")
            notes.append(f"{cell}: skipped, no complete {cell} trial in {where}")
    if not sources:
        raise HpoError(f"no optimized configuration for {arch} on {data}: run hpo run --arch "
                       f"{arch} --data {data} first, or pass --config FILE")
    found = sorted({s["budget"] for s in sources.values()})
    if budget is None and len(found) > 1:
        raise HpoError(f"the optimized configurations come from budgets {', '.join(found)}; "
                       "pass --budget to retrain them at one level")
    budget = budget or found[0]
    chosen = [c for c in (asked or CELLS.names()) if c in sources]
    retrains: list[Retrain] = []
    data_spec: Optional[DataSpec] = None
    changes: Mapping[str, Any] = {}
    for cell in chosen:
        model, train, opt_data, source = _optimized_specs(sources[cell], budget, data_dir)
        source_study = sources[cell]["file"].study if "file" in sources[cell] \
            else sources[cell]["study"]
        for seed in range(seeds):
            fixed = plan_fixed(arch, data, cell, budget, data_dir=data_dir, seed=seed,
                               device=device)
            data_spec, changes = fixed.data, fixed.budget_changes
            _same_data(opt_data, fixed.data, source)
            retrains.append(Retrain("fixed", cell, seed, fixed.model, fixed.train, fixed.data,
                                    f"the seed's configuration ({fixed.study_name})",
                                    source_study=fixed.study_name, fixed_plan=fixed))
            retrains.append(Retrain("optimized", cell, seed, model,
                                    dataclasses.replace(train, seed=seed, device=device),
                                    fixed.data, source, source_study=source_study))
    return ComparePlan(arch=arch, data_name=data, budget=budget, budget_changes=changes,
                       data=data_spec, cells=tuple(chosen), seeds=tuple(range(seeds)),
                       retrains=tuple(retrains), notes=tuple(notes))


def _file_sources(config: str, arch: str, data: str, data_dir: Optional[str]
                  ) -> dict[str, dict[str, Any]]:
    configurations = load_configurations(config, data_dir)
    first = configurations[0]
    if (first.arch, first.data_name) != (arch, data):
        raise HpoError(f"{config} holds {first.arch} on {first.data_name}, not {arch} on {data}")
    out: dict[str, dict[str, Any]] = {}
    for c in configurations:  # the file's order is its ranking: the first per cell wins
        out.setdefault(c.cell, {"budget": c.budget, "file": c})
    return out


def _store_sources(storage: Any, arch: str, data: str, cells: Sequence[str]
                   ) -> dict[str, dict[str, Any]]:
    names = set(optuna.get_all_study_names(storage))
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        for name in (f"{arch}-{data}-{cell}", f"{arch}-{data}"):
            if name not in names:
                continue
            study = optuna.load_study(study_name=name, storage=storage)
            if study_kind(study.user_attrs) != "search":
                continue
            best = [t for t in best_trials(study.get_trials(deepcopy=False), 1, per_cell=True)
                    if trial_cell(t) == cell]
            if best:
                out[cell] = {"budget": study.user_attrs["spec"]["study"]["budget"],
                             "study": name, "trial": best[0], "attrs": study.user_attrs}
                break
    return out


def _optimized_specs(source: Mapping[str, Any], budget: str, data_dir: Optional[str]
                     ) -> tuple[ModelSpec, TrainSpec, Optional[DataSpec], str]:
    """(model, train, data or None, description) of an optimized source at ``budget``."""
    if "file" in source:
        c = source["file"]
        if c.budget != budget:
            raise HpoError(f"{c.source} was exported at budget {c.budget}; retrain it at that "
                           "budget (leave out --budget) to retrain it exactly")
        return c.model, c.train, c.data, c.source
    trial: FrozenTrial = source["trial"]
    text = f"study {source['study']} trial {trial.number} (val_mse {trial_mse(trial):.5g})"
    if budget == source["budget"]:
        model = from_dict(ModelSpec, trial.user_attrs["model_spec"])
        train = from_dict(TrainSpec, trial.user_attrs["train_spec"])
        return model, train, None, text
    plan = _replan(source["attrs"]["spec"], budget, data_dir)
    trained = plan.space.trained_values(trial.user_attrs.get("model_spec") or {},
                                        trial.user_attrs.get("train_spec") or {})
    values = plan.space.sample(optuna.trial.FixedTrial({**trial.params, **trained}))
    model, train = plan.trial_specs(values, 0)
    return model, train, None, f"{text}, applied to budget {budget}"


def _replan(record: Mapping[str, Any], budget: str, data_dir: Optional[str]):
    """The search study's plan at another budget, from the spec it recorded."""
    from ..study.plan import plan_study

    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "search_space.yaml"
        space.write_text(yaml.safe_dump(dict(record["search_space"])))
        spec = StudySpec(**{**record["study"], "budget": budget}, search_space=str(space),
                         data_dir=data_dir or "")
        return plan_study(spec)


def _same_data(optimized: Optional[DataSpec], fixed: DataSpec, source: str) -> None:
    if optimized is None:
        return
    differences = dict_changes(to_record(optimized), to_record(fixed))
    if differences:
        raise HpoError(f"{source} was trained on other data than this comparison tests on "
                       f"({'; '.join(differences[:3])}); export it at the same budget")
