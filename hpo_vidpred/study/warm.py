"""Warm starts (``hpo run --warm-start STUDY[,STUDY] --warm-top K``): the best configurations of
other studies -- another dataset, another budget, a cheaper first search -- run first in this one.

The top-K complete trials of each source (by its first objective) are mapped into this study's
search space and enqueued (Optuna's ``enqueue_trial``), so the sampler's first trials are known
good points instead of random ones. Mapping, one line per change: a value outside a range is
clipped into it (and snapped to the range's step), a categorical value the space lacks becomes the
nearest numeric choice or is left to the sampler, a parameter the space does not search is
dropped; per-layer values (``hidden_1 .. hidden_d``) map one by one. Each enqueued trial records
its source (user attribute ``warm_start``), and the study records what it was warm-started from
(``warm_start``), so a resumed study does not enqueue the same points again. Sources of another
architecture, or with no parameter in common, are refused with one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna

from ..errors import HpoError
from ..search_space import Param, SearchSpace
from ..store.records import best_trials, load_study, study_kind, trial_value

__all__ = ["map_params", "warm_start"]


def _into(p: Param, value: Any) -> tuple[Any, str]:
    """``value`` mapped into ``p``'s domain, and why it changed ("" if it did not; None: drop)."""
    if p.type == "categorical":
        if value in p.choices:
            return value, ""
        numbers = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            near = min(numbers, key=lambda c: abs(c - value))
            return near, f"nearest choice of {list(p.choices)}"
        return None, f"not a choice of {list(p.choices)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"not a number for [{p.low}, {p.high}]"
    mapped = min(max(value, p.low), p.high)
    if p.step:
        mapped = p.low + round((mapped - p.low) / p.step) * p.step
        mapped = min(mapped, p.high)
    mapped = int(round(mapped)) if p.type == "int" else float(mapped)
    if mapped == value:
        return mapped, ""
    return mapped, f"clipped into [{p.low}, {p.high}]" + (f" step {p.step}" if p.step else "")


def map_params(params: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any], list[str]]:
    """A source trial's sampled ``params`` in ``space``: the values to enqueue and one line per
    change."""
    out: dict[str, Any] = {}
    changes: list[str] = []
    for name, value in params.items():
        p = space.param_of(name)
        if p is None or (p.per_layer and name == p.name):  # one value where layers have one each
            where = "searched per layer here" if p is not None else "not searched here"
            changes.append(f"{name}={value} dropped ({where})")
            continue
        mapped, why = _into(p, value)
        if mapped is None:
            changes.append(f"{name}={value} dropped ({why}; the sampler chooses)")
        else:
            out[name] = mapped
            if why:
                changes.append(f"{name}: {value} -> {mapped} ({why})")
    return out, changes


def warm_start(study: optuna.Study, storage: Any, sources: Sequence[str], space: SearchSpace,
               arch: str, top: int, room: int) -> list[str]:
    """Enqueue the top-``top`` configurations of each source study in ``study``, at most
    ``room`` in all (the trials the study has left to run: ``--trials`` is never overshot), once
    (a study remembers its sources); returns the lines to show (what was enqueued and every
    change)."""
    done = set(study.user_attrs.get("warm_start", {}).get("sources", ()))
    lines: list[str] = []
    new = [s for s in sources if s not in done]
    names = set(optuna.get_all_study_names(storage)) - {study.study_name}
    for name in new:
        if name == study.study_name:
            raise HpoError(f"--warm-start {name}: that is this study, whose configurations ran "
                           "here already; warm-start from another study")
        if name not in names:
            raise HpoError(f"--warm-start {name}: no such study in this store (its studies: "
                           f"{', '.join(sorted(names)[:20]) or 'none'})")
        source = load_study(storage, name)
        attrs = source.user_attrs
        if study_kind(attrs) not in ("search", "fixed"):
            raise HpoError(f"--warm-start {name}: not a study of 'hpo run' or 'hpo fixed'; pick a "
                           "search study")
        source_arch = (attrs["spec"].get("study") or attrs["spec"].get("fixed") or {}).get("arch")
        if source_arch != arch:
            raise HpoError(f"--warm-start {name}: a study of {source_arch}, not {arch}; warm-start "
                           "from a study of the same architecture")
        trials = best_trials(source.get_trials(deepcopy=False), top)
        if not trials:
            raise HpoError(f"--warm-start {name}: no complete trial to start from")
        for t in trials:
            if room < 1:
                lines.append(f"warm start: study {name} trial {t.number} not enqueued (the study "
                             "has no trial left to run)")
                continue
            room -= 1
            params, changes = map_params(dict(t.params), space)
            if not params:
                raise HpoError(f"--warm-start {name}: its parameters ({', '.join(t.params)}) have "
                               "nothing in common with this search space")
            label = f"study {name} trial {t.number}"
            before = len(study.get_trials(deepcopy=False))
            study.enqueue_trial(params, user_attrs={"warm_start": label}, skip_if_exists=True)
            if len(study.get_trials(deepcopy=False)) == before:  # Optuna found it in the study
                room += 1
                lines.append(f"warm start: {label} (value {trial_value(t):.5g}) already tried "
                             "here, not enqueued")
                continue
            lines.append(f"warm start: {label} (value {trial_value(t):.5g}) enqueued"
                         + ("; " + "; ".join(changes) if changes else ""))
    if new:
        study.set_user_attr("warm_start", {"sources": sorted(done | set(new)), "top": top})
    return lines
