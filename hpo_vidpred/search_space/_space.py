"""A validated search space: its parameters, sampling, and the values a trial trains (the format
and its checks: :mod:`hpo_vidpred.search_space`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import HpoError
from ..specs import ModelSpec, TrainSpec

__all__ = ["MODEL_KEYS", "TRAIN_KEYS", "Param", "SearchSpace", "param_base"]

# Set by the budget (epochs, steps, evaluation), by the run (seed, device) or the device itself.
_NOT_TUNABLE = {"epochs", "steps_per_epoch", "val_batch_size", "seed", "device", "bf16",
                "channels_last", "compile"}
TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainSpec)) - _NOT_TUNABLE
MODEL_KEYS = frozenset({"cell", "peephole", "forget_bias"})

@dataclass(frozen=True)
class Param:
    """One searched hyperparameter (see the module docstring for the YAML keys)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: Mapping[str, tuple] = field(default_factory=dict)
    per_layer: str = ""
    # Set by a budget (hpo_vidpred.budgets.narrow), never by a YAML file: the first layer's width
    # of a stack whose layers double, bounded so that the widest layer has at most ``cap``
    # channels: high = cap // 2^(doubling - 1), with ``doubling`` the depth parameter.
    cap: int | None = None
    doubling: str = ""

    def bounds(self, values: Mapping[str, Any]) -> tuple[Any, Any]:
        """(low, high) of a range parameter given the values sampled before it (a budget's
        width bound through depth; otherwise the declared range)."""
        if self.cap is None:
            return self.low, self.high
        layers = int(values.get(self.doubling, 1)) if self.doubling else 1
        high = min(self.high, max(1, self.cap // 2 ** max(0, layers - 1)))
        if self.step is not None and high > self.low:
            high = self.low + (high - self.low) // self.step * self.step
        return min(self.low, high), high

    def values(self) -> tuple | None:
        """Every value this parameter can take, where that is a short list (else ``None``)."""
        if self.type == "categorical":
            return self.choices
        if self.type == "int" and not self.log and (self.high - self.low) // (self.step or 1) < 64:
            return tuple(range(self.low, self.high + 1, self.step or 1))
        return None

    def suggest(self, trial: Any, name: str, values: Mapping[str, Any] | None = None) -> Any:
        """Ask an Optuna trial for a value of this parameter under ``name`` (``values``: those
        sampled before it, which a budget's bound may depend on)."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        suggest = trial.suggest_float if self.type == "float" else trial.suggest_int
        kwargs: dict[str, Any] = {"log": self.log}
        if self.step is not None:
            kwargs["step"] = self.step
        low, high = self.bounds(values or {})
        return suggest(name, low, high, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The canonical YAML form (what the study records and compares on resume)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        if self.per_layer:
            out["per_layer"] = self.per_layer
        if self.cap is not None:
            out["cap"] = self.cap
            if self.doubling:
                out["doubling"] = self.doubling
        return out


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space for one architecture."""

    arch: str
    params: tuple[Param, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    config_keys: frozenset = frozenset()  # what the architecture takes (archs.config_keys)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Sample every active parameter from ``trial``; per-layer ones come back as tuples.

        Returns the fixed values merged with the sampled ones, keyed by target name.
        """
        values: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            if any(values.get(ref) not in allowed for ref, allowed in p.when.items()):
                continue
            if p.per_layer:
                n = int(values[p.per_layer])
                values[p.name] = tuple(p.suggest(trial, f"{p.name}_{i}", values)
                                       for i in range(1, n + 1))
            else:
                values[p.name] = p.suggest(trial, p.name, values)
        return values

    def dimensions(self) -> list[str]:
        """Every name a trial of this space can sample, in the file's order; a per-layer
        parameter as ``name_1 .. name_K`` for the deepest stack its layer parameter allows."""
        out: list[str] = []
        for p in self.params:
            if p.per_layer:
                ref = self.param(p.per_layer)
                deepest = max(ref.values() or (ref.high,)) if ref is not None else \
                    int(self.fixed.get(p.per_layer, 1))
                out += [f"{p.name}_{i}" for i in range(1, int(deepest) + 1)]
            else:
                out.append(p.name)
        return out

    def trained_values(self, model: Mapping[str, Any], train: Mapping[str, Any]
                       ) -> dict[str, Any]:
        """The inverse of :meth:`apply`: the value of every parameter of this space as a trial
        trained it, read from its recorded ``model_spec`` and ``train_spec`` (dicts); per-layer
        values as ``name_1 .. name_K``. Names the specs do not hold (helpers such as ``depth``
        of an architecture without one) are left out."""
        config = model.get("config") or {}
        out: dict[str, Any] = {}
        for p in self.params:
            source = train if p.name in TRAIN_KEYS else model if p.name in MODEL_KEYS else config
            if p.name not in source:
                continue
            value = source[p.name]
            if p.per_layer and isinstance(value, (list, tuple)):
                out.update({f"{p.name}_{i}": v for i, v in enumerate(value, start=1)})
            else:
                out[p.name] = value
        return out

    def pin(self, name: str, value: Any) -> SearchSpace:
        """The same space with ``name`` fixed to ``value`` (``--cell stlstm``): never sampled."""
        param = self.param(name)
        if param is not None and param.values() is not None and value not in param.values():
            raise HpoError(f"{name} {value!r} is outside the search space's choices "
                           f"{list(param.values())}; pick one of them or edit the search space")
        params = tuple(p for p in self.params if p.name != name)
        return dataclasses.replace(self, params=params, fixed={**self.fixed, name: value})

    def apply(self, values: Mapping[str, Any], model: ModelSpec,
              train: TrainSpec) -> tuple[ModelSpec, TrainSpec]:
        """Put sampled (and fixed) values where they belong: TrainSpec fields, ModelSpec fields
        (``cell``, ``peephole``) or the architecture's config; helpers such as ``depth`` that the
        architecture does not take are dropped."""
        config = dict(model.config)
        model_kw: dict[str, Any] = {}
        train_kw: dict[str, Any] = {}
        for name, value in values.items():
            if name in TRAIN_KEYS:
                train_kw[name] = value
            elif name in MODEL_KEYS:
                model_kw[name] = value
            elif name in self.config_keys:
                config[name] = value
        return (dataclasses.replace(model, config=config, **model_kw),
                dataclasses.replace(train, **train_kw))

    def corners(self) -> list[dict[str, Any]]:
        """Values at every parameter's extremes -- each choice, each end of a range, every value
        of a short integer range -- one parameter at a time over the others' first values (per
        layer: the same value in every layer): what a plan checks before anything runs."""
        first = dict(self.fixed)
        for p in self.params:
            first[p.name] = self._layers(p, (p.values() or (p.low,))[0], first)
        out = [first]
        for p in self.params:
            out += [{**first, p.name: self._layers(p, v, first)}
                    for v in (p.values() or (p.low, p.high))]
        return out

    @staticmethod
    def _layers(p: Param, value: Any, values: Mapping[str, Any]) -> Any:
        return (value,) * int(values[p.per_layer]) if p.per_layer else value

    def param_of(self, name: str) -> Param | None:
        """The parameter a trial's parameter ``name`` belongs to: ``hidden_2`` is a value of a
        per-layer ``hidden``."""
        return self.param(name) or self.param(param_base(name))

    def param(self, name: str) -> Param | None:
        """The parameter called ``name``, if it is searched."""
        return next((p for p in self.params if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The canonical YAML form."""
        return {"arch": self.arch, "fixed": dict(self.fixed),
                "params": {p.name: p.to_dict() for p in self.params}}


def param_base(name: str) -> str:
    """The search-space parameter a sampled name stands for: ``hidden_2`` -> ``hidden`` (per
    layer), anything else itself."""
    return re.sub(r"_\d+$", "", name)
