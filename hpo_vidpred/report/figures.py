"""The report's figures: plotly figures per study and comparison, PNG prediction strips.

Every figure uses only scatter and bar traces, so the pages work with plotly.js's small "basic"
bundle (see :mod:`hpo_vidpred.report.render`); parallel coordinates are drawn as lines over
normalised axes instead of plotly's WebGL ``parcoords`` trace, which also renders without a GPU.
The MSE-per-step figure draws the trivial predictors the study recorded as dotted lines; the strip
adds copy-last (the last input frame repeated) above the models' predictions.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Optional

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from PIL import Image
from plotly.colors import sample_colorscale

from ..search_space import param_base
from ..store.records import TRIVIAL, decode_frames, trained_params, trial_cell
from ..strip import frame_rows
from .collect import CompareStudy, SearchStudy, rank, role_groups

_CELL_COLORS = {"convlstm": "#1f77b4", "stlstm": "#d62728"}

__all__ = ["study_figures", "steps_figure", "prediction_strip_image", "parallel_figure",
           "fronts_figure", "front_groups"]

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


def study_figures(s: SearchStudy) -> list[tuple[str, go.Figure]]:
    """(title, figure) for one search study: optimization history, hyperparameter importance
    (PED-ANOVA, Optuna 5's default), parallel coordinates, intermediate values."""
    from optuna import visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    complete = [t for t in s.trials if t.state == TrialState.COMPLETE]
    goals = s.objectives
    target = {} if len(goals) == 1 else {"target": lambda t: t.values[0]}  # the first objective
    out: list[tuple[str, Optional[go.Figure]]] = [
        ("optimization history", _quiet(vis.plot_optimization_history, s.study,
                                        target_name=goals[0], **target))]
    if len(goals) in (2, 3) and complete:
        out.append((f"Pareto front of {', '.join(goals)}",
                    _quiet(vis.plot_pareto_front, s.study, target_names=list(goals))))
    if len(complete) >= 2 and s.spec["search_space"]["params"]:
        out.append(("hyperparameter importance (PED-ANOVA)", _quiet(
            vis.plot_param_importances, s.study, evaluator=PedAnovaImportanceEvaluator(),
            target_name=goals[0], **target)))
    out.append(("parallel coordinates", parallel_figure(s)))
    if any(t.intermediate_values for t in s.trials):
        out.append(("intermediate values (val_mse per epoch)",
                    _quiet(vis.plot_intermediate_values, s.study)))
    figures = []
    for title, fig in out:
        if fig is not None:
            fig.update_layout(**_LAYOUT, title=f"{s.name}: {title}")
            figures.append((title, fig))
    return figures


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
                    colorbar=dict(title="val_mse")), hoverinfo="skip"))
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
    sampled the cell shows both), the trivial predictors as dotted lines when the first
    objective is ``val_mse``."""
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
    if goals[0] == "val_mse":
        for name, label in TRIVIAL.items():
            mse = ((studies[0].baselines or {}).get(name) or {}).get("mse")
            if mse is not None:
                fig.add_vline(x=mse, line=dict(dash="dot", color="#999", width=1),
                              annotation_text=f"{label} {mse:.3g}",
                              annotation_position="top left")
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
                                     line=dict(dash="dot", color="#999", width=1)))
    fig.update_layout(**_LAYOUT, title=f"{c.field('data')} / {c.field('arch')}: test MSE per "
                      "future step (published defaults vs tuned)",
                      xaxis_title="future step", yaxis_title="MSE per pixel")
    fig.update_xaxes(dtick=1)
    return fig


def prediction_strip_image(c: CompareStudy, n_in: int) -> Optional[Image.Image]:
    """Test sequence 0: input | truth | copy-last | fixed | tuned prediction for each cell (first
    seed); copy-last is the last input frame repeated, the trivial predictor to beat."""
    if "test_frames" not in c.attrs:
        return None
    frames = decode_frames(c.attrs["test_frames"])  # (T, C, H, W) float32 in [0, 1]
    truth = frames[n_in:]
    rows: list[tuple[str, Any]] = [("input", frames[:n_in]), ("truth", truth)]
    predictions = sorted(groups_with_predictions(c).items(),
                         key=lambda kv: (rank(cell=kv[0][0]), kv[0][0], kv[0][1] != "fixed"))
    if predictions and n_in > 0 and len(truth):
        rows.append(("copy-last", np.repeat(frames[n_in - 1:n_in], len(truth), axis=0)))
    for (cell, role), encoded in predictions:
        rows.append((f"{cell}\n{_ROLE_NAMES[role]}", decode_frames(encoded)))
    return frame_rows(rows) if predictions else None


def groups_with_predictions(c: CompareStudy) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(cell, role) -> the stored test prediction of the lowest seed that has one."""
    out = {}
    for key, trials in role_groups(c).items():
        withp = [t for t in trials if "test_prediction" in t.user_attrs]
        if withp:
            out[key] = withp[0].user_attrs["test_prediction"]
    return out
