"""Video-prediction architectures, registered by name: ``autoencoder``, ``prednet``,
``spatiotemporal``.

Every architecture is built from a :class:`~hpo_vidpred.specs.ModelSpec` by :func:`create_model`,
takes the recurrent cell as a spec value, and is called as
``model(frames_in (B, T, C, H, W), n_future, targets=None, tf_prob=0.0) -> Prediction``.
"""

from __future__ import annotations

from . import autoencoder, prednet, spatiotemporal  # noqa: F401  (register the architectures)
from ._base import ARCHS, Prediction, check_spec, config_keys, count_params, create_model
from ._fixed import (
    SeedReference,
    fixed_datasets,
    fixed_spec,
    format_parameter_table,
    parameter_table,
    seed_reference,
)

__all__ = [
    "ARCHS",
    "Prediction",
    "SeedReference",
    "check_spec",
    "config_keys",
    "count_params",
    "create_model",
    "fixed_datasets",
    "fixed_spec",
    "format_parameter_table",
    "parameter_table",
    "seed_reference",
]
