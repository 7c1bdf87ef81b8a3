"""Forget-gate bias: does starting the forget gates open (bias 1, Jozefowicz et al. 2015; OpenSTL's
ST-LSTM adds a constant 1) train better than the seed's 0, at the CPU budget where models learn?

    python benchmarks/forget_bias.py --json                      # the RESULTS.md run (3 seeds)
    python benchmarks/forget_bias.py --steps 6 --seeds 0 --json  # a smoke run

One configuration, the quick start's kind of model: the autoencoder with space-to-depth patch 4,
depth 2, hidden 16 (16, 32 wide), kernel 5, no peepholes, Adam lr 3e-3 with a cosine schedule,
gradient clip 1, batch 16, trained with :func:`hpo_vidpred.train.train_and_evaluate` on the
``small`` budget's data (Moving MNIST, one digit, 32x32, 5 -> 5, 64 validation sequences) for
``--steps`` steps (default 600, the budget's). Per cell and forget bias: the best validation MSE
and SSIM of every seed, their mean and sample standard deviation, and the difference against
the seed-to-seed spread. Runs go ``--parallel`` at a time, one torch thread each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import statistics
from concurrent import futures
from typing import Any

from hpo_vidpred.bench import script_main

CONFIG = {"depth": 2, "hidden": 16, "kernel": 5, "patch": 4}


def run_one(cell: str, bias: float, seed: int, steps: int) -> dict[str, Any]:
    """One training run in this (child) process."""
    import torch

    from hpo_vidpred import archs, budgets
    from hpo_vidpred import data as datasets
    from hpo_vidpred.devices import seed_everything
    from hpo_vidpred.metrics import split_baselines
    from hpo_vidpred.specs import ModelSpec, TrainSpec
    from hpo_vidpred.train import train_and_evaluate

    torch.set_num_threads(1)
    model = ModelSpec(cell=cell, peephole="none", forget_bias=bias, config=CONFIG)
    train = TrainSpec(lr=3e-3, batch_size=16, schedule="cosine", grad_clip=1.0, seed=seed,
                      device="cpu")
    data_spec, _, train = budgets.apply("small", datasets.default_spec("mmnist"), model, train)
    train = dataclasses.replace(train, steps_per_epoch=max(1, steps // train.epochs))
    data = datasets.load(data_spec, "cpu")
    seed_everything(seed)
    result = train_and_evaluate(archs.create_model(model), data, train, data_spec=data_spec)
    baselines = split_baselines(data, "val")
    return {"cell": cell, "forget_bias": bias, "seed": seed, "val_mse": result.best_val_mse,
            "val_ssim": result.val_ssim, "curve": result.curves["val_mse"],
            "x_black": result.best_val_mse / baselines["black"]["mse"],
            "x_copy_last": result.best_val_mse / baselines["copy_last"]["mse"],
            "steps": train.epochs * train.steps_per_epoch, "train_seconds": result.train_seconds,
            "n_params": result.n_params}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: mean and std of each bias, and whether the difference exceeds the spread."""
    out = []
    for cell in dict.fromkeys(r["cell"] for r in rows):
        stats = {}
        for bias in sorted({r["forget_bias"] for r in rows if r["cell"] == cell}):
            mse = [r["val_mse"] for r in rows if (r["cell"], r["forget_bias"]) == (cell, bias)]
            ssim = [r["val_ssim"] for r in rows if (r["cell"], r["forget_bias"]) == (cell, bias)]
            stats[bias] = {"n": len(mse), "mean_val_mse": statistics.mean(mse),
                           "std_val_mse": statistics.stdev(mse) if len(mse) > 1 else None,
                           "mean_val_ssim": statistics.mean(ssim)}
        row: dict[str, Any] = {"cell": cell, "by_bias": stats}
        if len(stats) == 2:
            (_, off), (_, on) = sorted(stats.items())
            spread = max(s for s in (off["std_val_mse"], on["std_val_mse"]) if s is not None) \
                if off["std_val_mse"] is not None else None
            difference = off["mean_val_mse"] - on["mean_val_mse"]
            row.update(change_pct=100 * difference / off["mean_val_mse"],
                       beyond_spread=None if spread is None else abs(difference) > spread)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="convlstm,stlstm")
    parser.add_argument("--biases", default="0,1")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    jobs = [(c, float(b), int(s), args.steps) for s in args.seeds.split(",")
            for c in args.cells.split(",") for b in args.biases.split(",")]
    with futures.ProcessPoolExecutor(args.parallel, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(run_one, *zip(*jobs)))
    result = {"rows": rows, "summary": summarize(rows), "config": CONFIG}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for s in result["summary"]:
            print(s["cell"], {b: round(v["mean_val_mse"], 6) for b, v in s["by_bias"].items()},
                  f"{s.get('change_pct', 0):+.1f}%", "beyond spread" if s.get("beyond_spread")
                  else "within spread")
    return result


if __name__ == "__main__":
    script_main(main)
