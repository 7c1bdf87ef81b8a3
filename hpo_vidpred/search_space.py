"""Search spaces: the YAML format of ``studies/<arch>.yaml``, its validation and its sampling.

A file has three top-level keys::

    arch: autoencoder              # optional; must match --arch when given
    fixed:                         # optional; values every trial uses (over the seed's fixed config)
      schedule: cosine
    params:                        # what the sampler chooses, in this order
      lr:          {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size:  {type: categorical, choices: [8, 16, 32]}
      depth:       {type: int, low: 1, high: 3}
      hidden:      {type: int, low: 16, high: 128, log: true, per_layer: depth}
      l_all:       {type: float, low: 0.0, high: 0.5, when: {layer_loss: all}}

Parameter keys: ``type`` (float | int | categorical); float and int take ``low``, ``high``
(inclusive), ``log`` (log-uniform, low > 0) or ``step`` (a grid), not both; categorical takes a
non-empty list ``choices``. Two keys make a space conditional: ``per_layer: P`` samples one value
per layer, ``name_1 .. name_P`` (P an int parameter declared above), and hands the architecture a
tuple; ``when: {Q: v}`` (or ``{Q: [v, w]}``) samples the parameter only when Q, declared above or
fixed, has one of those values. A name must be something the architecture takes
(:func:`hpo_vidpred.archs.config_keys`), a :class:`~hpo_vidpred.specs.TrainSpec` field other than
those the budget and the device set, or ``cell`` / ``peephole``; the one exception is a helper
(such as ``depth``) that only other parameters refer to. Everything is checked before anything
runs, each problem as one line.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HpoError
from .specs import ModelSpec, TrainSpec, load_yaml

__all__ = ["MODEL_KEYS", "TRAIN_KEYS", "Param", "SearchSpace", "load_search_space",
           "param_base"]

# Set by the budget (epochs, steps, evaluation), by the run (seed, device) or the device itself.
_NOT_TUNABLE = {"epochs", "steps_per_epoch", "val_batch_size", "seed", "device", "bf16",
                "channels_last", "compile"}
TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainSpec)) - _NOT_TUNABLE
MODEL_KEYS = frozenset({"cell", "peephole", "forget_bias"})

_TOP_KEYS = {"arch", "fixed", "params"}
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when", "per_layer"},
    "int": {"type", "low", "high", "log", "step", "when", "per_layer"},
    "categorical": {"type", "choices", "when", "per_layer"},
}
_SCALARS = (str, int, float, bool, type(None))
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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


def load_search_space(source: str | Path | Mapping[str, Any], arch: str,
                      config_keys: Iterable[str], cells: Iterable[str] = ()) -> SearchSpace:
    """Read and validate a search space (a YAML file or an already-parsed mapping).

    ``config_keys`` are the keys ``arch`` takes (``archs.config_keys(arch)``); ``cells`` the
    registered cells, checked against a ``cell`` parameter's choices. Every problem is an
    :class:`HpoError` of one line naming the file and the parameter.
    """
    where = str(source) if isinstance(source, (str, Path)) else "the search space"
    raw = load_yaml(source) if isinstance(source, (str, Path)) else source

    def fail(message: str) -> HpoError:
        return HpoError(f"search space {where}: {message}")

    if not isinstance(raw, Mapping):
        raise fail("expected a mapping with 'params' (and optionally 'arch', 'fixed')")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(map(str, unknown))}; valid: arch, fixed, params")
    if raw.get("arch", arch) != arch:
        raise fail(f"is for arch {raw['arch']!r}, not {arch!r}; pass the right --search-space")
    targets = set(TRAIN_KEYS) | set(MODEL_KEYS) | set(config_keys)
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise fail("'fixed' must be a mapping of name: value")
    raw_params = raw.get("params")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise fail("'params' must be a non-empty mapping of name: {type: ..., ...}")

    params: list[Param] = []
    for name, spec in raw_params.items():
        params.append(_parse_param(str(name), spec, params, fixed, fail))
    helpers = _helpers(params)
    for name in list(fixed) + [p.name for p in params]:
        if name not in targets and name not in helpers:
            raise fail(f"parameter {name!r} is not taken by arch {arch!r}; it takes: "
                       f"{', '.join(sorted(targets))}")
    both = sorted(set(fixed) & {p.name for p in params})
    if both:
        raise fail(f"{', '.join(both)} is both fixed and searched; keep one")
    cells = list(cells)
    cell = next((p for p in params if p.name == "cell"), None)
    for value in (cell.choices if cell else ()) + ((fixed["cell"],) if "cell" in fixed else ()):
        if cells and value not in cells:
            raise fail(f"unknown cell {value!r}; choose from: {', '.join(cells)}")
    return SearchSpace(arch=arch, params=tuple(params), fixed=_plain(fixed),
                       config_keys=frozenset(config_keys))


def _parse_param(name: str, spec: Any, earlier: list[Param], fixed: Mapping[str, Any],
                 fail) -> Param:
    if not isinstance(spec, Mapping):
        raise fail(f"parameter {name!r} must be a mapping like {{type: float, low: 0.1, high: 1}}")
    kind = spec.get("type")
    if kind not in _KEYS:
        raise fail(f"parameter {name!r}: type must be float, int or categorical, not {kind!r}")
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        raise fail(f"parameter {name!r}: unknown key(s) {', '.join(map(str, unknown))} for a "
                   f"{kind}; valid: {', '.join(sorted(_KEYS[kind]))}")
    if any(p.name == name for p in earlier):
        raise fail(f"parameter {name!r} is declared twice")
    kw: dict[str, Any] = {}
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail(f"parameter {name!r}: choices must be a non-empty list")
        if not all(isinstance(c, _SCALARS) for c in choices):
            raise fail(f"parameter {name!r}: choices must be numbers, strings, booleans or null")
        if len(set(map(repr, choices))) != len(choices):
            raise fail(f"parameter {name!r}: choices repeat a value")
        kw["choices"] = tuple(_number(c) for c in choices)
    else:
        kw.update(_parse_range(name, kind, spec, fail))
    kw["when"] = _parse_when(name, spec.get("when"), earlier, fixed, fail)
    kw["per_layer"] = _parse_per_layer(name, spec.get("per_layer"), earlier, fail)
    return Param(name=name, type=kind, **kw)


def _parse_range(name: str, kind: str, spec: Mapping[str, Any], fail) -> dict[str, Any]:
    number = (int,) if kind == "int" else (int, float)
    out: dict[str, Any] = {}
    for key in ("low", "high", "step"):
        value = _number(spec.get(key))
        if value is None and key != "step":
            raise fail(f"parameter {name!r}: {key} is required for a {kind}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, number)):
            raise fail(f"parameter {name!r}: {key} must be {'an integer' if kind == 'int' else 'a number'}, "
                       f"not {value!r}")
        out[key] = float(value) if kind == "float" and value is not None else value
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"parameter {name!r}: log must be true or false")
    for key in ("low", "high", "step"):
        if out[key] is not None and not math.isfinite(out[key]):
            raise fail(f"parameter {name!r}: {key} must be a finite number, not {out[key]!r}")
    if out["low"] > out["high"]:
        raise fail(f"parameter {name!r}: low {out['low']} > high {out['high']}")
    if log and out["low"] <= 0:
        raise fail(f"parameter {name!r}: log needs low > 0, not {out['low']}")
    if log and out["step"] is not None:
        raise fail(f"parameter {name!r}: use log or step, not both")
    if out["step"] is not None and out["step"] <= 0:
        raise fail(f"parameter {name!r}: step must be > 0")
    out["log"] = log
    return out


def _parse_when(name: str, when: Any, earlier: list[Param], fixed: Mapping[str, Any],
                fail) -> dict[str, tuple]:
    if when is None:
        return {}
    if not isinstance(when, Mapping) or not when:
        raise fail(f"parameter {name!r}: when must be a mapping like {{layer_loss: all}}")
    out = {}
    for ref, allowed in when.items():
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        source = next((p for p in earlier if p.name == ref), None)
        if source is None and ref not in fixed:
            raise fail(f"parameter {name!r}: when refers to {ref!r}, which is not declared above")
        possible = source.values() if source is not None else (fixed[ref],)
        if possible is not None and not set(map(repr, allowed)) & set(map(repr, possible)):
            raise fail(f"parameter {name!r}: when {ref} in {list(allowed)} never holds; "
                       f"{ref} takes {list(possible)}")
        out[str(ref)] = allowed
    return out


def _parse_per_layer(name: str, ref: Any, earlier: list[Param], fail) -> str:
    if ref is None:
        return ""
    source = next((p for p in earlier if p.name == ref), None)
    values = source.values() if source is not None else None
    if source is None or values is None or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise fail(f"parameter {name!r}: per_layer must name an integer parameter >= 1 "
                   f"declared above (such as depth), not {ref!r}")
    return str(ref)


def _number(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``1e-3`` and ``1.0e39`` as text; they are meant as numbers."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _helpers(params: Iterable[Param]) -> set[str]:
    """Names other parameters refer to (``per_layer``, ``when``): allowed without a target."""
    out: set[str] = set()
    for p in params:
        out.update(p.when)
        if p.per_layer:
            out.add(p.per_layer)
    return out


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(map(_number, v)) if isinstance(v, list) else _number(v)
            for k, v in values.items()}
