"""``hpo export``: the best configurations of a study as a YAML or JSON file, and reading them
back.

A file holds, per configuration, the sampled parameters *and* the exact specs the trial trained
(model, training, budgeted data without its root), so ``hpo fixed --config FILE`` and
``hpo compare --config FILE`` retrain exactly that configuration::

    format: hpo-vidpred-config/1
    study: autoencoder-mmnist-convlstm
    arch: autoencoder
    data: mmnist
    budget: small
    data_spec: {name: mmnist, height: 32, width: 32, n_in: 5, ...}
    configurations:
    - {rank: 1, cell: convlstm, trial: 7, val_mse: 0.0213, n_params: 8211, params: {...},
       model_spec: {...}, train_spec: {...}}

What a study recorded is read through :mod:`hpo_vidpred.store.records`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from .. import archs
from .. import data as datasets
from ..errors import HpoError
from ..specs import DataSpec, ModelSpec, TrainSpec, from_dict, load_yaml
from ..store import mask_url
from ..store.records import (
    best_trials,
    config_id,
    load_study,
    pareto_front,
    sampled_differences,
    study_budget,
    study_kind,
    study_objectives,
    trial_cell,
    trial_mse,
    trained_params,
)
from .fixed import FixedPlan
from ..study.goals import choose

__all__ = [
    "FORMAT",
    "FORMATS",
    "Configuration",
    "export_study",
    "dump_export",
    "write_export",
    "load_configurations",
    "plan_from_config",
]

FORMAT = "hpo-vidpred-config/1"
FORMATS = ("yaml", "json")


# --------------------------------------------------------------------------- writing
def export_study(storage: Any, name: str, *, top: int = 1, per_cell: bool = False,
                 url: str = "", pick: str | None = None) -> dict[str, Any]:
    """The export document of study ``name`` (see the module docstring); JSON-safe.

    A multi-objective study exports its Pareto front (``top`` and ``per_cell`` are for studies of
    one objective), or with ``pick`` (``knee``, ``fastest-within:5%``) one configuration of it
    (:func:`hpo_vidpred.study.goals.choose`).
    Compare studies hold test-set results and are refused: selecting on the test split would
    leak it into the configuration.
    """
    study = load_study(storage, name)
    attrs = study.user_attrs
    kind = study_kind(attrs)
    if kind == "compare":
        raise HpoError(f"{name!r} holds test-set results of 'hpo compare'; export from the "
                       "search study it retrained (e.g. hpo export --study "
                       f"{name.removeprefix('compare-')}-convlstm)")
    if kind == "other":
        raise HpoError(f"study {name!r} was not made by 'hpo run' or 'hpo fixed'; nothing to "
                       "export")
    spec = attrs["spec"]
    source = spec["study"] if kind == "search" else spec["fixed"]
    goals = study_objectives(attrs)
    if pick is not None and len(goals) == 1:
        raise HpoError(f"--pick chooses from a Pareto front; study {name!r} has one objective "
                       f"({goals[0]}): leave it out")
    if top < 1:  # a front is exported whole, but a --top it cannot use is still wrong
        raise HpoError("--top must be at least 1")
    trials = (best_trials(study.get_trials(deepcopy=False), top, per_cell) if len(goals) == 1
              else [t for t in pareto_front(study) if "model_spec" in t.user_attrs
                    and "train_spec" in t.user_attrs])
    if pick is not None and trials:
        trials = [choose(trials, goals, study.directions, pick)]
    if not trials:
        raise HpoError(f"study {name!r} has no complete trial yet; run more trials first")
    budget, changes = study_budget(attrs)
    configurations = []
    for rank, t in enumerate(trials, start=1):
        train = dict(t.user_attrs["train_spec"])
        train.pop("device", None)
        trained = trained_params(t)  # capped after sampling in studies recorded before spaces
        capped = [f"{k}: {v} -> {trained[k]}" for k, v in sampled_differences(t).items()]
        configurations.append({
            "rank": rank, "cell": trial_cell(t), "trial": t.number,
            "val_mse": trial_mse(t),
            **({"values": dict(zip(goals, t.values))} if len(goals) > 1 else {}),
            "n_params": t.user_attrs.get("n_params"), "params": trained,
            **({"budget_capped": capped} if capped else {}),
            "model_spec": t.user_attrs["model_spec"], "train_spec": train,
        })
    return json.loads(json.dumps({
        "format": FORMAT, "study": name, "storage": mask_url(url) if url else "", "kind": kind,
        "arch": source["arch"], "data": source["data"], "budget": budget,
        "budget_changes": changes, "objective": attrs.get("objective", "val_mse"),
        **({"pick": pick} if pick else {}),
        "data_spec": spec["data"], "configurations": configurations,
    }))


def dump_export(document: Mapping[str, Any], fmt: str = "yaml") -> str:
    """The export document as YAML (with a comment saying how to retrain it) or JSON."""
    if fmt not in FORMATS:
        raise HpoError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(document, indent=1) + "\n"
    cells = sorted({c["cell"] for c in document["configurations"]})
    head = (f"# Best configurations of study {document['study']} "
            f"({document['storage'] or 'study store'}), budget {document['budget']}.\n"
            f"# Retrain exactly: hpo fixed --arch {document['arch']} --data {document['data']} "
            f"--cell {cells[0]} --config THIS_FILE [--seed N]\n"
            f"#                  hpo compare --arch {document['arch']} --data {document['data']}"
            f" --config THIS_FILE\n")
    return head + yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=None,
                                 width=99)


def write_export(text: str, out: str | Path, document: Mapping[str, Any]) -> str:
    """Write an export to ``out`` (folders created); returns the line that says so."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    return (f"wrote {out}: {len(document['configurations'])} configuration(s) of "
            f"{document['study']}")


# --------------------------------------------------------------------------- reading back
@dataclass(frozen=True)
class Configuration:
    """One exported configuration: exactly what to retrain (specs budgeted, data root local)."""

    arch: str
    data_name: str
    cell: str
    budget: str
    budget_changes: tuple[str, ...]
    data: DataSpec
    model: ModelSpec
    train: TrainSpec  # seed: the source trial's
    params: Mapping[str, Any]
    study: str  # the study it was exported from
    source: str  # "study S trial N (from FILE)"

    @property
    def config_id(self) -> str:
        return config_id(self.model, self.train, self.data)


def load_configurations(path: str | Path, data_dir: Optional[str] = None
                        ) -> list[Configuration]:
    """Read a file written by ``hpo export`` (YAML or JSON); every problem is one line."""
    path = Path(path)
    document = load_yaml(path)  # JSON is YAML
    where = str(path)
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise HpoError(f"{where} is not a configuration file of 'hpo export' (format {FORMAT}); "
                       "write one with hpo export --study NAME --out FILE")
    try:
        arch, data_name = document["arch"], document["data"]
        archs.ARCHS.get(arch)
        root = {"root": data_dir} if data_dir else {}
        data = from_dict(DataSpec, {**document["data_spec"],
                                    "root": datasets.default_spec(data_name, **root).root},
                         where=f"{where} (data_spec)")
        out = []
        for entry in document["configurations"]:
            model = from_dict(ModelSpec, entry["model_spec"], where=f"{where} (model_spec)")
            train = from_dict(TrainSpec, entry["train_spec"], where=f"{where} (train_spec)")
            out.append(Configuration(
                arch=arch, data_name=data_name, cell=model.cell, budget=document["budget"],
                budget_changes=tuple(document.get("budget_changes", ())), data=data,
                model=model, train=train, params=dict(entry.get("params", {})),
                study=str(document["study"]),
                source=f"study {document['study']} trial {entry.get('trial')} (from {where})"))
    except (KeyError, TypeError) as exc:
        raise HpoError(f"{where} lacks {exc} or has it in the wrong form; export it again "
                       "with hpo export") from None
    if not out:
        raise HpoError(f"{where} holds no configuration")
    return out


def plan_from_config(path: str | Path, arch: str, data: str, cell: str, *,
                     data_dir: Optional[str] = None, seed: int = 0, device: str = "auto"):
    """A :class:`~hpo_vidpred.workflows.fixed.FixedPlan` that retrains the file's best configuration with
    ``cell`` exactly (its budget, data and training settings; ``seed`` and ``device`` are this
    run's). Recorded as study ``config-{arch}-{data}-{cell}-{config id}``."""
    configurations = load_configurations(path, data_dir)
    first = configurations[0]
    if (first.arch, first.data_name) != (arch, data):
        raise HpoError(f"{path} holds {first.arch} on {first.data_name}, not {arch} on {data}; "
                       f"pass --arch {first.arch} --data {first.data_name}")
    chosen = next((c for c in configurations if c.cell == cell), None)
    if chosen is None:
        cells = sorted({c.cell for c in configurations})
        raise HpoError(f"{path} has no configuration with cell {cell!r}; it has: "
                       f"{', '.join(cells)}")
    train = dataclasses.replace(chosen.train, seed=seed, device=device)
    return FixedPlan(arch=arch, data_name=data, cell=cell, budget=chosen.budget,
                     data=chosen.data, model=chosen.model, train=train,
                     budget_changes={"budget": chosen.budget, "changes":
                                     list(chosen.budget_changes), "source": chosen.source},
                     name=f"config-{arch}-{data}-{cell}-{chosen.config_id}")
