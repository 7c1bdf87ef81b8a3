"""``hpo compare``: the fixed-vs-optimized protocol (docs/design.md section 3 and "Comparison,
report, export, matrix").

For each recurrent cell, two configurations are retrained with seeds 0..k-1 at the full budget of
one level (every epoch; no pruning; early stopping only as the training spec configures it) and
evaluated once on the test split, which nothing else touches:

- ``fixed``: the seed's configuration. Its retrains *are* ``hpo fixed`` runs (study
  ``fixed-{arch}-{data}-{cell}``, one trial per seed); a run already there with the same spec and
  its checkpoint on disk is reused instead of trained again.
- ``optimized``: the best complete trial of the search study -- ``{arch}-{data}-{cell}`` when the
  cell was pinned, else the best trial with that cell of ``{arch}-{data}`` -- or the configuration
  of ``--config FILE`` (``hpo export``). At the search study's budget the trial's recorded specs
  are retrained as they are; at another ``--budget`` its sampled values are applied to that
  budget's specs.

Each retrain becomes one trial of study ``compare-{arch}-{data}``, added in one step once it is
done (so a killed run leaves nothing half-recorded and a rerun does only what is missing): value =
test MSE, user attributes ``role``, ``cell``, ``seed``, ``config_id``, ``test_<metric>`` and
``test_<metric>_per_step`` (:mod:`hpo_vidpred.metrics`), ``TrainResult.user_attrs()``, the specs,
the checkpoint, when it trained (``started``, ``finished``, ``host``: whether timings shared the
machine) and, for the first seed, the predicted frames of three test sequences that move
(``test_predictions``, for the report's strips). The study keeps the input and true frames of
those sequences (``test_sequences``) and the trivial predictors' metrics on the test split
(``baselines``).

"Fixed vs optimized" compares published defaults with a tuned configuration; it is not a fair
"A beats B" claim (the report labels it so).
"""

from __future__ import annotations

import datetime
import math
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .. import archs
from .. import data as datasets
from ..checkpoint import checkpoint_path, load_checkpoint
from ..devices import resolve_options, seed_everything
from ..errors import HpoError
from ..interrupts import interrupts
from ..metrics import split_baselines
from ..specs import METRICS, DataSpec, to_dict
from ..strip import moving_sequences
from ..store import mask_url, normalize_url
from ..store.records import (encode_frames, judge_metrics, open_record, ratio_text,
                             trivial_scores)
from ..train import evaluate, train_and_evaluate
from .compare_plan import ComparePlan, Retrain, compare_name, plan_compare
from .fixed import FixedPlan, open_fixed_store, train_fixed

__all__ = ["ROLES", "ComparePlan", "Retrain", "compare_name", "format_summary", "plan_compare",
           "run_compare", "summarize"]

ROLES = ("fixed", "optimized")


# --------------------------------------------------------------------------- running
@dataclass
class _Context:
    """What one ``hpo compare`` run keeps open: the study store, its label, the data, a log."""

    storage: Any
    label: str
    data: Any
    progress: bool
    log: Callable[[str], None]
    strip_index: tuple[int, ...] = ()  # the test sequences whose predictions are kept


@interrupts()  # Ctrl-C and SIGTERM (a time limit): a fixed retrain's trial is FAIL, not RUNNING
def run_compare(plan: ComparePlan, storage: Optional[str] = None, *, progress: bool = True,
                log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run every retrain of ``plan`` that the comparison study does not have yet; returns the
    summary (what ``--json`` prints)."""
    url = normalize_url(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_fixed_store(url)  # its fixed retrains are hpo fixed runs

    def study_of(create: bool) -> Optional[optuna.Study]:
        return open_record(storage, plan.study_name, "compare", plan.record(),
                           budget=plan.budget_changes, objective="test_mse", create=create,
                           fix="compare at the original budget or use another store with "
                               "--storage URL")

    study = study_of(create=False)  # another spec is refused before anything is loaded
    done = {_key(t) for t in study.get_trials(deepcopy=False) if _finished(t)} if study else set()
    todo = [r for r in plan.retrains if r.key not in done]
    log(f"{plan.study_name}: {len(plan.retrains) - len(todo)} of {len(plan.retrains)} retrains "
        f"already stored, {len(todo)} to run (budget {plan.budget}, cells "
        f"{', '.join(plan.cells)}, seeds {', '.join(map(str, plan.seeds))})")
    if todo or study is None or "baselines" not in study.user_attrs:
        data = datasets.load(plan.data, todo[0].train.device if todo else "auto")
        study = study or study_of(create=True)  # the data loaded: no empty study left behind
        if "test_sequences" not in study.user_attrs:
            study.set_user_attr("test_sequences", _strip_sequences(data))
        ctx = _Context(storage, mask_url(url), data, progress, log,
                       tuple(study.user_attrs["test_sequences"]["index"]))
        if "baselines" not in study.user_attrs:
            study.set_user_attr("baselines", split_baselines(data, "test",
                                                             plan.retrains[0].train.val_batch_size))
        for retrain in todo:
            trial = _retrain(plan, retrain, ctx)
            study.add_trial(trial)
            value = "failed" if trial.value is None else f"test mse {trial.value:.5g}"
            log(f"{plan.study_name}: {retrain.cell} {retrain.role} seed {retrain.seed}: {value}")
    summary = summarize(study, plan)
    summary.update(storage=mask_url(url), ran=len(todo), notes=list(plan.notes))
    return summary


def _key(trial: FrozenTrial) -> tuple:
    a = trial.user_attrs
    return a.get("role"), a.get("cell"), a.get("seed"), a.get("config_id")


def _finished(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL
                                                  and "fail_reason" in trial.user_attrs)


def _retrain(plan: ComparePlan, r: Retrain, ctx: _Context) -> FrozenTrial:
    """Train (or reuse) one retrain, test it once; the trial to add to the comparison study."""
    attrs: dict[str, Any] = {"role": r.role, "cell": r.cell, "seed": r.seed,
                             "config_id": r.config_id, "source": r.source,
                             "source_study": r.source_study,
                             "model_spec": to_dict(r.model), "train_spec": to_dict(r.train),
                             "host": socket.gethostname(), "started": _now()}
    if r.role == "fixed":
        fixed_trial, model = _fixed_run(r.fixed_plan, ctx)
        attrs.update({k: v for k, v in fixed_trial.user_attrs.items()
                      if k not in ("model_spec", "train_spec")})
        attrs["source_trial"] = f"{r.fixed_plan.study_name} trial {fixed_trial.number}"
        if fixed_trial.datetime_start and fixed_trial.datetime_complete:  # when it trained
            attrs["started"] = fixed_trial.datetime_start.isoformat()
            attrs["finished"] = fixed_trial.datetime_complete.isoformat()
            attrs["host"] = str(fixed_trial.user_attrs.get("worker", attrs["host"])
                                ).split(":")[0]
        curve = dict(fixed_trial.intermediate_values)
    else:
        ctx.log(f"{plan.study_name}: training {r.cell} optimized seed {r.seed} ({r.source})")
        seed_everything(r.seed)
        model = archs.create_model(r.model)
        path = checkpoint_path(plan.study_name, f"optimized-{r.cell}-{r.config_id}-seed{r.seed}")
        result = train_and_evaluate(model, ctx.data, r.train, progress=ctx.progress,
                                    checkpoint_path=path, model_spec=r.model,
                                    data_spec=plan.data)
        attrs.update(result.user_attrs(), finished=_now())
        curve = {i + 1: v for i, v in enumerate(result.curves["val_mse"]) if math.isfinite(v)}
        if result.best_epoch > 0:
            attrs.update(checkpoint=str(path), val_mse=result.best_val_mse)
        else:
            model = None
            attrs["fail_reason"] = f"{result.stop_reason} before any epoch validated"
    if model is None:
        attrs.setdefault("fail_reason", "the training run failed")
        return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs,
                                         intermediate_values=curve)
    options = resolve_options(r.train)
    model.to(options.device)
    metrics = evaluate(model, ctx.data, "test", r.train.val_batch_size, data_spec=plan.data,
                       options=options)
    for name in METRICS:
        attrs[f"test_{name}"] = float(metrics[name])
        attrs[f"test_{name}_per_step"] = [float(v) for v in metrics[f"{name}_per_step"]]
    if r.seed == plan.seeds[0]:
        attrs["test_predictions"] = encode_frames(_predict(model, ctx, plan.data))
    return optuna.trial.create_trial(state=TrialState.COMPLETE, value=attrs["test_mse"],
                                     user_attrs=attrs, intermediate_values=curve)


def _fixed_run(fixed: FixedPlan, ctx: _Context) -> tuple[FrozenTrial, Any]:
    """The ``hpo fixed`` trial of this plan's seed and its best weights (None if it failed):
    the newest stored one with the same spec whose checkpoint loads, else trained now
    (:func:`hpo_vidpred.workflows.fixed.train_fixed`). A damaged checkpoint is retrained, never
    reused."""
    study = fixed.open(ctx.storage, create=False)
    for t in sorted(study.get_trials(deepcopy=False) if study else (), key=lambda t: -t.number):
        if (t.user_attrs.get("train_spec") or {}).get("seed") != fixed.train.seed \
                or t.state != TrialState.COMPLETE or "checkpoint" not in t.user_attrs:
            continue
        try:
            model, _ = load_checkpoint(t.user_attrs["checkpoint"])
        except HpoError as exc:
            ctx.log(f"{fixed.study_name}: trial {t.number} not reused: {exc}")
            continue
        ctx.log(f"{fixed.study_name}: reusing trial {t.number} (seed {fixed.train.seed})")
        return t, model
    ctx.log(f"{fixed.study_name}: training seed {fixed.train.seed} (hpo fixed)")
    summary = train_fixed(fixed, ctx.storage, ctx.data, ctx.label, progress=ctx.progress)
    trial = fixed.open(ctx.storage, create=False).trials[summary["trial"]]
    model = load_checkpoint(summary["checkpoint"])[0] if summary["checkpoint"] else None
    return trial, model


def _now() -> str:
    return datetime.datetime.now().isoformat()


def _strip_sequences(data: Any) -> dict[str, Any]:
    """The test sequences the report's strips show: three that move (:func:`moving_sequences`),
    their indices and uint8 frames ``(3, T, C, H, W)``."""
    test = data.split("test")
    index = moving_sequences(test[:32].cpu().numpy())
    return {"index": index, "frames": encode_frames(test[index].cpu())}


@torch.no_grad()
def _predict(model: torch.nn.Module, ctx: _Context, spec: DataSpec) -> torch.Tensor:
    """Closed-loop predictions of the strip's test sequences as uint8 ``(S, n_out, C, H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    test = ctx.data.split("test")
    frames = test[list(ctx.strip_index)].to(device).float().div(255.0)  # (S, T, C, H, W)
    predicted = model(frames[:, :spec.n_in], spec.n_out).frames.float().clamp(0.0, 1.0)
    return predicted.mul(255.0).round().to(torch.uint8).cpu()  # (S, n_out, C, H, W)


# --------------------------------------------------------------------------- summary
def summarize(study: optuna.Study, plan: ComparePlan) -> dict[str, Any]:
    """Per cell and role: seeds, test MSE / SSIM mean and sample std of the plan's retrains."""
    wanted = {r.key for r in plan.retrains}
    baselines = study.user_attrs["baselines"]
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE and _key(t) in wanted]
    rows = []
    for cell in plan.cells:
        for role in ROLES:
            group = [t for t in trials if t.user_attrs["cell"] == cell
                     and t.user_attrs["role"] == role]
            mse = np.array([t.user_attrs["test_mse"] for t in group])
            ssim = np.array([t.user_attrs["test_ssim"] for t in group])
            mae = np.array([t.user_attrs.get("test_mae", math.nan) for t in group])
            verdict = judge_metrics({"mse": _mean_std(mse)[0], "mae": _mean_std(mae)[0],
                                     "ssim": _mean_std(ssim)[0]}, baselines)
            rows.append({"cell": cell, "role": role, "n": len(group),
                         "test_mse": _mean_std(mse), "test_mae": _mean_std(mae),
                         "test_ssim": _mean_std(ssim), "skill": verdict["skill"],
                         "learned": verdict["learned"], "ok": verdict["ok"],
                         "source": next((r.source for r in plan.retrains
                                         if (r.cell, r.role) == (cell, role)), "")})
    return {"study": plan.study_name, "budget": plan.budget, "seeds": list(plan.seeds),
            "rows": rows, "baselines": {k: baselines[k]["mse"] for k in
                                        ("black", "copy_last", "mean_input")},
            "trivial": trivial_scores(baselines)}


def _mean_std(values: np.ndarray) -> list[Optional[float]]:
    if not len(values):
        return [None, None]
    return [float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None]


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines for a terminal."""
    lines = [f"study {summary['study']} ({summary['storage']}), budget {summary['budget']}, "
             f"seeds {', '.join(map(str, summary['seeds']))}: {summary['ran']} retrain(s) run "
             "now; test split, published defaults vs tuned:"]
    baselines = summary.get("trivial") or {k: {"mse": v} for k, v in summary["baselines"].items()}
    lines.append("  trivial predictors: " + ", ".join(
        f"{k.replace('_', '-')} " + ", ".join(f"{m} {v[m]:.4g}" for m in ("mse", "mae", "ssim")
                                              if m in v) for k, v in baselines.items()))
    for row in summary["rows"]:
        mse, ssim = row["test_mse"], row["test_ssim"]
        mae = row.get("test_mae", [None])
        metrics = {"mae": mae[0], "ssim": ssim[0]}
        text = "-" if mse[0] is None else (
            f"mse {mse[0]:.5g}" + (f" +- {mse[1]:.2g}" if mse[1] is not None else "")
            + (f", mae {mae[0]:.4g}" if mae[0] is not None and math.isfinite(mae[0]) else "")
            + f", ssim {ssim[0]:.4f}"
            + f" {ratio_text(mse[0], baselines, metrics)}")
        lines.append(f"  {row['cell']:9s} {row['role']:9s} n={row['n']}  {text}  "
                     f"[{row['source']}]")
    lines += [f"note: {n}" for n in summary["notes"]]
    return "\n".join(lines)
