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
                  base: Optional[dict[str, Any]] = None,
                  metrics: Optional[dict[tuple[str, str], dict[str, float]]] = None,
                  name: str = COMPARE, arch: str = "autoencoder",
                  started: Optional[str] = None) -> optuna.Study:
    """A comparison study with one retrain per (cell, role) and seed (its test MSE from
    ``values``; the other metrics derived from it: MAE 1.5 x MSE, SSIM 0.9 - MSE, unless
    ``metrics`` sets them per (cell, role)); ``base``: its test baselines; ``started``: when
    every retrain trained (an ISO time; for an hour), else not recorded (older stores)."""
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("kind", "compare")
    study.set_user_attr("spec", {"compare": {"arch": arch, "data": "mmnist",
                                             "budget": "smoke"},
                                 "data": {"name": "mmnist", "n_in": 2, "n_out": 2}})
    study.set_user_attr("budget", {"budget": "smoke", "changes": ["data.height: 64 -> 16"]})
    if base is not None:
        study.set_user_attr("baselines", base)
    for (cell, role), mses in values.items():
        for seed, mse in enumerate(mses):
            derived = {"mse": mse, "mse_frame": mse * 256, "mae": mse * 1.5, "psnr": 1000 * mse,
                       "ssim": 0.9 - mse, **(metrics or {}).get((cell, role), {})}
            scores = {f"test_{m}": v for m, v in derived.items()}
            source = SEARCH if role == "optimized" else f"fixed-{arch}-mmnist-{cell}"
            attrs = {"role": role, "cell": cell, "seed": seed, "config_id": role,
                     "n_params": 100 if role == "fixed" else 50, "step_ms": 10.0,
                     "train_seconds": 1.0, "device": "cpu", "source_study": source,
                     "source": f"{role} configuration ({source})", **scores,
                     **{f"{k}_per_step": [v * 0.9, v * 1.1] for k, v in scores.items()}}
            if started:
                attrs.update(started=started, finished=started.replace("T00", "T01"),
                             host="here")
            study.add_trial(create_trial(value=mse, user_attrs=attrs))
    return study


def table(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``## <title>...`` as dicts keyed by its header."""
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, *body = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    assert all(len(row) == len(header) for row in body), (header, body)
    return [dict(zip(header, row, strict=True)) for row in body]


def grown_search(url: str, name: str, complete: int, base: Optional[dict[str, Any]], *,
                 arch: str = "autoencoder", cell: str = "convlstm",
                 objectives: tuple[str, ...] = ("val_mse",), pruned: int = 1) -> optuna.Study:
    """A search study of ``complete`` complete trials and ``pruned`` pruned ones, as a newer
    ``hpo run`` records them (curves with MAE, SSIM, the trained specs): trial 0 is the best
    (val_mse 0.010) with lr 0.0098 at the edge of its range and ``hidden`` sampled 20 but
    trained 16; the others 0.011, 0.012, ... in the middle of every range. Several
    ``objectives``: a multi-objective study (val_mse, ms_per_step), curves as
    ``val_mse_curve``."""
    spec = copy.deepcopy(SEARCH_SPEC)
    spec["study"].update(arch=arch, cell=cell, objectives=list(objectives))
    spec["model"]["arch"] = arch
    study = optuna.create_study(study_name=name, storage=url,
                                directions=["minimize"] * len(objectives))
    budget = {"budget": "smoke", "summary": "seconds on a CPU, for tests",
              "changes": ["data.height: 64 -> 16"]}
    for key, value in {"spec": spec, "kind": "search", "objective": ",".join(objectives),
                       "budget": budget,
                       **({"baselines": base} if base is not None else {})}.items():
        study.set_user_attr(key, value)
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "hidden": IntDistribution(8, 64, log=True), "depth": IntDistribution(1, 3)}
    for i in range(complete + pruned):
        done = i < complete
        mse = 0.010 + 0.001 * i if done else 0.03
        params = {"lr": 0.0098 if i == 0 else 0.001 * (1 + i % 3), "hidden": 20 if i == 0 else 24,
                  "depth": 2}
        model = {"arch": arch, "cell": cell, "channels": 1, "peephole": "none",
                 "config": {"depth": 2, "hidden": 16 if i == 0 else 24, "kernel": 3}}
        curve = [mse * 1.3, mse] if done else [mse]
        attrs = {"model_spec": model, "train_spec": {"lr": params["lr"], "seed": i},
                 "val_mse": mse, "val_ssim": 0.8, "val_psnr": 20.0, "best_epoch": len(curve),
                 "curves": {"val_mse": curve, "val_mae": [v * 1.5 for v in curve]},
                 "n_params": 5000 + i, "step_ms": 5.0 + i, "train_seconds": 36.0,
                 "device": "cpu", "worker": "here:1"}
        multi = len(objectives) > 1
        if multi:
            attrs["val_mse_curve"] = curve
        study.add_trial(create_trial(
            state=TrialState.COMPLETE if done else TrialState.PRUNED,
            values=([mse, 5.0 + i] if multi else [mse]) if done else None,
            params=params, distributions=dists, user_attrs=attrs,
            intermediate_values={} if multi else dict(enumerate(curve, 1))))
    return study


def fixed_study(url: str, cell: str = "convlstm", arch: str = "autoencoder") -> optuna.Study:
    """A study of ``hpo fixed``: one complete trial."""
    study = optuna.create_study(study_name=f"fixed-{arch}-mmnist-{cell}", storage=url)
    spec = {"fixed": {"arch": arch, "data": "mmnist", "cell": cell, "budget": "smoke"}}
    budget = {"budget": "smoke", "changes": ["data.height: 64 -> 16"]}
    for key, value in {"kind": "fixed", "budget": budget, "spec": spec}.items():
        study.set_user_attr(key, value)
    study.add_trial(create_trial(value=0.03, user_attrs={"step_ms": 40.0, "device": "cpu"}))
    return study
