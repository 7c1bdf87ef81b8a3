"""Budgets: how much compute one run gets (docs/design.md section 6),
``--budget smoke|small|seed|full``.

A budget rewrites the three specs of a run and says what it changed; the change list is recorded
with the study and stated in reports.

=========  =================================================================================
smoke      seconds on a CPU (tests): 16-pixel-high frames, 2 -> 2 frames (KITTI 2 -> 1),
           2 epochs x 3 steps, batch 4, 8 validation sequences, widths <= 8.
small      the CPU demo, at which models learn: a 20-trial study in about 15 minutes on 2 cores.
           32-pixel-high frames, 5 -> 5 (KITTI 5 -> 1), Moving MNIST with one digit, 4 epochs x
           150 steps, batch <= 16, 64 validation sequences; in searches widths <= 32 and the
           autoencoder's space-to-depth patch >= 4.
medium     a short GPU study (benchmarks/gpu.sh): the dataset's frame size and task, 4 epochs x
           250 steps, 256 validation and test sequences.
seed       the seed's schedule at the seed's data sizes: Moving MNIST 1 epoch x 5000 steps,
           KTH 20 x 500, KITTI 50 x 500 (slides, "Experimental setup").
full       long GPU runs: Moving MNIST 50 x 1000, KTH 50 x 1000, KITTI 100 x 500.
=========  =================================================================================

Frame sizes are scaled to the budget's height keeping the dataset's aspect ratio (width rounded
to a multiple of 4); sequence lengths and batch sizes are caps (a shorter setting stays). Channel
widths are capped so that no layer is wider than ``max_width`` and ``patch`` raised to
``min_patch``, for search spaces only: a fixed configuration is passed with ``fixed_model=True``
and keeps the seed's parameter count at every budget. Which config keys are widths each
architecture declares itself (:data:`WIDTHS`): a width of one layer (the spatio-temporal
``enc_channels``), or the first width of a stack whose layers double (``hidden``, over ``depth``
layers), which may also be given as one width per layer.

Measured for ``small`` (benchmarks/RESULTS.md, "Learning at the small budget"): at 32x32 with one
digit, an autoencoder with patch 4 reaches about 0.55x the MSE of predicting black frames in 600
steps (about a minute and a half on one core); at 4 x 12 steps every model learned a gray blob.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .registry import Registry
from .search_space import Param, SearchSpace
from .specs import DataSpec, ModelSpec, TrainSpec, dict_changes, to_dict

__all__ = ["Budget", "BUDGETS", "WIDTHS", "get", "apply", "describe", "changes", "narrow",
           "search_caps"]

# Per architecture, the config keys that hold channel widths: key -> "" (one layer's width) or
# the config key counting the layers of a stack whose width doubles per layer ("depth"): an int
# is then the first layer's width, a list one width per layer. Each architecture declares its
# own (``widths`` of its class, registered with it by hpo_vidpred.archs).
WIDTHS: Registry[Mapping[str, str]] = Registry("architecture")


@dataclass(frozen=True)
class Budget:
    """One compute level. ``None`` leaves a setting as the specs have it."""

    name: str
    summary: str
    schedule: Mapping[str, tuple[int, int]]  # dataset -> (epochs, steps_per_epoch); "*" otherwise
    frame_height: Optional[int] = None  # scale frames to this height (CPU levels)
    max_in: Optional[int] = None  # cap on input frames
    max_out: Optional[int] = None  # cap on predicted frames
    max_batch: Optional[int] = None
    val_size: Optional[int] = None  # validation (and test) sequences
    max_width: Optional[int] = None  # cap on every recurrent layer's width (search spaces only)
    min_patch: Optional[int] = None  # floor on a config's space-to-depth patch (search spaces only)
    data_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # dataset -> DataSpec.options set by the budget (e.g. one Moving MNIST digit)
    promote_factor: int = 2  # the promotion scheduler's last rung: this many times the epochs

    def epochs_steps(self, dataset: str) -> tuple[int, int]:
        """(epochs, steps_per_epoch) for ``dataset``."""
        return self.schedule.get(dataset, self.schedule["*"])

    def promote_epochs(self, dataset: str) -> int:
        """The longest training of ``hpo run --scheduler promote`` (its last rung): configurations
        that keep winning train past the fixed-length trial of :meth:`epochs_steps`."""
        return self.epochs_steps(dataset)[0] * self.promote_factor


BUDGETS: Registry[Budget] = Registry("budget")


def _register(budget: Budget) -> None:
    BUDGETS.register(budget.name)(budget)


_register(Budget(
    name="smoke",
    summary="seconds on a CPU, for tests",
    schedule={"*": (2, 3)},
    frame_height=16, max_in=2, max_out=2, max_batch=4, val_size=8, max_width=8,
))
_register(Budget(
    name="small",
    summary="the CPU demo at which models learn: a 20-trial study in about 15 minutes on 2 cores",
    schedule={"*": (4, 150)},
    frame_height=32, max_in=5, max_out=5, max_batch=16, val_size=64, max_width=32, min_patch=4,
    data_options={"mmnist": {"digits": 1}},
))
_register(Budget(
    name="medium",
    summary="a short GPU study: the dataset's frames, 4 x 250 steps, 256 validation sequences",
    schedule={"*": (4, 250)}, val_size=256,
))
_register(Budget(
    name="seed",
    summary="the seed's budget: Moving MNIST 1 x 5000 steps, KTH 20 x 500, KITTI 50 x 500",
    schedule={"mmnist": (1, 5000), "kth": (20, 500), "kitti": (50, 500), "*": (20, 500)},
))
_register(Budget(
    name="full",
    summary="long GPU runs",
    schedule={"mmnist": (50, 1000), "kth": (50, 1000), "kitti": (100, 500), "*": (50, 1000)},
))


def get(budget: str | Budget) -> Budget:
    """The :class:`Budget` named ``budget`` (an :class:`HpoError` listing the names if unknown)."""
    return budget if isinstance(budget, Budget) else BUDGETS.get(budget)


def apply(
    budget: str | Budget,
    data_spec: DataSpec,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    *,
    fixed_model: bool = False,
) -> tuple[DataSpec, ModelSpec, TrainSpec]:
    """The three specs scaled to ``budget``.

    ``fixed_model=True`` leaves the model config alone (a fixed configuration keeps its parameter
    count); otherwise channel widths above the budget's ``max_width`` are capped.
    """
    b = get(budget)
    data_spec = dataclasses.replace(data_spec, **_data_changes(b, data_spec))
    epochs, steps = b.epochs_steps(data_spec.name)
    train: dict[str, Any] = {"epochs": epochs, "steps_per_epoch": steps}
    if b.max_batch is not None:
        train["batch_size"] = min(train_spec.batch_size, b.max_batch)
        train["val_batch_size"] = min(train_spec.val_batch_size, b.max_batch * 2)
    train_spec = dataclasses.replace(train_spec, **train)
    if not fixed_model:
        config = _cap_config(b, model_spec.config, WIDTHS.get(model_spec.arch))
        model_spec = dataclasses.replace(model_spec, config=config)
    return data_spec, model_spec, train_spec


def _data_changes(b: Budget, spec: DataSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if b.frame_height is not None and spec.height > b.frame_height:
        width = spec.width * b.frame_height / spec.height
        out.update(height=b.frame_height, width=max(4, 4 * round(width / 4)))
    if b.max_in is not None:
        out["n_in"] = min(spec.n_in, b.max_in)
    if b.max_out is not None:
        out["n_out"] = min(spec.n_out, b.max_out)
    if b.val_size is not None:
        for name in ("val_size", "test_size"):
            current = getattr(spec, name)
            out[name] = min(current, b.val_size) if current else b.val_size
    options = b.data_options.get(spec.name)
    if options:
        out["options"] = {**spec.options, **options}
    return out


def _cap_config(b: Budget, config: Mapping[str, Any],
                widths: Mapping[str, str]) -> Mapping[str, Any]:
    """A searched configuration within the budget's caps (widths, patch)."""
    if b.max_width is not None:
        config = _cap_widths(config, b.max_width, widths)
    patch = config.get("patch")
    if b.min_patch is not None and isinstance(patch, int) and patch < b.min_patch:
        config = {**config, "patch": b.min_patch}
    return config


def _cap_widths(config: Mapping[str, Any], max_width: int,
                widths: Mapping[str, str]) -> dict[str, Any]:
    """``config`` with no layer wider than ``max_width``.

    The first width of a doubling stack (``hidden`` over ``depth``) as an int doubles per deeper
    layer, so it is capped at ``max_width // 2^(depth - 1)`` (at least 1): the widest layer then
    has at most ``max_width`` channels (PredNet, whose depth counts the pixel layer, at most half
    of it). Per-layer lists are capped element by element, one layer's width directly.
    """
    capped = dict(config)
    for key, layers in widths.items():
        value = capped.get(key)
        if isinstance(value, (tuple, list)):
            capped[key] = tuple(min(int(v), max_width) for v in value)
        elif isinstance(value, int) and not isinstance(value, bool):
            doubling = 2 ** max(0, int(capped.get(layers, 1)) - 1) if layers else 1
            capped[key] = min(value, max(1, max_width // doubling))
    return capped


def narrow(budget: str | Budget, space: SearchSpace) -> SearchSpace:
    """``space`` offering only what trains at ``budget``: the values :func:`apply` would change
    are never sampled, so a trial's parameters are the configuration it trained.

    Categorical choices above the batch cap or below the patch floor are dropped (one choice
    left: the parameter becomes fixed; none left: fixed at the value the budget sets); integer
    and float ranges are cut at the caps; the first width of a doubling stack (``hidden``) is
    bounded through its depth (``max_width // 2^(depth - 1)``, see :meth:`Param.bounds`). The
    widths are those the space's architecture declares (:data:`WIDTHS`).
    """
    b = get(budget)
    widths = WIDTHS.get(space.arch) if b.max_width is not None else {}
    params: list[Param] = []
    fixed = dict(space.fixed)
    for p in space.params:
        if p.name == "batch_size" and b.max_batch is not None:
            p = _below(p, b.max_batch)
        elif p.name == "patch" and b.min_patch is not None:
            p = _above(p, b.min_patch)
        elif p.name in widths:
            p = _width(p, b.max_width, space, widths[p.name])
        if isinstance(p, Param):
            params.append(p)
        else:  # a single value left: not a parameter any more
            fixed[p[0]] = p[1]
    if b.max_batch is not None and isinstance(fixed.get("batch_size"), int):
        fixed["batch_size"] = min(fixed["batch_size"], b.max_batch)
    if b.min_patch is not None and isinstance(fixed.get("patch"), int):
        fixed["patch"] = max(fixed["patch"], b.min_patch)
    kept = {p.name for p in params} | set(fixed)  # drop conditions on what is now fixed
    params = [dataclasses.replace(p, when={k: v for k, v in p.when.items() if k in kept})
              for p in params]
    return dataclasses.replace(space, params=tuple(params), fixed=fixed)


def _below(p: Param, most: int) -> Param | tuple[str, Any]:
    if p.type == "categorical":
        kept = tuple(c for c in p.choices if not isinstance(c, int) or c <= most)
        return (p.name, kept[0]) if len(kept) == 1 else \
            (p.name, most) if not kept else dataclasses.replace(p, choices=kept)
    if p.low >= most:
        return p.name, most
    return dataclasses.replace(p, high=min(p.high, most))


def _above(p: Param, least: int) -> Param | tuple[str, Any]:
    if p.type == "categorical":
        kept = tuple(c for c in p.choices if not isinstance(c, int) or c >= least)
        return (p.name, kept[0]) if len(kept) == 1 else \
            (p.name, least) if not kept else dataclasses.replace(p, choices=kept)
    if p.high <= least:
        return p.name, least
    return dataclasses.replace(p, low=max(p.low, least))


def _width(p: Param, most: int, space: SearchSpace, layers: str) -> Param | tuple[str, Any]:
    """A width parameter within ``most`` channels per layer: per-layer values and one layer's
    width directly, the first width of a doubling stack through the parameter ``layers`` (its
    depth)."""
    if p.type == "categorical":
        return _below(p, most)
    if p.per_layer or not layers:
        return _below(p, most)
    depth = space.param(layers)
    if depth is None:  # a fixed depth: a fixed bound
        count = int(space.fixed.get(layers, 1))
        return _below(p, max(1, most // 2 ** max(0, count - 1)))
    return dataclasses.replace(p, cap=most, doubling=layers)


def changes(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    """``"data.height: 64 -> 32"`` for every field that differs between two spec tuples
    (data, model, train)."""
    return dict_changes({k: to_dict(v) for k, v in zip(("data", "model", "train"), before)},
                        {k: to_dict(v) for k, v in zip(("data", "model", "train"), after)})


def search_caps(budget: str | Budget) -> list[str]:
    """What the budget does to searched configurations, in words (for reports): the search
    space is narrowed to these limits before sampling (:func:`narrow`); in studies recorded
    before that, values beyond them were capped after sampling."""
    b = get(budget)
    out = []
    if b.max_width is not None:
        out.append(f"searched widths at most {b.max_width} channels per layer (the first "
                   "width of a doubling stack bounded through its depth)")
    if b.min_patch is not None:
        out.append(f"searched space-to-depth patch at least {b.min_patch}")
    if b.max_batch is not None:
        out.append(f"searched batch sizes at most {b.max_batch}")
    return out


def describe(
    budget: str | Budget,
    data_spec: DataSpec,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    *,
    fixed_model: bool = False,
) -> dict[str, Any]:
    """What :func:`apply` does to these specs, JSON-friendly, for the study's user attributes:
    ``{"budget": name, "summary": ..., "changes": ["data.height: 64 -> 32", ...]}``."""
    b = get(budget)
    before = (data_spec, model_spec, train_spec)
    after = apply(b, *before, fixed_model=fixed_model)
    return {"budget": b.name, "summary": b.summary, "changes": changes(before, after)}
