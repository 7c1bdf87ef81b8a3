"""The report's plotly figures per study and comparison (the PNG strips: :mod:`.strips`).

Every figure uses only scatter and bar traces, so the pages work with plotly.js's small "basic"
bundle (see :mod:`hpo_vidpred.report.render`); parallel coordinates are drawn as lines over
normalised axes instead of plotly's WebGL ``parcoords`` trace, which also renders without a GPU.
Every figure that shows validation or test MSE draws the trivial predictors the study recorded,
each in its own line style (:data:`TRIVIAL_STYLE`) with a legend entry; a predictor far from the
trials is left off the axis (named in the legend) rather than squeezing them into a corner.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.colors import sample_colorscale

from ..search_space import param_base
from ..store.records import TRIVIAL, trained_params, trial_cell
from .collect import CompareStudy, SearchStudy, rank, role_groups
from .studies import held_back

_CELL_COLORS = {"convlstm": "#1f77b4", "stlstm": "#d62728"}

__all__ = ["study_figures", "steps_figure", "parallel_figure", "fronts_figure", "front_groups",
           "history_figure", "curves_figure", "TRIVIAL_STYLE"]

_LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=30, t=50, b=50))
_ROLE_NAMES = {"fixed": "fixed", "optimized": "tuned"}


def _quiet(make, *args: Any, **kwargs: Any) -> Optional[go.Figure]:
    """Run an optuna plot function without its warnings and log lines; None when it fails (too
    few trials, no intermediate values)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make(*args, **kwargs)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError):
        return None
    finally:
        optuna.logging.set_verbosity(level)


TRIVIAL_STYLE = {  # one look per trivial predictor, the same in every figure
    "black": dict(color="#111111", dash="dot", width=1.5),
    "copy_last": dict(color="#8c564b", dash="dash", width=1.5),
    "mean_input": dict(color="#9467bd", dash="dashdot", width=1.5),
}


def study_figures(s: SearchStudy) -> tuple[list[tuple[str, go.Figure]], list[str]]:
    """(title, figure) for one search study -- optimization history (pruned trials at their last
    validation MSE), Pareto front, hyperparameter importance (PED-ANOVA, Optuna 5's default),
    parallel coordinates, learning curves -- and a line for each figure held back because the
    data cannot support it (too few complete trials)."""
    from optuna import visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    complete = [t for t in s.trials if t.state == TrialState.COMPLETE]
    goals = s.objectives
    target = {} if len(goals) == 1 else {"target": lambda t: t.values[0]}  # the first objective
    notes: list[str] = []
    out: list[tuple[str, Optional[go.Figure]]] = [("optimization history", history_figure(s))]
    if len(goals) == 2 and complete:  # ours: the trivial predictors, no colour bars
        out.append((f"Pareto front of {', '.join(goals)}", fronts_figure([s])))
    elif len(goals) == 3 and complete:
        out.append((f"Pareto front of {', '.join(goals)}",
                    _quiet(vis.plot_pareto_front, s.study, target_names=list(goals))))
    if s.spec["search_space"]["params"]:
        hold = held_back(s, "hyperparameter importance")
        if hold:
            notes.append(hold)
        else:
            out.append(("hyperparameter importance (PED-ANOVA)", _quiet(
                vis.plot_param_importances, s.study, evaluator=PedAnovaImportanceEvaluator(),
                target_name=goals[0], **target)))
    if len(complete) >= 2:
        out.append(("parallel coordinates", parallel_figure(s)))
    else:
        notes.append(f"parallel coordinates held back: {len(complete)} complete trial(s); "
                     "they need two to draw a line between")
    out.append(("learning curves (val_mse per epoch)", curves_figure(s)))
    figures = []
    for title, fig in out:
        if fig is not None:
            fig.update_layout(**_LAYOUT, title=f"{s.name}: {title}")
            figures.append((title, fig))
    return figures, notes


def _padded(values: Sequence[float]) -> tuple[float, float]:
    """An axis range around ``values`` with 8% to spare; one value (or several equal ones) gets a
    range of +-10% around it, never one that straddles zero for a positive quantity."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi > lo else (abs(hi) * 0.1 or 1e-3)
    low = lo - pad
    return (max(low, lo / 2) if lo > 0 else low), hi + pad


def _add_trivial(fig: go.Figure, baselines: Optional[Mapping[str, Any]], values: Sequence[float],
                 span: tuple[float, float], vertical: bool = False) -> tuple[float, float]:
    """Each trivial predictor's MSE as a line across ``span`` (of the other axis) with its own
    style and legend entry, where it lies near ``values``; the range of the value axis that
    shows the values and those lines. Predictors far off (beyond twice the values' spread) are
    named in the legend instead, so that they do not squeeze the trials into a corner."""
    lo, hi = _padded(values)
    reach = max(hi - lo, abs(hi) * 0.2) * 2
    shown = list(values)
    for name, label in TRIVIAL.items():
        mse = ((baselines or {}).get(name) or {}).get("mse")
        if mse is None:
            continue
        near = lo - reach <= mse <= hi + reach
        line = dict(x=[mse, mse], y=list(span)) if vertical else dict(x=list(span), y=[mse, mse])
        fig.add_trace(go.Scatter(
            **line, mode="lines", line=TRIVIAL_STYLE[name], hoverinfo="name",
            name=f"{label} (trivial) {mse:.3g}" + ("" if near else ", off the axis"),
            visible=True if near else "legendonly"))
        shown += [mse] if near else []
    return _padded(shown)


def _trial_curve(t: Any) -> list[tuple[int, float]]:
    """(epoch, val_mse) of a trial: its reported values, else the curve it kept
    (``val_mse_curve`` of multi-objective studies, ``curves`` of newer stores)."""
    if t.intermediate_values:
        return sorted((int(k), float(v)) for k, v in t.intermediate_values.items()
                      if v is not None and math.isfinite(v))
    curve = t.user_attrs.get("val_mse_curve") or (t.user_attrs.get("curves") or {}).get(
        "val_mse") or []
    return [(i + 1, float(v)) for i, v in enumerate(curve) if v is not None and math.isfinite(v)]


def history_figure(s: SearchStudy) -> Optional[go.Figure]:
    """The first objective of every finished trial by trial number: complete trials, pruned
    trials at the last validation MSE they reported, the best so far, the trivial predictors;
    failed trials named in the title. Axes fit the data (one trial: +-10% around it)."""
    goal = s.objectives[0]
    sign = -1 if s.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    complete = sorted((t for t in s.trials if t.state == TrialState.COMPLETE and t.values),
                      key=lambda t: t.number)
    pruned = [(t.number, _trial_curve(t)[-1][1]) for t in s.trials
              if t.state == TrialState.PRUNED and _trial_curve(t)]
    failed = [t.number for t in s.trials if t.state == TrialState.FAIL]
    if not complete and not pruned:
        return None
    fig = go.Figure()
    values = [t.values[0] for t in complete]
    numbers = [t.number for t in complete]
    fig.add_trace(go.Scatter(x=numbers, y=values, mode="markers", name=f"complete ({len(values)})",
                             marker=dict(color="#1f77b4", size=8)))
    if pruned:
        fig.add_trace(go.Scatter(
            x=[n for n, _ in pruned], y=[v for _, v in pruned], mode="markers",
            name=f"pruned ({len(pruned)}): last val_mse",
            marker=dict(color="#999", size=8, symbol="circle-open", line=dict(width=2))))
    if values:
        best = list(np.minimum.accumulate(np.array(values) * sign) * sign)
        fig.add_trace(go.Scatter(x=numbers, y=best, mode="lines", name="best so far",
                                 line=dict(color="#d62728", shape="hv", width=2)))
    every = values + [v for _, v in pruned]
    last = max(t.number for t in s.trials) if s.trials else 0
    span = (-0.5, last + 0.5)
    y_range = (_add_trivial(fig, s.baselines, every, span) if goal == "val_mse"
               else _padded(every))
    title = f" (failed, no value: trial{'s' if len(failed) > 1 else ''} " + ", ".join(
        map(str, failed[:10])) + ")" if failed else ""
    fig.update_layout(title=f"{s.name}: optimization history{title}", xaxis_title="trial",
                      yaxis_title=goal, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(range=list(span), dtick=max(1, round(last / 10)))
    fig.update_yaxes(range=list(y_range))
    return fig


def curves_figure(s: SearchStudy) -> Optional[go.Figure]:
    """Validation MSE per epoch of every trial with a curve: complete trials blue, pruned ones
    grey and dotted, the best trial red; the trivial predictors as lines of their own styles."""
    curves = [(t, _trial_curve(t)) for t in s.trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    curves = [(t, c) for t, c in curves if c]
    if not curves:
        return None
    front = s.front()
    best = front[0].number if front else None
    fig = go.Figure()
    shown: set[str] = set()
    for t, curve in sorted(curves, key=lambda tc: tc[0].number == best):
        group = ("best" if t.number == best else
                 "complete" if t.state == TrialState.COMPLETE else "pruned")
        style = {"best": dict(color="#d62728", width=3),
                 "complete": dict(color="rgba(31,119,180,0.55)", width=1.5),
                 "pruned": dict(color="rgba(120,120,120,0.6)", width=1, dash="dot")}[group]
        count = sum(1 for u, _ in curves if u.state == t.state and u.number != best)
        name = {"best": f"best: trial {best}", "complete": f"complete ({count})",
                "pruned": f"pruned ({count})"}[group]
        fig.add_trace(go.Scatter(
            x=[e for e, _ in curve], y=[v for _, v in curve], mode="lines+markers",
            line=style, marker=dict(size=4, color=style["color"]), name=name, legendgroup=group,
            showlegend=group not in shown, hovertemplate=f"trial {t.number}<br>epoch %{{x}}: "
                                                         "%{y:.5g}<extra></extra>"))
        shown.add(group)
    epochs = [e for _, c in curves for e, _ in c]
    span = (min(epochs) - 0.2, max(epochs) + 0.2)
    y_range = _add_trivial(fig, s.baselines, [v for _, c in curves for _, v in c], span)
    fig.update_layout(xaxis_title="epoch", yaxis_title="val_mse",
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(range=list(span), dtick=1)
    fig.update_yaxes(range=list(y_range))
    return fig


def _axis_position(value: Any, p: Mapping[str, Any]) -> Optional[float]:
    """Where ``value`` lies on its search-space axis, 0 (low / first choice) to 1."""
    if value is None:
        return None
    if p["type"] == "categorical":
        choices = list(p["choices"])
        return choices.index(value) / max(1, len(choices) - 1) if value in choices else None
    low, high = float(p["low"]), float(p["high"])
    if p.get("log"):
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (float(value) - low) / (high - low) if high > low else 0.5


def parallel_figure(s: SearchStudy) -> Optional[go.Figure]:
    """Parallel coordinates of the complete trials: one line per trial over the searched
    hyperparameters (search-space ranges, log where searched log) and val_mse, coloured by
    val_mse (darker = lower)."""
    space = s.spec["search_space"]["params"]
    complete = sorted((t for t in s.trials if t.state == TrialState.COMPLETE and t.values),
                      key=lambda t: -t.values[0])
    if not complete:
        return None
    names = [k for k in dict.fromkeys(k for t in complete for k in t.params)]
    def param(k: str) -> Any:  # the recorded search space's entry of a sampled name
        return space.get(k, space.get(param_base(k)))

    names.sort(key=lambda k: list(space).index(k if k in space else param_base(k))
               if param(k) else len(space))
    values = np.array([t.values[0] for t in complete])
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.full(len(values), 0.5)
    colors = sample_colorscale("Viridis", list(scaled))
    fig = go.Figure()
    axes = names + [s.objectives[0]]
    for t, color, y_obj in zip(complete, colors, scaled, strict=True):
        trained = trained_params(t)
        ys = [_axis_position(trained.get(k), param(k)) if param(k) else None for k in names]
        params = "<br>".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in trained.items())
        fig.add_trace(go.Scatter(
            x=axes, y=ys + [float(y_obj)], mode="lines+markers", line=dict(color=color, width=2),
            marker=dict(size=5, color=color), name=f"trial {t.number}", showlegend=False,
            hovertemplate=f"trial {t.number}<br>{s.objectives[0]} {t.values[0]:.5g}<br>{params}"
                          "<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=["val_mse"] * len(values), y=list(scaled), mode="markers", showlegend=False,
        marker=dict(color=values, colorscale="Viridis", showscale=True, size=6,
                    cmin=lo if hi > lo else lo * 0.9, cmax=hi if hi > lo else hi * 1.1,
                    colorbar=dict(title=s.objectives[0])), hoverinfo="skip"))
    for k in axes:
        p = param(k) if k != axes[-1] else None
        low, high = (f"{lo:.3g}", f"{hi:.3g}") if p is None else (
            (str(p["choices"][0]), str(p["choices"][-1])) if p["type"] == "categorical"
            else (f"{p['low']:.3g}", f"{p['high']:.3g}"))
        fig.add_annotation(x=k, y=-0.08, text=low, showarrow=False, font=dict(size=10))
        fig.add_annotation(x=k, y=1.08, text=high, showarrow=False, font=dict(size=10))
    fig.update_yaxes(range=[-0.15, 1.15], showticklabels=False, title="position in range")
    return fig


def front_groups(studies: list[SearchStudy]) -> dict[tuple, list[SearchStudy]]:
    """The multi-objective search studies by (data, arch, budget, objectives): the studies whose
    fronts share one figure (one study per cell, or one that sampled the cell)."""
    groups: dict[tuple, list[SearchStudy]] = {}
    for s in studies:
        if len(s.objectives) == 2:
            key = (s.field("data"), s.field("arch"), s.field("budget"), s.objectives)
            groups.setdefault(key, []).append(s)
    return groups


def _non_dominated(points: list[tuple[float, float, Any]], signs: tuple[int, int]
                   ) -> list[tuple[float, float, Any]]:
    """The points no other point beats in both (``signs``: +1 minimise, -1 maximise)."""
    def beats(a: tuple, b: tuple) -> bool:
        better = [sa * ga <= sa * gb for sa, ga, gb in zip(signs, a[:2], b[:2], strict=True)]
        return all(better) and a[:2] != b[:2]

    return sorted((p for p in points if not any(beats(q, p) for q in points)),
                  key=lambda p: p[0])


def fronts_figure(studies: list[SearchStudy]) -> Optional[go.Figure]:
    """Quality against cost per cell (the seed's second question): every complete trial faint,
    each cell's Pareto front as a line (non-dominated among that cell's trials, so a study that
    sampled the cell shows both), the trivial predictors as lines of their own styles when the
    first objective is ``val_mse``."""
    goals = studies[0].objectives
    signs = tuple(-1 if d == optuna.study.StudyDirection.MAXIMIZE else 1
                  for d in studies[0].study.directions)
    per_cell: dict[str, list[tuple[float, float, Any]]] = {}
    for s in studies:
        for t in s.trials:
            if t.state == TrialState.COMPLETE and t.values and len(t.values) == 2:
                per_cell.setdefault(trial_cell(t) or "?", []).append((*t.values, t))
    if not per_cell:
        return None
    fig = go.Figure()
    for cell in sorted(per_cell, key=lambda c: rank(cell=c)):
        points, color = per_cell[cell], _CELL_COLORS.get(cell, "#555")
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="markers", opacity=0.35,
            marker=dict(color=color, size=6), name=f"{cell}: all trials ({len(points)})",
            text=[f"trial {p[2].number}" for p in points]))
        front = _non_dominated(points, signs)
        fig.add_trace(go.Scatter(
            x=[p[0] for p in front], y=[p[1] for p in front], mode="lines+markers",
            line=dict(color=color, width=2, shape="hv"), marker=dict(color=color, size=9),
            name=f"{cell}: front ({len(front)})",
            text=[f"trial {p[2].number}: " + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in trained_params(p[2]).items()) for p in front]))
    x_values = [p[0] for points in per_cell.values() for p in points]
    y_values = [p[1] for points in per_cell.values() for p in points]
    y_range = _padded(y_values)
    x_range = (_add_trivial(fig, studies[0].baselines, x_values, y_range, vertical=True)
               if goals[0] == "val_mse" else _padded(x_values))
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    s0 = studies[0]
    fig.update_layout(**_LAYOUT, title=f"{s0.field('data')} / {s0.field('arch')} "
                      f"({s0.field('budget')}): {goals[1]} against {goals[0]} per cell",
                      xaxis_title=goals[0], yaxis_title=goals[1])
    return fig


def steps_figure(c: CompareStudy) -> Optional[go.Figure]:
    """Test MSE per future step, fixed vs tuned per cell: mean over seeds, error bars one
    standard deviation; the trivial predictors dotted."""
    groups = role_groups(c)
    if not groups:
        return None
    fig = go.Figure()
    for (cell, role), trials in sorted(groups.items()):
        steps = np.array([t.user_attrs["test_mse_per_step"] for t in trials])  # (seeds, n_out)
        std = steps.std(axis=0, ddof=1) if len(steps) > 1 else None
        fig.add_trace(go.Scatter(
            x=list(range(1, steps.shape[1] + 1)), y=list(steps.mean(axis=0)),
            error_y=dict(type="data", array=list(std), visible=True) if std is not None else None,
            mode="lines+markers", name=f"{cell} {_ROLE_NAMES[role]} (n={len(trials)})",
            line=dict(dash="dash" if role == "fixed" else "solid")))
    for name, label in TRIVIAL.items():
        steps = ((c.baselines or {}).get(name) or {}).get("mse_per_step")
        if steps:
            fig.add_trace(go.Scatter(x=list(range(1, len(steps) + 1)), y=list(steps),
                                     mode="lines", name=f"{label} (trivial)",
                                     line=TRIVIAL_STYLE[name]))
    fig.update_layout(**_LAYOUT, title=f"{c.field('data')} / {c.field('arch')}: test MSE per "
                      "future step (published defaults vs tuned)",
                      xaxis_title="future step", yaxis_title="MSE per pixel")
    fig.update_xaxes(dtick=1)
    return fig
