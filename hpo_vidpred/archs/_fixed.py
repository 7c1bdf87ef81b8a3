"""The seed's fixed configurations (``studies/fixed.yaml``) and the table of ``hpo models``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..cells import CELLS
from ..errors import HpoError
from ..paths import studies_file
from ..specs import ModelSpec, from_dict, load_yaml
from ._base import ARCHS, count_params, create_model

__all__ = [
    "SeedReference",
    "fixed_datasets",
    "fixed_spec",
    "format_parameter_table",
    "parameter_table",
    "seed_reference",
]

FIXED_FILE = "fixed.yaml"


@dataclass(frozen=True)
class SeedReference:
    """What the seed's own implementation has for one architecture and dataset."""

    file: str  # the seed's yml file
    channels: int  # input channels in that file
    params: Mapping[str, int]  # trainable parameters per cell name


def fixed_datasets() -> list[str]:
    """Datasets that ``studies/fixed.yaml`` configures."""
    return list(_load()["channels"])


def fixed_spec(arch: str, data: str, cell: str, channels: int | None = None) -> ModelSpec:
    """The seed's configuration of ``arch`` for dataset ``data`` with ``cell``, for frames with
    ``channels`` channels (default: our dataset's, from ``studies/fixed.yaml``)."""
    entry = _entry(arch, data)
    CELLS.get(cell)
    if channels is None:
        channels = int(_load()["channels"][data])
    values = {k: v for k, v in entry.items() if k != "seed"}
    where = f"{studies_file(FIXED_FILE)} (models.{arch}.{data})"
    values.update(arch=arch, cell=cell, channels=channels)
    return from_dict(ModelSpec, values, where)


def seed_reference(arch: str, data: str) -> SeedReference:
    """The seed's file, channel count and parameter counts for ``arch`` on ``data``."""
    seed = _entry(arch, data)["seed"]
    return SeedReference(
        file=seed["file"], channels=int(seed["channels"]), params=dict(seed["params"])
    )


def parameter_table(datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per dataset x architecture x cell: our trainable-parameter count at the fixed
    configuration with our data's channels, the seed's count, and whether ours equals the seed's
    when built with the seed's channels (``seed_match``)."""
    known = fixed_datasets()
    for name in datasets or []:
        if name not in known:
            raise HpoError(f"unknown dataset {name!r}; choose one of: {', '.join(known)}")
    rows = []
    for data in datasets or known:
        for arch in ARCHS.names():
            seed = seed_reference(arch, data)
            for cell in CELLS.names():
                spec = fixed_spec(arch, data, cell)
                params = _count(spec)
                at_seed = params if seed.channels == spec.channels else _count(
                    dataclasses.replace(spec, channels=seed.channels)
                )
                rows.append({
                    "data": data,
                    "arch": arch,
                    "cell": cell,
                    "channels": spec.channels,
                    "params": params,
                    "seed_file": seed.file,
                    "seed_channels": seed.channels,
                    "seed_params": seed.params.get(cell),
                    "seed_match": at_seed == seed.params.get(cell),
                })
    return rows


def format_parameter_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`parameter_table` as an aligned text table."""
    header = ("data", "arch", "cell", "params", "seed params", "seed file", "match")
    lines = [header] + [
        (
            r["data"],
            r["arch"],
            r["cell"],
            f"{r['params']:,}" + ("" if r["channels"] == r["seed_channels"] else "*"),
            f"{r['seed_params']:,}" if r["seed_params"] is not None else "-",
            f"{r['seed_file']} ({r['seed_channels']} ch)",
            "yes" if r["seed_match"] else "NO",
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
    if any(r["channels"] != r["seed_channels"] for r in rows):
        text.append("* our data's channel count differs from the seed's file; 'match' compares "
                    "the count at the seed's channels")
    return "\n".join(text)


def _count(spec: ModelSpec) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return count_params(create_model(spec))


def _load() -> dict[str, Any]:
    path = studies_file(FIXED_FILE)
    content = load_yaml(path)
    if not isinstance(content, dict) or not isinstance(content.get("models"), dict) \
            or not isinstance(content.get("channels"), dict):
        raise HpoError(f"{path} needs the mappings 'channels' and 'models'; see the bundled copy")
    return content


def _entry(arch: str, data: str) -> dict[str, Any]:
    ARCHS.get(arch)
    content = _load()
    models = content["models"].get(arch) or {}
    if data not in models or data not in content["channels"]:
        raise HpoError(
            f"no fixed configuration of {arch} for dataset {data!r} in "
            f"{studies_file(FIXED_FILE)}; "
            f"choose one of: {', '.join(d for d in models if d in content['channels'])}"
        )
    return models[data]
