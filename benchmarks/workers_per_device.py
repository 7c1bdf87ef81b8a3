"""Several trials per device: aggregate finished trials per hour of ``hpo run`` with 1, 2, 4 and
8 worker processes on one device, training the fixed-size model (the seed's configuration; only
the learning rate is sampled, no pruning, so every trial costs the same), and on a GPU the peak
memory one worker's trial holds there.

    python benchmarks/workers_per_device.py --json                         # CPU, tiny size
    python benchmarks/workers_per_device.py --device cuda:0 --size 64 --n-in 10 --n-out 10 \\
        --epochs 2 --steps 100 --batch 16 --trials 32 --json                # one GPU

Each worker count gets a fresh SQLite study driven by the project's own worker pool
(:func:`hpo_vidpred.study.pool.run`, the real objective, prediction strips included). Reported per
count: ``trials_per_hour`` over the busy span (first trial start to last trial end, from the
store), ``trials_per_hour_wall`` including process start-up, and ``speedup`` over one worker.
CPU workers split the cores between them (``hpo run`` gives each ``cores // workers`` threads).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from hpo_vidpred.bench import BenchObjective, ensure_budget, script_main
from hpo_vidpred.budgets import Budget
from hpo_vidpred.devices import cpu_model, default_workers, resolve_devices
from hpo_vidpred.errors import HpoError
from hpo_vidpred.study import pool as workers
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.specs import RunSpec, StudySpec

SPACE = "arch: {arch}\nparams:\n  lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}\n"


def busy_span(study: optuna.Study) -> float:
    """Seconds from the first trial's start to the last trial's end."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    if not trials:
        return float("nan")
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return (end - start).total_seconds()


def measure(n_workers: int, args: argparse.Namespace, budget: Budget, folder: Path) -> dict:
    """One fresh study with ``n_workers`` workers; its throughput row."""
    space = folder / "space.yaml"
    space.write_text(SPACE.format(arch=args.arch))
    spec = StudySpec(arch=args.arch, data=args.data, cell=args.cell, budget=budget.name,
                     sampler="random", pruner="none", search_space=str(space),
                     name=f"workers-{n_workers}", seed=0)
    url = f"sqlite:///{folder / f'workers-{n_workers}.db'}"
    plan = plan_study(spec)
    t0 = time.perf_counter()
    summary = workers.run(plan, RunSpec(storage_url=url, trials=args.trials, workers=n_workers,
                                        devices=args.device,
                                        progress=False), objective=BenchObjective(budget))
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=plan.name, storage=url)
    span = busy_span(study)
    finished = summary["trials"]["finished"]
    trials = study.get_trials(deepcopy=False)
    seconds = [t.user_attrs["train_seconds"] for t in trials if "train_seconds" in t.user_attrs]
    gpu_mb = [t.user_attrs["peak_gpu_mb"] for t in trials if "peak_gpu_mb" in t.user_attrs]
    return {
        "workers": n_workers, "trials": finished, "complete": summary["trials"]["complete"],
        "busy_s": round(span, 2), "wall_s": round(wall, 2),
        "trials_per_hour": round(3600 * finished / span, 1),
        "trials_per_hour_wall": round(3600 * finished / wall, 1),
        "mean_trial_s": round(sum(seconds) / len(seconds), 2) if seconds else None,
        "peak_gpu_mb_per_worker": round(max(gpu_mb), 1) if gpu_mb else None,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--arch", default="autoencoder")
    parser.add_argument("--cell", default="convlstm")
    parser.add_argument("--data", default="mmnist")
    parser.add_argument("--device", default="cpu", help="one device: cpu | cuda | cuda:N")
    parser.add_argument("--workers", default="1,2,4,8", help="comma list of worker counts")
    parser.add_argument("--trials", type=int, default=16, help="finished trials per count")
    parser.add_argument("--size", type=int, default=16, help="frame height (width keeps aspect)")
    parser.add_argument("--n-in", type=int, default=2)
    parser.add_argument("--n-out", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per epoch")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--val-size", type=int, default=8, help="validation sequences")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the one-worker run (in this process)")
    args = parser.parse_args(argv)

    if "," in args.device:
        raise HpoError("this benchmark measures one device; pass one --device")
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = Budget(name="bench-workers", summary="workers-per-device benchmark",
                    schedule={"*": (args.epochs, args.steps)}, frame_height=args.size,
                    max_in=args.n_in, max_out=args.n_out, max_batch=args.batch,
                    val_size=args.val_size)
    ensure_budget(budget)
    counts = [int(n) for n in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(measure(n, args, budget, Path(tmp)))
            if not args.json:
                r = rows[-1]
                print(f"{n} worker(s): {r['trials']} trials, busy {r['busy_s']:.1f} s, "
                      f"{r['trials_per_hour']:.0f} trials/h ({r['trials_per_hour_wall']:.0f} "
                      "with start-up)", flush=True)
    base = rows[0]["trials_per_hour"] if rows and rows[0]["workers"] == 1 else None
    device = resolve_devices(args.device)[0]
    for r in rows:
        r["speedup"] = round(r["trials_per_hour"] / base, 3) if base else None
        r.update(device=device if device != "cpu" else f"cpu ({cpu_model()})",
                 arch=args.arch, cell=args.cell, data=args.data, size=args.size,
                 frames=[args.n_in, args.n_out], epochs=args.epochs, steps=args.steps,
                 batch=args.batch, threads_one_worker=torch.get_num_threads(),
                 default_workers=default_workers(device))
    if args.json:
        print(json.dumps(rows, indent=1))
    elif base:
        best = max(rows, key=lambda r: r["trials_per_hour"])
        print(f"best: {best['workers']} workers, {best['speedup']:.2f}x one worker; "
              f"default_workers({device}) = {default_workers(device)}")
    return rows


if __name__ == "__main__":
    script_main(main)
