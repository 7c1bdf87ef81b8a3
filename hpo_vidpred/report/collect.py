"""Reading the store into what a report covers: search studies (``hpo run``), comparisons
(``hpo compare``) and the rest, ordered by dataset, architecture and name.

Reads through :mod:`hpo_vidpred.store.records` only (kinds, best trials, counts, baselines); no
model code is imported, so a report needs neither torch nor the registries of architectures,
datasets and cells (studies are ordered by the fixed lists in :data:`ORDER`, unknown names last).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..specs import METRICS
from ..store.records import (
    best_trials,
    pareto_front,
    study_baselines,
    study_kind,
    study_names,
    trial_cell,
    study_objectives,
    trial_counts,
    trial_mse,
)

__all__ = ["ORDER", "SearchStudy", "CompareStudy", "FixedStudy", "Collection", "collect", "rank",
           "retrain_frame", "role_groups", "compute_hours", "training_interval", "overlaps"]

# datasets, architectures, cells: the order of the report's sections and rows
ORDER = (("mmnist", "kth", "kitti"), ("autoencoder", "prednet", "spatiotemporal"),
         ("convlstm", "stlstm"))


def rank(data: str = "", arch: str = "", cell: str = "") -> tuple[int, ...]:
    """Sort key of a dataset, architecture and cell by :data:`ORDER` (unknown names last)."""
    return tuple(seq.index(x) if x in seq else len(seq)
                 for seq, x in zip(ORDER, (data, arch, cell), strict=True))


@dataclass
class SearchStudy:
    """A study of ``hpo run``."""

    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]
    study: optuna.Study  # for optuna's plots

    @property
    def spec(self) -> dict[str, Any]:
        return self.attrs["spec"]

    @property
    def baselines(self) -> Optional[dict[str, Any]]:
        """The trivial predictors' validation metrics, None in a store of version 0.1."""
        return study_baselines(self.attrs)

    def field(self, key: str) -> Any:
        return self.spec["study"].get(key, "")

    @property
    def objectives(self) -> tuple[str, ...]:
        return study_objectives(self.attrs)

    def best_per_cell(self) -> dict[str, FrozenTrial]:
        """cell -> the complete trial with the best first objective, best cell first."""
        return {trial_cell(t): t for t in reversed(best_trials(self.trials, 1, per_cell=True))}

    def front(self) -> list[FrozenTrial]:
        """The Pareto-optimal complete trials (one objective: the best), best first."""
        return pareto_front(self.study)

    mse = staticmethod(trial_mse)  # a trial's validation MSE (what skill is judged on)

    def command(self, storage: str) -> str:
        """The ``hpo run`` command that continues this study."""
        finished = trial_counts(self.trials)["finished"]
        default = "-".join(filter(None, (self.field("arch"), self.field("data"),
                                         self.field("cell"))))
        extra = "".join(f" --{flag} {value}" for flag, value in (
            ("cell", self.field("cell")), ("study", self.name if self.name != default else ""),
            ("seed", self.field("seed") or self.attrs.get("seed")),
            ("objectives", ",".join(self.objectives) if len(self.objectives) > 1 else ""))
            if value)
        return (f"hpo run --arch {self.field('arch')} --data {self.field('data')}{extra} "
                f"--trials {finished} --budget {self.field('budget')} --sampler "
                f"{self.field('sampler')} --pruner {self.field('pruner')} --storage {storage}")


@dataclass
class CompareStudy:
    """A study of ``hpo compare``."""

    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]

    @property
    def baselines(self) -> Optional[dict[str, Any]]:
        """The trivial predictors' test metrics, None in a store of version 0.1."""
        return study_baselines(self.attrs)

    @property
    def n_in(self) -> int:
        return int(self.attrs["spec"]["data"]["n_in"])

    def field(self, key: str) -> Any:
        return self.attrs["spec"]["compare"][key]


@dataclass
class FixedStudy:
    """A study of ``hpo fixed``."""

    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]

    def field(self, key: str) -> Any:
        return self.attrs["spec"]["fixed"].get(key, "")


@dataclass
class Collection:
    """The studies a report covers."""

    url: str  # masked
    pattern: str
    search: list[SearchStudy] = field(default_factory=list)
    compare: list[CompareStudy] = field(default_factory=list)
    fixed: list[FixedStudy] = field(default_factory=list)
    other: list[tuple[str, str, int]] = field(default_factory=list)  # name, kind, trials
    _overlaps: Optional[dict[int, int]] = field(default=None, repr=False)

    def overlap(self, trial: FrozenTrial) -> Optional[int]:
        """How many other runs of this store trained beside ``trial`` on its machine (None:
        unknown); see :func:`overlaps`."""
        if self._overlaps is None:
            self._overlaps = overlaps(self)
        return self._overlaps.get(id(trial))

    def search_study(self, name: str) -> Optional[SearchStudy]:
        return next((s for s in self.search if s.name == name), None)

    def studies(self) -> list[SearchStudy | CompareStudy | FixedStudy]:
        """Every search, comparison and fixed study."""
        return [*self.search, *self.compare, *self.fixed]

    def datasets(self) -> list[str]:
        """The datasets of the collected studies, in :data:`ORDER`."""
        return sorted({s.field("data") for s in self.studies()}, key=lambda d: (rank(d), d))


def collect(storage: Any, url: str, pattern: str = "*") -> Collection:
    """Read every study whose name matches ``pattern`` (a glob, or several separated by commas)
    from ``storage``."""
    store = Collection(url=url, pattern=pattern)
    for name in study_names(storage, pattern):
        study = optuna.load_study(study_name=name, storage=storage)
        attrs, trials = dict(study.user_attrs), study.get_trials(deepcopy=False)
        kind = study_kind(attrs)
        if kind == "search":
            store.search.append(SearchStudy(name, attrs, trials, study))
        elif kind == "compare":
            store.compare.append(CompareStudy(name, attrs, trials))
        else:
            if kind == "fixed":
                store.fixed.append(FixedStudy(name, attrs, trials))
            store.other.append((name, kind, len(trials)))
    store.search.sort(key=lambda s: (rank(s.field("data"), s.field("arch")), s.name))
    store.compare.sort(key=lambda c: (rank(c.field("data"), c.field("arch")), c.name))
    return store


# --------------------------------------------------------------------------- comparisons
_ATTRS = ("n_params", "step_ms", "train_seconds", "device", "source", "source_study")


def retrain_frame(compare: CompareStudy) -> pd.DataFrame:
    """One row per complete retrain of the most recently finished configuration (``config_id``)
    of each (cell, role), sorted by cell, role and seed: ``cell, role, seed, config_id, trial``,
    the test metrics ``test_<metric>``, ``test_mse_per_step`` and :data:`_ATTRS`."""
    records = []
    for t in compare.trials:
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or "role" not in a:
            continue
        records.append({"cell": a["cell"], "role": a["role"], "seed": a["seed"],
                        "config_id": a["config_id"], "completed": t.datetime_complete,
                        "trial": t, **{f"test_{m}": a.get(f"test_{m}") for m in METRICS},
                        "test_mse_per_step": a.get("test_mse_per_step"),
                        **{k: a.get(k) for k in _ATTRS}})
    columns = ["cell", "role", "seed", "config_id", "completed", "trial",
               *(f"test_{m}" for m in METRICS), "test_mse_per_step", *_ATTRS]
    frame = pd.DataFrame(records, columns=columns)
    if frame.empty:
        return frame
    finished = frame.groupby(["cell", "role", "config_id"], as_index=False)["completed"].max()
    latest = finished.loc[finished.groupby(["cell", "role"])["completed"].idxmax(),
                          ["cell", "role", "config_id"]]
    frame = frame.merge(latest, on=["cell", "role", "config_id"])
    frame["_order"] = [(rank(cell=c), r != "fixed", s)
                       for c, r, s in zip(frame.cell, frame.role, frame.seed, strict=True)]
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def role_groups(compare: CompareStudy) -> dict[tuple[str, str], list[FrozenTrial]]:
    """(cell, role) -> complete retrains of the most recently finished configuration, by seed."""
    frame = retrain_frame(compare)
    return {key: list(group["trial"])
            for key, group in frame.groupby(["cell", "role"], sort=False)}


def compute_hours(trials: Iterable[FrozenTrial]) -> tuple[float, float]:
    """(CPU hours, GPU hours) of ``train_seconds`` over ``trials`` (device ``cpu``: CPU, anything
    else: GPU)."""
    frame = pd.DataFrame([(t.user_attrs.get("train_seconds") or 0.0,
                           str(t.user_attrs.get("device", "cpu")).startswith("cpu"))
                          for t in trials], columns=["seconds", "cpu"])
    on_cpu = frame["cpu"].astype(bool)
    cpu, gpu = float(frame.loc[on_cpu, "seconds"].sum()), float(frame.loc[~on_cpu, "seconds"].sum())
    return cpu / 3600, gpu / 3600


# --------------------------------------------------------------------------- timings
def _when(value: Any) -> Optional[_dt.datetime]:
    try:
        return _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def training_interval(trial: FrozenTrial) -> Optional[tuple[str, _dt.datetime, _dt.datetime]]:
    """(host, start, end) of the run behind ``trial``: a comparison retrain records ``started``
    and ``finished``; a search or fixed trial ran from its start to its completion (host from its
    ``worker``, ``""`` when unknown). None when the store does not say (older comparisons, whose
    trials were added in one step)."""
    a = trial.user_attrs
    host = str(a.get("host") or a.get("worker") or "").split(":")[0]
    if "started" in a and "finished" in a:
        start, end = _when(a["started"]), _when(a["finished"])
    elif "role" in a:  # a comparison retrain of an older store: added, not timed
        return None
    else:
        start, end = trial.datetime_start, trial.datetime_complete
    if start is None or end is None or end <= start:
        return None
    return host, start, end


def overlaps(store: Collection) -> dict[int, int]:
    """``id(trial)`` -> how many other runs of the collected studies trained on the same machine
    at the same time (a host the store does not name counts as the same machine), for every
    trial whose interval is known. A comparison's fixed role and the ``hpo fixed`` trial it
    reuses are one run."""
    trials = [t for s in store.studies() for t in s.trials]
    intervals = {id(t): iv for t in trials if (iv := training_interval(t)) is not None}
    runs = list({(s, e): (h, s, e) for h, s, e in intervals.values()}.values())
    out = {}
    for key, (host, start, end) in intervals.items():
        out[key] = sum(1 for h, s, e in runs if s < end and start < e and (s, e) != (start, end)
                       and (h == host or not h or not host))
    return out
