"""Video-prediction architectures, registered by name: ``autoencoder``, ``prednet``,
``spatiotemporal``.

Each public module of this package is one architecture and registers itself under its name
(``@ARCHS.register``); importing the package imports them all, so adding an architecture is
adding its module (with its search space and fixed configurations: docs/extending.md). Every
architecture is built from a :class:`~hpo_vidpred.specs.ModelSpec` by :func:`create_model`, takes
the recurrent cell as a spec value, and is called as
``model(frames_in (B, T, C, H, W), n_future, targets=None, tf_prob=0.0) -> Prediction``.
"""

from __future__ import annotations

import importlib

from ..registry import module_names
from ._base import ARCHS, Prediction, check_spec, config_keys, count_params, create_model
from ._fixed import (
    SeedReference,
    base_spec,
    fixed_datasets,
    fixed_file,
    fixed_spec,
    format_parameter_table,
    parameter_table,
    seed_reference,
)

__all__ = [
    "ARCHS",
    "Prediction",
    "SeedReference",
    "base_spec",
    "check_spec",
    "config_keys",
    "count_params",
    "create_model",
    "fixed_datasets",
    "fixed_file",
    "fixed_spec",
    "format_parameter_table",
    "parameter_table",
    "seed_reference",
]

for _name in module_names(__name__):  # each registers itself
    importlib.import_module(f"{__name__}.{_name}")
