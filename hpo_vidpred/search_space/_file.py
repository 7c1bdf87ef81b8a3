"""Reading a search space: the YAML file (or a mapping) validated into a :class:`SearchSpace`,
each problem one line; and a recorded space (:meth:`SearchSpace.to_dict`, with a budget's bounds)
read back."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import HpoError
from ..specs import load_yaml
from ._space import MODEL_KEYS, TRAIN_KEYS, Param, SearchSpace

__all__ = ["from_record", "load_search_space"]

_TOP_KEYS = {"arch", "fixed", "params"}
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when", "per_layer"},
    "int": {"type", "low", "high", "log", "step", "when", "per_layer"},
    "categorical": {"type", "choices", "when", "per_layer"},
}
_SCALARS = (str, int, float, bool, type(None))
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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


def from_record(record: Mapping[str, Any]) -> SearchSpace:
    """A space as a study recorded it (:meth:`SearchSpace.to_dict` of the space it sampled,
    with a budget's width bounds), without the architecture's checks: what readers of a store
    (the learning-curve tables, the replay) sample again."""
    params, bounds = {}, {}
    for name, p in record["params"].items():
        p = dict(p)
        bounds[name] = (p.pop("cap", None), p.pop("doubling", ""))
        params[name] = p
    fixed = record.get("fixed") or {}
    space = load_search_space({"params": params, "fixed": fixed}, record.get("arch", ""),
                              set(params) | set(fixed))
    return dataclasses.replace(space, params=tuple(
        dataclasses.replace(p, cap=bounds[p.name][0], doubling=bounds[p.name][1])
        for p in space.params))
