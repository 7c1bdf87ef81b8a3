"""Study-store overhead: the share of a worker's time spent in the study store, SQLite vs
PostgreSQL, with 1 and 8 workers, measured inside real ``hpo run`` workers.

    python benchmarks/store_overhead.py --json
    python benchmarks/store_overhead.py --stores sqlite --workers 1,8 --budget smoke --trials 16
    python benchmarks/store_overhead.py --postgres-url postgresql+psycopg://postgres@db/hpo

Every method of Optuna's RDB storage is timed in each worker process (outermost calls only), and
so is the wait for the study lock that ``hpo run`` takes to start a trial
(:func:`hpo_vidpred.bench.instrument_store`). ``store_share`` = (store time + lock wait in the
workers' main threads) / their busy time (trials, plus the store calls and lock waits between
trials), summed over workers; ``store_share_of_wall`` divides by the workers' whole wall time from
their first trial on instead (which includes waiting idle for the last trials of others).
``heartbeat_s`` is what the heartbeat thread spent in the store beside training (not in the
shares). The study is the architecture's own search space with ``hpo run``'s defaults (TPE,
Hyperband) at ``--budget``; each store gets a fresh study, deleted afterwards on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from hpo_vidpred import budgets
from hpo_vidpred.bench import BenchObjective, script_main
from hpo_vidpred.devices import cpu_model
from hpo_vidpred.errors import HpoError
from hpo_vidpred.study import pool as workers
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.specs import RunSpec, StudySpec
from hpo_vidpred.store import mask_url, open_storage

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def measure(store: str, url: str, n_workers: int, args: argparse.Namespace,
            folder: Path) -> dict[str, Any]:
    """One fresh study on ``url`` with ``n_workers`` workers; the store's share of their time."""
    name = f"store-overhead-{store}-{n_workers}-{os.getpid()}-{int(time.time())}"
    spec = StudySpec(arch=args.arch, data=args.data, cell=args.cell, budget=args.budget,
                     sampler="tpe", pruner="hyperband", name=name, seed=0)
    plan = plan_study(spec)
    timings = folder / name
    timings.mkdir()
    objective = BenchObjective(budgets.get(args.budget), timings=str(timings))
    t0 = time.perf_counter()
    try:
        settings = RunSpec(storage_url=url, trials=args.trials * n_workers, workers=n_workers,
                           devices=args.device, progress=False,
                           artifacts=str(folder / "artifacts"))
        summary = workers.run(plan, settings, objective=objective)
    finally:
        if n_workers == 1:  # the one-worker run happens in this process
            objective.flush()
        if store == "postgres":
            optuna.delete_study(study_name=name, storage=open_storage(url))
    wall = time.perf_counter() - t0
    per_worker = [json.loads(p.read_text()) for p in sorted(timings.glob("store-*.json"))]
    store_s = sum(w["store_s"] + w["lock_s"] for w in per_worker)
    busy_s = sum(w["busy_s"] for w in per_worker)
    worker_s = sum(w["wall_s"] for w in per_worker)
    return {
        "store": store, "url": mask_url(url), "workers": n_workers,
        "trials": summary["trials"]["finished"], "pruned": summary["trials"]["pruned"],
        "store_share": round(store_s / busy_s, 5) if busy_s else None,
        "store_share_of_wall": round(store_s / worker_s, 5) if worker_s else None,
        "store_s": round(sum(w["store_s"] for w in per_worker), 3),
        "lock_wait_s": round(sum(w["lock_s"] for w in per_worker), 3),
        "store_calls": sum(w["store_calls"] for w in per_worker),
        "heartbeat_s": round(sum(w["heartbeat_s"] for w in per_worker), 3),
        "objective_s": round(sum(w["objective_s"] for w in per_worker), 2),
        "busy_s": round(busy_s, 2), "worker_s": round(worker_s, 2), "wall_s": round(wall, 2),
        "ms_per_store_call": round(1000 * sum(w["store_s"] for w in per_worker)
                                   / max(1, sum(w["store_calls"] for w in per_worker)), 3),
        "processes": len(per_worker),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--postgres-url", default=os.environ.get("HPO_TEST_POSTGRES_URL",
                                                                 POSTGRES_URL))
    parser.add_argument("--workers", default="1,8", help="comma list of worker counts")
    parser.add_argument("--trials", type=int, default=2,
                        help="finished trials per worker (so no worker sits idle)")
    parser.add_argument("--budget", default="small", help="smoke | small | seed | full")
    parser.add_argument("--arch", default="autoencoder")
    parser.add_argument("--cell", default="", help="pin the cell (default: sampled)")
    parser.add_argument("--data", default="mmnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the one-worker run (in this process)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = {"sqlite": f"sqlite:///{folder / 'hpo.db'}", "postgres": args.postgres_url}
        for store in args.stores.split(","):
            if store not in urls:
                raise HpoError(f"unknown store {store!r}; choose sqlite, postgres or both")
            for n in (int(n) for n in args.workers.split(",")):
                rows.append(measure(store, urls[store], n, args, folder))
                if not args.json:
                    r = rows[-1]
                    print(f"{store:8s} {n} worker(s): store {100 * r['store_share']:.3f}% of "
                          f"worker time ({r['store_calls']} calls, {r['ms_per_store_call']:.2f} "
                          f"ms each, lock wait {r['lock_wait_s']:.2f} s, {r['trials']} trials)",
                          flush=True)
    for r in rows:
        r.update(budget=args.budget, arch=args.arch, data=args.data,
                 device=f"cpu ({cpu_model()})" if args.device == "cpu" else args.device,
                 threads_one_worker=torch.get_num_threads(), target_met=r["store_share"] < 0.01)
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    script_main(main)
