"""How far one study store goes: trials per second and the latency of ``ask`` and ``tell`` with 1
to 64 worker processes hammering one study, on SQLite, on PostgreSQL and through ``hpo store
serve`` (the gRPC proxy in front of PostgreSQL), with an objective that does no work.

    python benchmarks/store_scaling.py --procs 1,4,16,64 --seconds 10 --json
    python benchmarks/store_scaling.py --stores sqlite,postgres --procs 1,4 --seconds 3
    python benchmarks/store_scaling.py --stores postgres,grpc --postgres-url URL --procs 64
    python benchmarks/store_scaling.py --smoke                    # procs 1,2 for 1 s each

Each (store, procs) gets a fresh study (SQLite: a fresh file in a temporary folder, or in
``--sqlite-dir``, kept there; PostgreSQL: a new study, deleted afterwards). ``procs`` processes
are spawned, each opens the store with :func:`hpo_vidpred.store.open_storage` (``hpo run``'s
engine options, retries and, for ``grpc://``, its proxy client) and loads the study; a barrier
lets them all start together, then each runs Optuna's ask/tell loop for ``--seconds`` (or
``--trials`` per process). A trial does what a real one does to the store, without training: it
samples the autoencoder's 7 parameters, reports 4 intermediate values and sets the 14 user
attributes a search trial sets (``worker``, ``model_spec``, ``train_spec``, the 10 of
``TrainResult.user_attrs()`` and ``prediction_artifact``), then is told a value. Sampler:
random by default, so the sampler's own cost (which TPE's grows with the trials) stays out;
``--sampler tpe`` puts it in. ``hpo run``'s worker loop adds, per trial, the study lock and a
count of the trials (``study/pool.py``); those are not part of this loop.

Per row: ``trials_per_s`` = COMPLETE trials of all processes / the span from the first process's
start to the last one's end; the p50 and p99 in ms of ``ask``, of the trial's own calls
(``body``: parameters, reports, attributes) and of ``tell``; ``store_calls`` = storage API calls
that left the worker processes (after Optuna's cache in front of an RDB store; through the proxy,
each one is a gRPC call), per trial as well; ``errors`` (calls that raised; the first message is
kept) and ``stored`` (COMPLETE trials found in the store afterwards; equal to ``trials``).
The proxy runs as a subprocess (``hpo store serve``, ``--proxy-threads`` threads) on a free
loopback port and competes with the workers for the same cores. A store that cannot be reached
(or ``grpcio`` missing) is skipped with its reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from hpo_vidpred.errors import HpoError
from hpo_vidpred.store import mask_url, open_storage
from hpo_vidpred.store.local_proxy import LocalProxy

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START_TIMEOUT_S = 900  # spawning 64 processes that import Optuna on a busy 2-core machine
MAX_CONSECUTIVE_ERRORS = 20

# What a search trial of the autoencoder stores (study/plan.py, train.TrainResult.user_attrs).
MODEL_SPEC = {"arch": "autoencoder", "cell": "convlstm", "channels": 1, "peephole": "none",
              "forget_bias": 1.0, "config": {"depth": 2, "hidden": 16, "kernel": 5, "patch": 4}}
TRAIN_SPEC = {"lr": 0.001, "batch_size": 8, "epochs": 4, "steps_per_epoch": 150,
              "schedule": "cosine", "grad_clip": 1.0, "patience": 0, "min_delta": 0.0,
              "val_batch_size": 32, "teacher_forcing": "none", "tf_decay": 0.5,
              "frame_loss_weight": 1.0, "seed": 0, "device": "cpu", "bf16": "auto",
              "channels_last": "auto", "compile": False}
EPOCHS = 4


# --------------------------------------------------------------------------- one worker process
def _count_calls(storage: Any) -> dict[str, int]:
    """Count the outermost storage API calls made on ``storage`` (wrapped on the instance)."""
    counts = {"calls": 0, "depth": 0}
    for name in dir(optuna.storages.BaseStorage):
        if name.startswith("_") or name == "remove_session":
            continue
        method = getattr(storage, name, None)
        if not callable(method):
            continue

        def wrapper(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            counts["depth"] += 1
            try:
                return _method(*args, **kwargs)
            finally:
                counts["depth"] -= 1
                if counts["depth"] == 0:
                    counts["calls"] += 1

        setattr(storage, name, wrapper)
    return counts


def _trial_body(trial: optuna.Trial, worker: str) -> float:
    """What a trial writes to the store, without the training."""
    lr = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    batch = trial.suggest_categorical("batch_size", [4, 8, 16])
    cell = trial.suggest_categorical("cell", ["convlstm", "stlstm"])
    depth = trial.suggest_int("depth", 1, 3)
    hidden = trial.suggest_int("hidden", 8, 64, log=True)
    kernel = trial.suggest_categorical("kernel", [3, 5, 7])
    patch = trial.suggest_categorical("patch", [1, 2, 4])
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("model_spec", {**MODEL_SPEC, "cell": cell, "config": {
        "depth": depth, "hidden": hidden, "kernel": kernel, "patch": patch}})
    trial.set_user_attr("train_spec", {**TRAIN_SPEC, "lr": lr, "batch_size": batch,
                                       "seed": trial.number})
    value = 0.05 + lr
    for epoch in range(1, EPOCHS + 1):
        value = 0.02 + 0.03 / epoch + lr
        trial.report(value, epoch)
    attrs = {"val_mse": value, "n_params": 1000 * hidden * depth, "stop_reason": "budget",
             "best_epoch": EPOCHS, "epochs": EPOCHS, "step_ms": 12.5, "train_seconds": 7.5,
             "val_ssim": 0.8, "val_psnr": 20.0, "device": "cpu",
             "prediction_artifact": f"{trial.number:08x}-0000-0000-0000-000000000000"}
    for key, attr in attrs.items():
        trial.set_user_attr(key, attr)
    return value


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _worker(index: int, url: str, study_name: str, seconds: float, max_trials: int,
            sampler: str, barrier: Any, results: Any) -> None:
    """One process: open the store, wait for the others, then ask/tell until the time is up."""
    out: dict[str, Any] = {"index": index, "ask": [], "body": [], "tell": [], "trials": 0,
                           "errors": 0, "error": None, "calls": 0, "start": 0.0, "end": 0.0}
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(url, create_tables=False)
        counts = _count_calls(storage)
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=_sampler(sampler, 1000 + index))
        name = f"{socket.gethostname()}:{os.getpid()}"
    except BaseException as exc:  # noqa: BLE001 (reported to the parent, which stops the run)
        barrier.abort()
        out["error"] = f"{type(exc).__name__}: {exc}"
        results.put(out)
        return
    try:
        barrier.wait(timeout=START_TIMEOUT_S)
    except Exception:  # noqa: BLE001 (another process failed to start)
        out["error"] = "the start barrier broke (another process failed to start)"
        results.put(out)
        return
    counts["calls"] = 0
    clock = time.perf_counter
    out["start"] = time.time()
    deadline, run, consecutive = clock() + seconds, 0, 0
    while clock() < deadline and (not max_trials or out["trials"] < max_trials):
        trial, told = None, False
        try:
            t0 = clock()
            trial = study.ask()
            t1 = clock()
            value = _trial_body(trial, name)
            t2 = clock()
            told = True
            study.tell(trial, value)
            t3 = clock()
        except Exception as exc:  # noqa: BLE001 (counted; the loop goes on)
            out["errors"] += 1
            out["error"] = out["error"] or f"{type(exc).__name__}: {exc}".splitlines()[0]
            consecutive += 1
            if trial is not None and not told:
                try:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                except Exception:  # noqa: BLE001
                    pass
            if consecutive >= MAX_CONSECUTIVE_ERRORS:
                break
            continue
        consecutive = 0
        run += 1
        out["trials"] = run
        out["ask"].append(t1 - t0)
        out["body"].append(t2 - t1)
        out["tell"].append(t3 - t2)
    out["end"] = time.time()
    out["calls"] = counts["calls"]
    results.put(out)


# --------------------------------------------------------------------------- one measurement
def _ms(values: list[float], q: float) -> float | None:
    return round(1000 * float(np.percentile(values, q)), 3) if values else None


def measure(store: str, url: str, admin_url: str, procs: int, args: argparse.Namespace,
            delete: bool) -> dict[str, Any]:
    """``procs`` processes ask and tell on a fresh study of ``url`` (created and, with
    ``delete``, deleted through ``admin_url``, a direct connection to the same database)."""
    import multiprocessing

    name = f"store-scaling-{store}-{procs}-{os.getpid()}-{int(time.time() * 1000)}"
    admin = open_storage(admin_url)
    optuna.create_study(study_name=name, storage=admin, direction="minimize")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(procs + 1), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(i, url, name, args.seconds, args.trials,
                                                 args.sampler, barrier, results), daemon=True)
               for i in range(procs)]
    t_spawn = time.perf_counter()
    outs: list[dict[str, Any]] = []
    failure = None
    try:
        for w in workers:
            w.start()
        try:
            barrier.wait(timeout=START_TIMEOUT_S)
        except Exception:  # noqa: BLE001
            failure = "the processes did not all start"
        startup = time.perf_counter() - t_spawn
        limit = args.seconds + 300 if not args.trials else 3600
        deadline = time.monotonic() + START_TIMEOUT_S + limit
        while len(outs) < procs and time.monotonic() < deadline:
            try:
                outs.append(results.get(timeout=5))
            except Exception:  # noqa: BLE001 (queue.Empty): is anybody still alive?
                if not any(w.is_alive() for w in workers) and results.empty():
                    break
        for w in workers:
            w.join(timeout=30)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join()
    try:
        study = optuna.load_study(study_name=name, storage=admin)
        stored = len(study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.COMPLETE,)))
        if delete:
            optuna.delete_study(study_name=name, storage=admin)
    finally:
        admin.remove_session()
        engine = getattr(admin, "engine", None)
        if engine is not None:
            engine.dispose()

    trials = sum(o["trials"] for o in outs)
    ran = [o for o in outs if o["end"]]
    span = (max(o["end"] for o in ran) - min(o["start"] for o in ran)) if ran else 0.0
    asks = [x for o in outs for x in o["ask"]]
    bodies = [x for o in outs for x in o["body"]]
    tells = [x for o in outs for x in o["tell"]]
    calls = sum(o["calls"] for o in outs)
    messages = [o["error"] for o in outs if o["error"]]
    lost = procs - len(outs) + sum(1 for o in outs if not o["end"])  # never ran their loop
    if len(outs) < procs:
        messages.append(f"{procs - len(outs)} process(es) sent no result (crashed?)")
    return {
        "store": store, "url": mask_url(url), "procs": procs, "study": name,
        "trials": trials, "stored": stored, "span_s": round(span, 3),
        "trials_per_s": round(trials / span, 2) if span else 0.0,
        "trials_per_s_per_proc": round(trials / span / procs, 2) if span else 0.0,
        "ask_p50_ms": _ms(asks, 50), "ask_p99_ms": _ms(asks, 99),
        "body_p50_ms": _ms(bodies, 50), "body_p99_ms": _ms(bodies, 99),
        "tell_p50_ms": _ms(tells, 50), "tell_p99_ms": _ms(tells, 99),
        "store_calls": calls, "calls_per_trial": round(calls / trials, 1) if trials else None,
        "errors": sum(o["errors"] for o in outs) + lost,
        "first_error": (messages[0] if messages else None) or failure,
        "startup_s": round(startup, 2),
    }


# --------------------------------------------------------------------------- the proxy
def _reachable(url: str) -> str | None:
    """None when the store at ``url`` opens; else why not (one line)."""
    try:
        storage = open_storage(url)
    except HpoError as exc:
        return str(exc)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()
    return None


# --------------------------------------------------------------------------- main
HEADER = (f"{'store':8s} {'procs':>5s} {'trials':>7s} {'trials/s':>9s} {'ask p50':>8s} "
          f"{'ask p99':>8s} {'body p50':>8s} {'tell p50':>8s} {'tell p99':>8s} {'calls/tr':>8s} "
          f"{'errors':>6s}")


def _line(r: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    line = (f"{r['store']:8s} {r['procs']:5d} {r['trials']:7d} {r['trials_per_s']:9.1f} "
            f"{f(r['ask_p50_ms']):>8s} {f(r['ask_p99_ms']):>8s} {f(r['body_p50_ms']):>8s} "
            f"{f(r['tell_p50_ms']):>8s} {f(r['tell_p99_ms']):>8s} "
            f"{f(r['calls_per_trial']):>8s} {r['errors']:6d}")
    if r["first_error"]:
        line += f"  ({r['first_error']})"
    if r["stored"] != r["trials"]:
        line += f"  [store holds {r['stored']} COMPLETE trials]"
    return line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--stores", default="sqlite,postgres,grpc",
                        help="comma list of sqlite, postgres, grpc (the proxy before PostgreSQL)")
    parser.add_argument("--postgres-url", default=os.environ.get("HPO_TEST_POSTGRES_URL",
                                                                 POSTGRES_URL))
    parser.add_argument("--procs", default="1,4,16,64", help="comma list of process counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of ask/tell each")
    parser.add_argument("--trials", type=int, default=0,
                        help="stop each process after this many trials (0: --seconds only)")
    parser.add_argument("--sampler", default="random", choices=("random", "tpe"))
    parser.add_argument("--sqlite-dir", default=None,
                        help="keep the SQLite stores here (default: a temporary folder)")
    parser.add_argument("--proxy-threads", type=int, default=32,
                        help="hpo store serve --threads (its default: 32)")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check: --procs 1,2 --seconds 1")
    args = parser.parse_args(argv)
    if args.smoke:
        args.procs, args.seconds = "1,2", 1.0

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for store in stores:
        if store not in ("sqlite", "postgres", "grpc"):
            raise HpoError(f"unknown store {store!r}; choose from sqlite, postgres, grpc")
    try:
        counts = [int(n) for n in args.procs.split(",")]
    except ValueError:
        raise HpoError(f"--procs {args.procs!r} is not a comma list of numbers") from None
    if not counts or min(counts) < 1:
        raise HpoError("--procs needs process counts of 1 or more")
    if args.seconds <= 0 and not args.trials:
        raise HpoError("--seconds must be positive (or give --trials)")
    # Spawned workers import this module by name: put its folder on the path they inherit.
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = sys.stderr if args.json else sys.stdout

    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    pg_down = (_reachable(args.postgres_url)
               if {"postgres", "grpc"} & set(stores) else None)
    with tempfile.TemporaryDirectory(prefix="store-scaling-") as tmp:
        sqlite_dir = Path(args.sqlite_dir or tmp)
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        print(HEADER + "   (ms; calls/tr: store calls per trial)", file=log, flush=True)
        for store in stores:
            proxy = None
            if store in ("postgres", "grpc") and pg_down:
                skipped[store] = pg_down if store == "postgres" else \
                    f"it serves PostgreSQL, which is unreachable: {pg_down}"
            elif store == "grpc":
                if importlib.util.find_spec("grpc") is None:
                    skipped[store] = "grpcio is not installed (pip install 'hpo-vidpred[grpc]')"
                else:
                    try:
                        proxy = LocalProxy(args.postgres_url, args.proxy_threads)
                    except HpoError as exc:
                        skipped[store] = str(exc)
            if store in skipped:
                print(f"skipped {store}: {skipped[store]}", file=log, flush=True)
                continue
            try:
                for n in counts:
                    if store == "sqlite":
                        url = f"sqlite:///{sqlite_dir / f'store-scaling-{n}-{os.getpid()}.db'}"
                        row = measure(store, url, url, n, args, delete=False)
                    elif store == "postgres":
                        row = measure(store, args.postgres_url, args.postgres_url, n, args,
                                      delete=True)
                    else:
                        row = measure(store, proxy.url, args.postgres_url, n, args,
                                      delete=True)
                        row["proxy_threads"] = args.proxy_threads
                    rows.append(row)
                    print(_line(row), file=log, flush=True)
            finally:
                if proxy is not None:
                    served = proxy.stop()
                    if "Traceback" in served:
                        print(f"the proxy logged an error:\n{served[-3000:]}", file=log)
    from hpo_vidpred.devices import cpu_model  # imports torch: not in the workers

    result = {
        "rows": rows,
        "skipped": skipped,
        "settings": {
            "stores": stores, "procs": counts, "seconds": args.seconds, "trials": args.trials,
            "sampler": args.sampler, "params": 7, "reports": EPOCHS, "user_attrs": 14,
            "postgres_url": mask_url(args.postgres_url), "proxy_threads": args.proxy_threads,
            "sqlite_dir": args.sqlite_dir, "cpu": cpu_model(), "cores": os.cpu_count(),
            "optuna": optuna.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": " ".join(["python", "benchmarks/store_scaling.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
        },
    }
    if args.json:
        print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from hpo_vidpred.bench import script_main  # imports torch: not in the workers

    script_main(main)
