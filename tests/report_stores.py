"""Study stores built by hand for the report's tests (Optuna's API only, no training, no CLI), and
a reader of the report's Markdown tables."""

from __future__ import annotations

import copy
from typing import Any, Optional

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

SEARCH = "autoencoder-mmnist-convlstm"
COMPARE = "compare-autoencoder-mmnist"

# what `hpo run --arch autoencoder --data mmnist --cell convlstm --budget smoke` records as its
# spec (copied from tests/fixtures/store-0.1.0, so that no planning code runs)
SEARCH_SPEC: dict[str, Any] = {
    "study": {"arch": "autoencoder", "data": "mmnist", "cell": "convlstm", "budget": "smoke",
              "sampler": "tpe", "pruner": "hyperband"},
    "search_space": {"arch": "autoencoder", "fixed": {"cell": "convlstm"}, "params": {
        "lr": {"type": "float", "low": 0.0001, "high": 0.01, "log": True},
        "batch_size": {"type": "categorical", "choices": [4, 8, 16, 32]},
        "depth": {"type": "int", "low": 1, "high": 3},
        "hidden": {"type": "int", "low": 8, "high": 64, "log": True},
        "kernel": {"type": "int", "low": 3, "high": 7, "step": 2}}},
    "data": {"name": "mmnist", "height": 16, "width": 16, "channels": 1, "n_in": 2, "n_out": 2,
             "protocol": "default", "stride": 1, "eval_stride": 0, "train_size": 0,
             "val_size": 8, "test_size": 8, "seed": 0, "options": {}},
    "model": {"arch": "autoencoder", "cell": "convlstm", "channels": 1, "peephole": "conv",
              "config": {"depth": 2, "hidden": 4, "kernel": 3}},
    "train": {"lr": 0.001, "batch_size": 4, "epochs": 2, "steps_per_epoch": 3,
              "schedule": "step_half", "grad_clip": 0.0, "patience": 0, "min_delta": 0.0,
              "val_batch_size": 8, "teacher_forcing": "none", "tf_decay": 0.5,
              "frame_loss_weight": 1.0, "bf16": "auto", "channels_last": "auto",
              "compile": False},
}


def predictor(mse: float, n_out: int = 2) -> dict[str, Any]:
    """A trivial predictor's recorded metrics with MSE ``mse`` (the others derived from it)."""
    values = {"mse": mse, "mse_frame": mse * 256, "mae": mse * 3, "psnr": 10 + mse * 100,
              "ssim": 0.5 - mse}
    out: dict[str, Any] = {}
    for name, value in values.items():
        out[name] = value
        out[f"{name}_per_step"] = [value * 0.9, value * 1.1][:n_out]
    return out


def baselines(split: str, black: float, copy_last: float, mean_input: float) -> dict[str, Any]:
    """The ``baselines`` user attribute of a study."""
    return {"split": split, "black": predictor(black), "copy_last": predictor(copy_last),
            "mean_input": predictor(mean_input)}


def search_study(url: str, base: Optional[dict[str, Any]] = None) -> optuna.Study:
    """A search study: 2 complete trials (0.020 on CPU, 0.025 on a GPU), 1 pruned, 1 failed
    (diverged); ``base``: its validation baselines (None: a store of version 0.1)."""
    study = optuna.create_study(study_name=SEARCH, storage=url)
    study.set_user_attr("spec", copy.deepcopy(SEARCH_SPEC))
    if base is not None:
        study.set_user_attr("kind", "search")
        study.set_user_attr("baselines", base)
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "batch_size": CategoricalDistribution([4, 8, 16, 32]),
             "depth": IntDistribution(1, 3), "hidden": IntDistribution(8, 64, log=True),
             "kernel": IntDistribution(3, 7, step=2)}
    model = {"arch": "autoencoder", "cell": "convlstm", "channels": 1, "peephole": "conv",
             "config": {"depth": 2, "hidden": 4, "kernel": 3}}
    rows = [  # state, value, lr, seconds, device, extra attrs
        (TrialState.COMPLETE, 0.020, 0.0098, 360.0, "cpu", {}),
        (TrialState.COMPLETE, 0.025, 0.001, 720.0, "cuda:0", {}),
        (TrialState.PRUNED, None, 0.0002, 36.0, "cpu", {}),
        (TrialState.FAIL, None, 0.009, 18.0, "cpu",
         {"stop_reason": "diverged", "fail_reason": "diverged: non-finite loss in epoch 1"}),
    ]
    for state, value, lr, seconds, device, extra in rows:
        study.add_trial(create_trial(
            state=state, value=value, distributions=dists,
            params={"lr": lr, "batch_size": 8, "depth": 2, "hidden": 16, "kernel": 5},
            user_attrs={"model_spec": model, "train_spec": {"lr": lr, "seed": 0},
                        "train_seconds": seconds, "device": device, "n_params": 1234, **extra}))
    return study


def compare_study(url: str, values: dict[tuple[str, str], list[float]],
                  base: Optional[dict[str, Any]] = None) -> optuna.Study:
    """A comparison study with one retrain per (cell, role) and seed (its test MSE from
    ``values``; the other metrics derived from it); ``base``: its test baselines."""
    study = optuna.create_study(study_name=COMPARE, storage=url)
    study.set_user_attr("kind", "compare")
    study.set_user_attr("spec", {"compare": {"arch": "autoencoder", "data": "mmnist",
                                             "budget": "smoke"},
                                 "data": {"name": "mmnist", "n_in": 2, "n_out": 2}})
    study.set_user_attr("budget", {"budget": "smoke", "changes": ["data.height: 64 -> 16"]})
    if base is not None:
        study.set_user_attr("baselines", base)
    for (cell, role), mses in values.items():
        for seed, mse in enumerate(mses):
            metrics = {f"test_{m}": mse * k for m, k in (("mse", 1), ("mse_frame", 256),
                                                         ("mae", 3), ("psnr", 1000),
                                                         ("ssim", 10))}
            source = SEARCH if role == "optimized" else f"fixed-autoencoder-mmnist-{cell}"
            attrs = {"role": role, "cell": cell, "seed": seed, "config_id": role,
                     "n_params": 100 if role == "fixed" else 50, "step_ms": 10.0,
                     "train_seconds": 1.0, "device": "cpu", "source_study": source,
                     "source": f"{role} configuration ({source})", **metrics,
                     **{f"{k}_per_step": [v * 0.9, v * 1.1] for k, v in metrics.items()}}
            study.add_trial(create_trial(value=mse, user_attrs=attrs))
    return study


def table(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``## <title>...`` as dicts keyed by its header."""
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, *body = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    assert all(len(row) == len(header) for row in body), (header, body)
    return [dict(zip(header, row, strict=True)) for row in body]
