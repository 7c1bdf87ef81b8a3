"""What every architecture shares: registry, output type, base class and config parsing."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from ..budgets import WIDTHS
from ..cells import CELLS, PEEPHOLES, Cell
from ..errors import HpoError
from ..registry import Registry
from ..specs import ModelSpec
from ._layers import check_inputs, crop, pad_to_multiple

__all__ = [
    "ARCHS",
    "Prediction",
    "VideoModel",
    "check_kernel",
    "check_spec",
    "config_keys",
    "count_params",
    "create_model",
    "layer_widths",
    "parse_config",
    "require",
]

class _Archs(Registry["type[VideoModel]"]):
    """The architectures by name. Registering one also declares its channel widths (the class's
    ``widths``) to the budgets, which cap them (:data:`hpo_vidpred.budgets.WIDTHS`)."""

    def register(self, name: str) -> Callable[[type[VideoModel]], type[VideoModel]]:
        add = super().register(name)

        def both(cls: type[VideoModel]) -> type[VideoModel]:
            keys = {f.name for f in dataclasses.fields(cls.Config)}
            undeclared = sorted((set(cls.widths) | set(cls.widths.values())) - keys - {""})
            if undeclared:
                raise ValueError(f"architecture {name!r} declares widths over "
                                 f"{', '.join(undeclared)}, which its Config does not have")
            add(cls)
            WIDTHS.register(name)(dict(cls.widths))
            return cls

        return both


ARCHS = _Archs("architecture")


class Prediction(NamedTuple):
    """What an architecture returns: the predicted frames and its own extra loss term."""

    frames: torch.Tensor  # (B, n_future, C, H, W)
    aux_loss: torch.Tensor  # scalar; zero for architectures without one


class VideoModel(nn.Module):
    """Base of the architectures (one level): keeps the specs, checks the inputs, pads the frames
    to a size the model can downsample and crops the predictions back.

    A subclass sets ``Config`` (its frozen config dataclass), ``multiple`` (H and W are padded
    to a multiple of it) and ``widths`` (the config keys that hold channel widths, which a budget
    caps: key -> "" for one layer's width, or -> the key counting the layers of a stack whose
    width doubles per layer, such as ``{"hidden": "depth"}``; such a key takes an int, the first
    layer's width, or one width per layer, see :func:`layer_widths`) and implements
    :meth:`rollout`.
    """

    Config: type
    multiple: int = 1
    widths: Mapping[str, str] = {}

    def __init__(self, spec: ModelSpec, config: Any) -> None:
        super().__init__()
        self.spec, self.config = spec, config

    def forward(
        self,
        frames_in: torch.Tensor,
        n_future: int,
        targets: torch.Tensor | None = None,
        tf_prob: float = 0.0,
    ) -> Prediction:
        """``frames_in (B, T, C, H, W)`` -> ``n_future`` predicted frames
        ``(B, n_future, C, H, W)`` and the architecture's ``aux_loss``. After the inputs each
        prediction is fed back (closed loop); with ``targets (B, n_future, C, H, W)`` and
        ``tf_prob > 0`` the true frame is fed instead with that probability per sequence
        (scheduled sampling; 1: teacher forcing)."""
        check_inputs(frames_in, n_future, targets)
        height, width = frames_in.shape[-2:]
        frames = pad_to_multiple(frames_in, self.multiple)  # (B, T, C, H', W')
        if targets is not None:
            targets = pad_to_multiple(targets, self.multiple)
        frames_out, aux_loss = self.rollout(frames, n_future, targets, tf_prob)
        return Prediction(crop(frames_out, height, width), aux_loss)

    def rollout(
        self, frames: torch.Tensor, n_future: int, targets: torch.Tensor | None, tf_prob: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """On padded frames: ``(B, n_future, C, H', W')`` predictions and the scalar aux loss."""
        raise NotImplementedError


def require(condition: bool, message: str) -> None:
    """Raise an :class:`HpoError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise HpoError(message)


def parse_config(config_cls: type, values: Mapping[str, Any], arch: str,
                 layered: Iterable[str] = ()) -> Any:
    """Build an architecture's frozen config dataclass from a mapping.

    Unknown keys and values of the wrong type are one-line :class:`HpoError` s; lists become
    tuples; ints are accepted where a float is expected; a key of ``layered`` (the first width of
    a doubling stack) takes an int or a list of ints. Range checks live in each config's
    ``__post_init__``.
    """
    layered = set(layered)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    require(
        not unknown,
        f"unknown {arch} config key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}",
    )
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(default, float) and _is_int(value):
            value = float(value)
        expected = (int, tuple) if key in layered else type(default)
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        require(
            ok and (key not in layered or _is_int(value) or all(_is_int(v) for v in value)),
            f"{arch} config {key}={value!r} should be "
            + ("an int or a list of ints" if key in layered else _KINDS[type(default)]),
        )
        parsed[key] = value
    return config_cls(**parsed)


def layer_widths(depth: int, hidden: int | tuple[int, ...], arch: str,
                 key: str = "hidden") -> tuple[int, ...]:
    """Hidden channels per layer: an int is the first layer's width, doubled at each deeper layer
    (the seed's files: 32, 64 and 48, 96, 192); a tuple gives every width (``depth`` of them).
    ``key``: the config key the widths came from (for messages)."""
    if isinstance(hidden, tuple):
        require(
            len(hidden) == depth,
            f"{arch} config {key}={list(hidden)} gives {len(hidden)} widths; this depth needs "
            f"{depth}",
        )
        widths = hidden
    else:
        widths = tuple(hidden * 2**i for i in range(depth))
    require(all(w >= 1 for w in widths), f"{arch} config {key} widths must be >= 1")
    return widths


def check_kernel(arch: str, **kernels: int) -> None:
    """Every named kernel size must be a positive odd int ('same' padding)."""
    for name, k in kernels.items():
        require(k >= 1 and k % 2 == 1, f"{arch} config {name}={k} must be a positive odd int")


_KINDS = {int: "an int", float: "a number", str: "a string", bool: "true or false"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_spec(spec: ModelSpec) -> Any:
    """The architecture's parsed config of ``spec``; bad names, keys or values are a one-line
    :class:`HpoError` (nothing is built: cheap enough to check every corner of a search space)."""
    cls = ARCHS.get(spec.arch)
    CELLS.get(spec.cell)
    PEEPHOLES.get(spec.peephole)
    if isinstance(spec.channels, bool) or not isinstance(spec.channels, int) or spec.channels < 1:
        raise HpoError(f"model channels={spec.channels!r} must be a positive int")
    if isinstance(spec.forget_bias, bool) or not isinstance(spec.forget_bias, (int, float)) \
            or not math.isfinite(spec.forget_bias):
        raise HpoError(f"model forget_bias={spec.forget_bias!r} must be a finite number")
    return parse_config(cls.Config, spec.config, spec.arch,
                        layered=[key for key, layers in cls.widths.items() if layers])


def create_model(spec: ModelSpec) -> nn.Module:
    """The architecture ``spec.arch`` with cell ``spec.cell``, configured by ``spec.config``.

    Bad names, keys or values are a one-line :class:`HpoError` before anything is built.
    """
    model = ARCHS.get(spec.arch)(spec, check_spec(spec))
    if spec.forget_bias:
        for cell in model.modules():
            if isinstance(cell, Cell):
                cell.init_forget_bias(float(spec.forget_bias))
    return model


def config_keys(arch: str) -> set[str]:
    """The ``config`` keys architecture ``arch`` takes (what a search space may set)."""
    return {f.name for f in dataclasses.fields(ARCHS.get(arch).Config)}


def count_params(model: nn.Module) -> int:
    """Trainable parameters (``requires_grad``), the number the seed's tables report."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
