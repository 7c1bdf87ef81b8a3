"""``hpo fixed``: train the seed's fixed configuration and record it as a study of one trial.

The seed trained every architecture x cell x dataset once with fixed settings (slides,
"Experimental setup": Adam, learning rate 1e-3, x0.1 after half of the epochs; the model files of
``studies/fixed/<arch>.yaml``). :func:`run_fixed` does the same with :func:`hpo_vidpred.train.
train_and_evaluate` and stores the run in the study store as study ``fixed-{arch}-{data}-{cell}``:
one trial carrying the same attributes as study trials (value = best ``val_mse``, params = the
trained configuration, ``TrainResult.user_attrs()``, the intermediate ``val_mse`` per epoch), so
reports can set it beside optimized results. Its best weights go to
``models/fixed-{arch}-{data}-{cell}/trial-<n>.pt``.

Running it again with the same specs adds a trial (another seed, say); a study of that name made
with other specs (another budget, say) is refused with the differences named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from .. import archs, budgets
from .. import data as datasets
from ..checkpoint import checkpoint_path
from ..devices import resolve_device, seed_everything
from ..interrupts import deferred, interrupts, take_interrupt
from ..metrics import split_baselines
from ..specs import DataSpec, ModelSpec, TrainSpec, to_dict, to_record
from ..store import lifecycle, mask_url, normalize_url, open_storage
from ..store.lifecycle import set_user_attrs
from ..store.records import open_record, ratio_text, trivial_scores
from ..train import train_and_evaluate
from ..study.summary import eta_line

__all__ = ["FIXED_TRAIN", "HEARTBEAT_S", "FixedPlan", "plan_fixed", "open_fixed_store",
           "run_fixed", "train_fixed", "fixed_params", "format_summary"]

# The seed's optimizer settings (slides: Adam, lr 1e-3, StepLR x0.1 after epochs / 2).
FIXED_TRAIN = {"lr": 1e-3, "schedule": "step_half"}
# A fixed run's trial beats like a search trial (seconds), so that one whose process was killed
# is found stale and failed by the next run of its study (not re-queued: that run asks anew).
HEARTBEAT_S = 30


@dataclass(frozen=True)
class FixedPlan:
    """What one ``hpo fixed`` run trains: the budgeted specs and what the budget changed."""

    arch: str
    data_name: str
    cell: str
    budget: str
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    budget_changes: Mapping[str, Any]
    name: str = ""  # study name; "": fixed-{arch}-{data}-{cell} (hpo fixed --config sets one)

    @property
    def study_name(self) -> str:
        return self.name or f"fixed-{self.arch}-{self.data_name}-{self.cell}"

    def record(self) -> dict[str, Any]:
        """The study's spec, compared when the study exists (JSON-safe; no seed, device or data
        root, which may differ between repeats)."""
        return {"fixed": {"arch": self.arch, "data": self.data_name, "cell": self.cell,
                          "budget": self.budget},
                "data": to_record(self.data), "model": to_record(self.model),
                "train": to_record(self.train)}

    def open(self, storage: Any, create: bool) -> Optional[optuna.Study]:
        """The plan's study after the spec check (``create=False``: None if there is none)."""
        return open_record(storage, self.study_name, "fixed", self.record(),
                           budget=self.budget_changes, create=create,
                           pruner=optuna.pruners.NopPruner(),
                           fix="rerun with the original settings to add a trial, or record this "
                               "one in another store with --storage URL")


def plan_fixed(arch: str, data: str, cell: str, budget: str = "seed", *,
               data_dir: Optional[str] = None, seed: int = 0, device: str = "auto") -> FixedPlan:
    """Resolve names, the seed's configuration and the budget; nothing is loaded or trained.

    Every bad name is a one-line :class:`HpoError` listing the valid ones.
    """
    resolve_device(device)
    data_spec = datasets.default_spec(data, root=data_dir)
    model_spec = archs.fixed_spec(arch, data, cell, channels=data_spec.channels)
    train_spec = TrainSpec(**FIXED_TRAIN, seed=seed, device=device)
    # fixed_model: the seed's widths stay, so the parameter count is the seed's at every budget.
    before = (data_spec, model_spec, train_spec)
    after = budgets.apply(budget, *before, fixed_model=True)
    return FixedPlan(arch=arch, data_name=data, cell=cell, budget=budget, data=after[0],
                     model=after[1], train=after[2],
                     budget_changes=budgets.describe(budget, *before, fixed_model=True))


def fixed_params(model: ModelSpec, train: TrainSpec) -> dict[str, Any]:
    """The trained configuration under the names a search space uses (``lr``, ``batch_size``,
    ``cell``, the architecture's config keys; a per-layer list as ``name_1 .. name_d``)."""
    params: dict[str, Any] = {"cell": model.cell, "peephole": model.peephole, "lr": train.lr,
                              "batch_size": train.batch_size, "schedule": train.schedule}
    for key, value in model.config.items():
        if isinstance(value, (list, tuple)):
            params.update({f"{key}_{i}": v for i, v in enumerate(value, start=1)})
        else:
            params[key] = value
    return params


@interrupts()  # Ctrl-C and SIGTERM (a batch system's time limit): the trial is FAIL, not RUNNING
def run_fixed(plan: FixedPlan, storage: Optional[str] = None, *, progress: bool = True,
              log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Train ``plan`` and record it as one trial of study ``plan.study_name``.

    Returns the summary (what ``--json`` prints). A run that diverges or runs out of memory before
    any epoch validated is recorded as a FAIL trial with its reason, not raised.
    """
    url = normalize_url(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    store = open_fixed_store(url)
    plan.open(store, create=False)  # refuse another spec before loading anything
    data = datasets.load(plan.data, plan.train.device)  # missing data: an error, no empty study
    return train_fixed(plan, store, data, mask_url(url), progress=progress, log=log)


def open_fixed_store(url: str) -> Any:
    """The study store as fixed runs use it: trials beat (:data:`HEARTBEAT_S`), and a stale one
    is failed, not re-queued."""
    return open_storage(url, heartbeat_interval=HEARTBEAT_S, requeue=False)


def train_fixed(plan: FixedPlan, store: Any, data: Any, storage_label: str, *,
                progress: bool = True, log: Callable[[str], None] = lambda line: None
                ) -> dict[str, Any]:
    """:func:`run_fixed` on an open store with the plan's data loaded (``hpo compare`` trains
    its fixed retrains this way, with the store and data it has open)."""
    device = data.device
    study = plan.open(store, create=True)
    lifecycle.fail_stale(study, 4 * HEARTBEAT_S)  # a run of this study killed before: FAIL
    if "baselines" not in study.user_attrs:
        study.set_user_attr("baselines", split_baselines(data, "val", plan.train.val_batch_size))
    baselines = study.user_attrs["baselines"]
    seed_everything(plan.train.seed)  # the initial weights repeat too
    model = archs.create_model(plan.model)
    params = fixed_params(plan.model, plan.train)
    trial = beat = None
    told = False
    try:  # from the trial's first moment to its last: an interrupt anywhere leaves it FAIL
        with deferred():  # not between its creation and the clean-up below knowing it
            trial = lifecycle.ask(study, {k: CategoricalDistribution([v])
                                          for k, v in params.items()})
            beat = lifecycle.Heartbeat(study, trial, HEARTBEAT_S)
        set_user_attrs(trial, {"model_spec": to_dict(plan.model),
                               "train_spec": to_dict(plan.train)})
        path = checkpoint_path(plan.study_name, f"trial-{trial.number}")
        log(f"training {plan.study_name} trial {trial.number}: {archs.count_params(model):,} "
            f"parameters on {device}, budget {plan.budget} ({plan.train.epochs} epochs x "
            f"{plan.train.steps_per_epoch} steps, batch {plan.train.batch_size}, "
            f"{plan.data.height}x{plan.data.width}, {plan.data.n_in} -> {plan.data.n_out})")
        result = train_and_evaluate(
            model, data, plan.train, trial=trial, progress=progress, checkpoint_path=path,
            model_spec=plan.model, data_spec=plan.data,
            eta=lambda s: log(eta_line(s, plan.budget, str(device))))
        saved = result.best_state is not None
        set_user_attrs(trial, {**result.user_attrs(),
                               **({"checkpoint": str(path)} if saved else {})})
        if math.isfinite(result.best_val_mse):
            study.tell(trial, result.best_val_mse)
        else:
            trial.set_user_attr("fail_reason", f"{result.stop_reason} before any epoch validated")
            study.tell(trial, state=TrialState.FAIL)
        told = True
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or SIGTERM
            take_interrupt()
        if trial is not None and not told:
            trial.set_user_attr("fail_reason", "interrupted" if isinstance(
                exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
        raise
    finally:
        if beat is not None:
            beat.stop()
    return {
        "study": plan.study_name,
        "storage": storage_label,
        "trial": trial.number,
        "state": "COMPLETE" if math.isfinite(result.best_val_mse) else "FAIL",
        "params": params,
        "checkpoint": str(path) if saved else None,
        "budget": dict(plan.budget_changes),
        "baselines": {name: baselines[name]["mse"] for name in ("black", "copy_last",
                                                                 "mean_input")},
        "trivial": trivial_scores(baselines),
        **result.summary(),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines for a terminal."""
    lines = [f"study {summary['study']} ({summary['storage']}): trial {summary['trial']} "
             f"{summary['state']}, {summary['stop_reason']} after {summary['epochs']} epoch(s)"]
    if summary["best_val_mse"] is None:
        lines.append("no epoch validated")
    else:
        baselines = summary.get("trivial") or {k: {"mse": v}
                                               for k, v in summary["baselines"].items()}
        ratios = ratio_text(summary["best_val_mse"], baselines, summary.get("val_metrics"))
        lines.append(f"best val_mse {summary['best_val_mse']:.6g} {ratios} at epoch "
                     f"{summary['best_epoch']} (ssim {summary['val_ssim']:.4f}, psnr "
                     f"{summary['val_psnr']:.2f} dB)")
    step_ms = "-" if summary["step_ms"] is None else f"{summary['step_ms']:.1f}"
    lines.append(f"{summary['n_params']:,} parameters, {step_ms} ms/step on {summary['device']}, "
                 f"{summary['train_seconds']:.1f} s")
    if summary["checkpoint"]:
        lines.append(f"best weights: {summary['checkpoint']}")
    return "\n".join(lines)
