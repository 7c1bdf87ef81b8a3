"""HPO efficiency: how much compute each search strategy needs to reach what plain Optuna finds
(and the seed's fixed configuration), on Moving MNIST at the CPU budget where models learn.

    python benchmarks/hpo_efficiency.py --trials 20 --keep runs/eff --json   # the RESULTS.md run
    python benchmarks/hpo_efficiency.py --analyse runs/eff           # its figures again
    python benchmarks/hpo_efficiency.py --trials 30 --max-minutes 240 --json   # past TPE's start
    python benchmarks/hpo_efficiency.py --budget smoke --trials 4 --seeds 0 --json   # a smoke run

Strategies, each run with ``--seeds`` sampler seeds and ``--trials`` finished trials through the
project's own ``hpo run`` machinery (:func:`hpo_vidpred.study.plan.plan_study` +
:func:`hpo_vidpred.study.pool.run`, one worker, the real objective):

- ``ours``: ``hpo run``'s defaults -- multivariate TPE, Hyperband pruning -- plus early stopping
  (``patience`` in the search space's ``fixed`` values);
- ``plain``: plain Optuna: ``TPESampler(seed=...)`` (independent, Optuna's defaults), no
  pruning, no early stopping;
- ``random``: random search, no pruning, no early stopping.

The baseline is ``hpo fixed`` (:func:`hpo_vidpred.workflows.fixed.run_fixed`) at the same
budget: the
seed's configuration and optimizer settings; its best validation MSE is the quality to reach.
Per study: the compute spent until a trial first reported a validation MSE at or below a target
(trial-epochs, and training seconds, counting the reaching trial up to that epoch), for four
targets: the median over seeds of plain Optuna's final best (``plain_median``, the headline: what
a user gets from a hand-written Optuna loop of ``--trials`` full trials); the baseline's MSE; the
worst study's best MSE (``common``: every study reached it); and, paired by seed, the best MSE of
the plain-Optuna study (``plain_best``). Also the best
validation MSE within a fixed compute budget (the smallest total of trial-epochs of any study, so
every strategy gets the same). Ratios are each strategy's mean compute over ours; none is given
where ours missed a target in some seed. Studies run ``--parallel`` at a time, each in its own
process with one torch thread.

With one study seed for all strategies, Optuna's TPE draws its first 10 trials from
``RandomSampler(seed)``, as random search does: up to 10 trials the three strategies train the
same configurations and only pruning and early stopping differ.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import yaml

from hpo_vidpred.bench import script_main
from hpo_vidpred.errors import HpoError

# Qualities to reach: the fixed baseline's val_mse; the worst study's best (every study reached
# it); per seed, the best val_mse of the plain-Optuna study with that seed (paired).
TARGETS = ("plain_median", "baseline", "common", "plain_best")
_REACHED = {"plain_median": "reached_plain_median", "baseline": "reached", "common":
            "reached_common", "plain_best": "reached_plain_best"}
METHODS = {  # method -> (sampler, pruner, early stopping)
    "ours": ("tpe", "hyperband", True),
    "plain": ("tpe-plain", "none", False),
    "random": ("random", "none", False),
}


def search_space(arch: str, patience: int, folder: Path) -> str:
    """The architecture's own search space with ``fixed.patience`` set; its path."""
    from hpo_vidpred.paths import studies_file

    content = yaml.safe_load(studies_file(f"{arch}.yaml").read_text())
    content.setdefault("fixed", {})["patience"] = patience
    path = folder / f"{arch}-patience{patience}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def run_study(method: str, seed: int, args: dict[str, Any], folder: str) -> dict[str, Any]:
    """One study in this (child) process; its trials as plain data."""
    import optuna
    import torch

    from hpo_vidpred.study import pool as workers
    from hpo_vidpred.study.plan import plan_study
    from hpo_vidpred.specs import RunSpec, StudySpec

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner, early = METHODS[method]
    space = search_space(args["arch"], args["patience"] if early else 0, Path(folder))
    name = f"{method}-{seed}"
    spec = StudySpec(arch=args["arch"], data=args["data"], cell=args["cell"],
                     budget=args["budget"], sampler=sampler, pruner=pruner, search_space=space,
                     name=name, seed=seed)
    url = f"sqlite:///{Path(folder) / f'{name}.db'}"
    started = time.perf_counter()
    workers.run(plan_study(spec), RunSpec(storage_url=url, trials=args["trials"],
                                          timeout=max(1.0, args["deadline"] - time.time()),
                                          workers=1, devices="cpu", progress=False))
    return {**read_study(url, name), "method": method, "seed": seed,
            "wall_s": time.perf_counter() - started}


def read_study(url: str, name: str) -> dict[str, Any]:
    """A study's finished trials in the order they ran, as plain data."""
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    trials = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if not t.state.is_finished():
            continue
        trials.append({
            "number": t.number, "state": t.state.name, "value": t.value,
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
            "seconds": t.user_attrs.get("train_seconds") or 0.0,
            "stop_reason": t.user_attrs.get("stop_reason"),
        })
    return {"trials": trials}


def read_folder(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The baseline and the studies a run left in ``folder`` (``--keep``), for ``--analyse``."""
    import optuna

    fixed_url = f"sqlite:///{folder / 'fixed.db'}"
    (summary,) = optuna.get_all_study_summaries(fixed_url)
    best = read_study(fixed_url, summary.study_name)["trials"]
    complete = [t for t in best if t["value"] is not None]
    if not complete:
        raise HpoError(f"no finished baseline run in {folder / 'fixed.db'}")
    baseline = {"best_val_mse": min(t["value"] for t in complete), "epochs": complete[0]["epochs"],
                "train_seconds": complete[0]["seconds"]}
    studies = []
    for db in sorted(folder.glob("*-*.db")):
        method, seed = db.stem.rsplit("-", 1)
        if method in METHODS:
            study = read_study(f"sqlite:///{db}", db.stem)
            studies.append({**study, "method": method, "seed": int(seed), "wall_s": None})
    return baseline, studies


def run_baseline(seed: int, args: dict[str, Any], folder: str) -> dict[str, Any]:
    """``hpo fixed`` at the budget in this (child) process."""
    import torch

    from hpo_vidpred.workflows.fixed import plan_fixed, run_fixed

    torch.set_num_threads(1)
    plan = plan_fixed(args["arch"], args["data"], args["baseline_cell"], args["budget"],
                      seed=seed, device="cpu")
    summary = run_fixed(plan, f"sqlite:///{Path(folder) / 'fixed.db'}", progress=False)
    return {"seed": seed, "best_val_mse": summary["best_val_mse"],
            "epochs": summary["epochs"], "train_seconds": summary["train_seconds"],
            "n_params": summary["n_params"]}


def to_reach(trials: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Compute spent until some trial first reported ``val_mse <= target`` (trials in the order
    they ran; the reaching trial counts up to that epoch)."""
    epochs = seconds = 0.0
    for t in trials:
        for k, value in enumerate(t["curve"], start=1):
            if value is not None and value <= target:
                share = k / max(1, len(t["curve"]))
                return {"reached": True, "epochs": epochs + k,
                        "seconds": seconds + share * t["seconds"], "trial": t["number"]}
        epochs += t["epochs"]
        seconds += t["seconds"]
    return {"reached": False, "epochs": epochs, "seconds": seconds, "trial": None}


def best_within(trials: list[dict[str, Any]], budget_epochs: float) -> float | None:
    """Best validation MSE reported by any epoch within the first ``budget_epochs``
    trial-epochs."""
    spent, best = 0.0, math.inf
    for t in trials:
        for value in t["curve"]:
            if spent >= budget_epochs:
                return best if math.isfinite(best) else None
            spent += 1
            if value is not None:
                best = min(best, value)
    return best if math.isfinite(best) else None


def analyse(baseline: float, studies: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-study and per-method figures, and the compute ratios to ``ours``.

    A study that never reached the baseline counts its whole compute, a lower bound of what it
    would need (``lower_bound`` in the method's figures)."""
    totals = [sum(t["epochs"] for t in s["trials"]) for s in studies if s["trials"]]
    budget = min(totals) if totals else 0
    bests = {(s["method"], s["seed"]): min((v for t in s["trials"] for v in t["curve"]
                                            if v is not None), default=None) for s in studies}
    common = max((b for b in bests.values() if b is not None), default=math.nan)
    plain = [b for (method, _), b in bests.items() if method == "plain" and b is not None]
    plain_median = statistics.median(plain) if plain else -math.inf
    rows = []
    for s in studies:
        reach_median = to_reach(s["trials"], plain_median)
        reach = to_reach(s["trials"], baseline)
        reach_common = to_reach(s["trials"], common)
        plain_best = bests.get(("plain", s["seed"]))
        reach_plain = to_reach(s["trials"], plain_best if plain_best is not None else -math.inf)
        values = [t["value"] for t in s["trials"] if t["value"] is not None]
        rows.append({
            "method": s["method"], "seed": s["seed"], "trials": len(s["trials"]),
            "pruned": sum(t["state"] == "PRUNED" for t in s["trials"]),
            "early_stopped": sum(t["stop_reason"] == "early_stopped" for t in s["trials"]),
            "total_epochs": sum(t["epochs"] for t in s["trials"]),
            "total_seconds": round(sum(t["seconds"] for t in s["trials"]), 1),
            "best_val_mse": min(values) if values else None,
            "best_at_budget": best_within(s["trials"], budget),
            "reached_plain_median": reach_median["reached"],
            "epochs_to_plain_median": reach_median["epochs"],
            "seconds_to_plain_median": round(reach_median["seconds"], 1),
            "reached": reach["reached"], "reached_in_trial": reach["trial"],
            "epochs_to_baseline": reach["epochs"],
            "seconds_to_baseline": round(reach["seconds"], 1),
            "epochs_to_common": reach_common["epochs"],
            "seconds_to_common": round(reach_common["seconds"], 1),
            "reached_plain_best": reach_plain["reached"],
            "epochs_to_plain_best": reach_plain["epochs"],
            "seconds_to_plain_best": round(reach_plain["seconds"], 1),
            "wall_s": None if s["wall_s"] is None else round(s["wall_s"], 1),
        })
    methods: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and r["trials"]]
        if not mine:
            continue
        methods[method] = {
            "seeds": len(mine), "reached": sum(r["reached"] for r in mine),
            "reached_plain_median": sum(r["reached_plain_median"] for r in mine),
            "mean_epochs_to_plain_median": statistics.mean(r["epochs_to_plain_median"]
                                                           for r in mine),
            "mean_seconds_to_plain_median": statistics.mean(r["seconds_to_plain_median"]
                                                            for r in mine),
            "reached_common": len(mine),  # by construction
            "lower_bound": not all(r["reached"] for r in mine),
            "mean_epochs_to_baseline": statistics.mean(r["epochs_to_baseline"] for r in mine),
            "mean_seconds_to_baseline": statistics.mean(r["seconds_to_baseline"] for r in mine),
            "mean_epochs_to_common": statistics.mean(r["epochs_to_common"] for r in mine),
            "mean_seconds_to_common": statistics.mean(r["seconds_to_common"] for r in mine),
            "reached_plain_best": sum(r["reached_plain_best"] for r in mine),
            "mean_epochs_to_plain_best": statistics.mean(r["epochs_to_plain_best"] for r in mine),
            "mean_seconds_to_plain_best": statistics.mean(r["seconds_to_plain_best"]
                                                          for r in mine),
            "mean_best_at_budget": _mean(r["best_at_budget"] for r in mine),
            "mean_best_val_mse": _mean(r["best_val_mse"] for r in mine),
            "mean_trials": statistics.mean(r["trials"] for r in mine),
            "mean_total_epochs": statistics.mean(r["total_epochs"] for r in mine),
            "mean_total_seconds": statistics.mean(r["total_seconds"] for r in mine),
        }
    ours = methods.get("ours")
    for method, m in methods.items():
        if not ours or method == "ours":
            continue
        for target in TARGETS:
            # where ours missed the target in some seed its compute is no bound: no ratio
            ours_missed = ours[_REACHED[target]] < ours["seeds"]
            for unit in ("epochs", "seconds"):
                mine, theirs = m[f"mean_{unit}_to_{target}"], ours[f"mean_{unit}_to_{target}"]
                ok = theirs and not ours_missed
                m[f"{unit}_ratio_vs_ours_{target}"] = round(mine / theirs, 3) if ok else None
    return {"budget_epochs": budget, "common_target": common,
            "plain_median_target": plain_median if plain else None, "studies": rows,
            "methods": methods}


def _mean(values: Any) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--arch", default="autoencoder")
    parser.add_argument("--data", default="mmnist")
    parser.add_argument("--cell", default="", help="pin the studies' cell (default: sampled)")
    parser.add_argument("--baseline-cell", default="convlstm", help="cell of the fixed baseline")
    parser.add_argument("--budget", default="small")
    parser.add_argument("--trials", type=int, default=20, help="finished trials per study")
    parser.add_argument("--seeds", default="0,1,2", help="sampler seeds")
    parser.add_argument("--methods", default="ours,plain,random")
    parser.add_argument("--patience", type=int, default=1, help="early stopping of 'ours'")
    parser.add_argument("--parallel", type=int, default=2, help="studies at a time")
    parser.add_argument("--max-minutes", type=float, default=300.0,
                        help="no trial starts after this many minutes (a study may then have "
                        "fewer than --trials trials; the result says how many each has)")
    parser.add_argument("--keep", default=None, help="folder to keep the study stores in")
    parser.add_argument("--analyse", default=None, metavar="FOLDER",
                        help="run nothing: analyse the stores a --keep run left in FOLDER")
    args = parser.parse_args(argv)
    if args.analyse:
        baseline, studies = read_folder(Path(args.analyse))
        result = analyse(baseline["best_val_mse"], studies)
        result.update(baseline=baseline, settings={"analysed": args.analyse})
        _print(result, args.json)
        return result

    methods = args.methods.split(",")
    for method in methods:
        if method not in METHODS:
            raise HpoError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(m, s) for s in seeds for m in methods]
    settings = {"arch": args.arch, "data": args.data, "cell": args.cell,
                "baseline_cell": args.baseline_cell, "budget": args.budget,
                "trials": args.trials, "patience": args.patience,
                "deadline": time.time() + 60 * args.max_minutes}  # no trial starts after it
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        Path(folder).mkdir(parents=True, exist_ok=True)
        ctx = mp.get_context("spawn")
        with futures.ProcessPoolExecutor(max(1, args.parallel), mp_context=ctx) as pool:
            base = pool.submit(run_baseline, 0, settings, folder)
            runs = [pool.submit(run_study, m, s, settings, folder) for m, s in jobs]
            baseline = base.result()
            if not args.json:
                print(f"baseline (hpo fixed, {args.baseline_cell}): val_mse "
                      f"{baseline['best_val_mse']:.6g}", flush=True)
            studies = []
            for run in futures.as_completed(runs):
                studies.append(run.result())
                if not args.json:
                    s = studies[-1]
                    print(f"{s['method']:7s} seed {s['seed']}: {len(s['trials'])} trials, "
                          f"{s['wall_s']:.0f} s", flush=True)
    studies.sort(key=lambda s: (methods.index(s["method"]), s["seed"]))
    result = analyse(baseline["best_val_mse"], studies)
    result.update(baseline=baseline, settings=settings, seeds=seeds,
                  minutes=round((time.perf_counter() - started) / 60, 1))
    _print(result, args.json)
    return result


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=1))
        return
    print(f"baseline val_mse {result['baseline']['best_val_mse']:.6g}")
    if result.get("plain_median_target") is not None:
        print(f"plain Optuna's median final best val_mse {result['plain_median_target']:.6g}")
    print(f"common target (the worst study's best) val_mse {result['common_target']:.6g}")
    for method, m in result["methods"].items():
        ratios = "".join(f", {m[key]:.2f}x ours' trial-epochs to the {target}"
                         for target in TARGETS
                         if (key := f"epochs_ratio_vs_ours_{target}") in m and m[key])
        bound = ">=" if m["lower_bound"] else ""
        bound_m = "" if m["reached_plain_median"] == m["seeds"] else ">="
        print(f"{method:7s} reached plain Optuna's median best in {m['reached_plain_median']}/"
              f"{m['seeds']} seeds: mean {bound_m}{m['mean_epochs_to_plain_median']:.1f} "
              f"trial-epochs, {bound_m}{m['mean_seconds_to_plain_median']:.0f} s")
        print(f"{method:7s} reached the baseline in {m['reached']}/{m['seeds']} seeds: mean "
              f"{bound}{m['mean_epochs_to_baseline']:.1f} trial-epochs, "
              f"{bound}{m['mean_seconds_to_baseline']:.0f} s; common target: "
              f"{m['mean_epochs_to_common']:.1f} trial-epochs, "
              f"{m['mean_seconds_to_common']:.0f} s{ratios}; mean best val_mse within "
              f"{result['budget_epochs']} trial-epochs: {m['mean_best_at_budget']:.5g}")


if __name__ == "__main__":
    script_main(main)
