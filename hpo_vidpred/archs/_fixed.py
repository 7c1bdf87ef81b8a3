"""The fixed configurations, one file per architecture (``studies/fixed/<arch>.yaml``: the
seed's), the configuration a search starts from, and the table of ``hpo models``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cells import CELLS
from ..errors import HpoError
from ..paths import studies_file
from ..specs import ModelSpec, from_dict, load_yaml
from ._base import ARCHS, count_params, create_model

__all__ = [
    "SeedReference",
    "base_spec",
    "fixed_datasets",
    "fixed_file",
    "fixed_spec",
    "format_parameter_table",
    "parameter_table",
    "seed_reference",
]

LEGACY_FILE = "fixed.yaml"  # the one file all architectures shared before


@dataclass(frozen=True)
class SeedReference:
    """What the seed's own implementation has for one architecture and dataset."""

    file: str  # the seed's yml file
    channels: int  # input channels in that file
    params: Mapping[str, int]  # trainable parameters per cell name


def fixed_file(arch: str) -> Path:
    """Where the fixed configurations of ``arch`` are read: ``studies/fixed/<arch>.yaml`` (in
    ``$HPO_STUDIES_DIR``, ``./studies`` or the bundled copy, see :func:`~hpo_vidpred.paths.
    studies_file`); it may not exist (an architecture without fixed configurations)."""
    return studies_file(f"fixed/{arch}.yaml")


def fixed_datasets() -> list[str]:
    """Datasets that some architecture's fixed file configures, in the files' order."""
    names: dict[str, None] = {}
    for arch in ARCHS.names():
        names.update(dict.fromkeys(_load(arch)))
    return list(names)


def fixed_spec(arch: str, data: str, cell: str, channels: int | None = None) -> ModelSpec:
    """The fixed configuration of ``arch`` for dataset ``data`` with ``cell``, for frames with
    ``channels`` channels (default: the entry's ``channels``, our dataset's)."""
    entry = _entry(arch, data)
    CELLS.get(cell)
    values = {k: v for k, v in entry.items() if k != "seed"}
    where = f"{fixed_file(arch)} ({data})"
    if channels is None and "channels" not in values:
        raise HpoError(f"{where} gives no channels; add the frame channels of {data}")
    values.update(arch=arch, cell=cell, **({} if channels is None else {"channels": channels}))
    return from_dict(ModelSpec, values, where)


def base_spec(arch: str, data: str, cell: str, channels: int) -> ModelSpec:
    """What a search of ``arch`` on ``data`` starts from: the fixed configuration where the
    architecture's file has one for ``data``, else the architecture's defaults (its ``Config``)."""
    if data in _load(arch):
        return fixed_spec(arch, data, cell, channels)
    ARCHS.get(arch)
    CELLS.get(cell)
    return ModelSpec(arch=arch, cell=cell, channels=channels)


def seed_reference(arch: str, data: str) -> SeedReference | None:
    """The seed's file, channel count and parameter counts for ``arch`` on ``data`` (None for
    a configuration the seed did not have)."""
    seed = _entry(arch, data).get("seed")
    if seed is None:
        return None
    return SeedReference(
        file=seed["file"], channels=int(seed["channels"]), params=dict(seed["params"])
    )


def parameter_table(datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per dataset x architecture x cell with a fixed configuration: our
    trainable-parameter count at it with our data's channels, the seed's count, and whether ours
    equals the seed's when built with the seed's channels (``seed_match``; the seed's fields are
    None where it had no such configuration)."""
    known = fixed_datasets()
    for name in datasets or []:
        if name not in known:
            raise HpoError(f"unknown dataset {name!r}; choose one of: {', '.join(known)}")
    rows = []
    for data in datasets or known:
        for arch in ARCHS.names():
            if data not in _load(arch):
                continue
            seed = seed_reference(arch, data)
            for cell in CELLS.names():
                spec = fixed_spec(arch, data, cell)
                params = _count(spec)
                row = {"data": data, "arch": arch, "cell": cell, "channels": spec.channels,
                       "params": params, "seed_file": None, "seed_channels": None,
                       "seed_params": None, "seed_match": None}
                if seed is not None:
                    at_seed = params if seed.channels == spec.channels else _count(
                        dataclasses.replace(spec, channels=seed.channels))
                    row.update(seed_file=seed.file, seed_channels=seed.channels,
                               seed_params=seed.params.get(cell),
                               seed_match=at_seed == seed.params.get(cell))
                rows.append(row)
    return rows


def format_parameter_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`parameter_table` as an aligned text table."""
    header = ("data", "arch", "cell", "params", "seed params", "seed file", "match")
    lines = [header] + [
        (
            r["data"],
            r["arch"],
            r["cell"],
            f"{r['params']:,}" + ("*" if _other_channels(r) else ""),
            f"{r['seed_params']:,}" if r["seed_params"] is not None else "-",
            f"{r['seed_file']} ({r['seed_channels']} ch)" if r["seed_file"] else "-",
            "-" if r["seed_match"] is None else "yes" if r["seed_match"] else "NO",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {3, 4}
    text = [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                  for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    ]
    if any(_other_channels(r) for r in rows):
        text.append("* our data's channel count differs from the seed's file; 'match' compares "
                    "the count at the seed's channels")
    return "\n".join(text)


def _other_channels(row: Mapping[str, Any]) -> bool:
    return row["seed_channels"] is not None and row["channels"] != row["seed_channels"]


def _count(spec: ModelSpec) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return count_params(create_model(spec))


def _load(arch: str) -> dict[str, Any]:
    """The entries of ``arch``'s fixed file by dataset (none when it has no file)."""
    ARCHS.get(arch)
    legacy = studies_file(LEGACY_FILE)
    if legacy.is_file():
        raise HpoError(f"{legacy} holds fixed configurations in the old layout; move each "
                       f"architecture's part (models.<arch>) to {legacy.parent}/fixed/<arch>.yaml, "
                       "each dataset's entry at the top with its channels (see the bundled "
                       "files), and delete it")
    path = fixed_file(arch)
    if not path.is_file():
        return {}
    content = load_yaml(path)
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        raise HpoError(f"{path} needs a mapping of dataset: {{channels, peephole, config}}; see "
                       "studies/fixed/autoencoder.yaml")
    return content


def _entry(arch: str, data: str) -> dict[str, Any]:
    entries = _load(arch)
    if data not in entries:
        raise HpoError(
            f"no fixed configuration of {arch} for dataset {data!r} in {fixed_file(arch)}; "
            + (f"choose one of: {', '.join(entries)}" if entries else
               "add one (see studies/fixed/autoencoder.yaml)")
        )
    return entries[data]
