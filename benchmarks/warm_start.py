"""Warm start vs cold start: does carrying what one study learned into the next save compute?

    python benchmarks/warm_start.py --json                       # the RESULTS.md run
    python benchmarks/warm_start.py --budget smoke --trials 3 --source-trials 2 --seeds 0 --json
    python benchmarks/warm_start.py --keep runs/warm --strategies cold &    # one core each; the
    python benchmarks/warm_start.py --keep runs/warm --strategies warm      # source is made once
    python benchmarks/warm_start.py --analyse runs/warm --json           # the figures again

A source study -- the CPU demo's autoencoder search on Moving MNIST with **one** digit (budget
``small``, ``--source-trials`` trials) -- then, per seed, two studies of the target task, Moving
MNIST with **two** digits at the same frames and schedule: ``cold`` (``hpo run`` as it is) and
``warm`` (``hpo run --warm-start SOURCE --warm-top K``). Both run ``--trials`` trials with the
project's defaults (multivariate TPE, Hyperband, the trivial-predictor guard), one worker. Per
strategy: trials and trial-epochs until a trial first reports a validation MSE at or below the
cold studies' median final best (the target), and the best within equal compute. The project's
target: the warm start reaches it with >= 2x fewer trial-epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from hpo_vidpred.bench import BenchObjective, ensure_budget, script_main
from hpo_vidpred.budgets import get as get_budget


def _run(name: str, budget: Any, trials: int, url: str, seed: int, warm: tuple[str, ...] = (),
         top: int = 3, workers_: int = 1) -> None:
    from hpo_vidpred.study import pool as workers
    from hpo_vidpred.study.plan import plan_study
    from hpo_vidpred.specs import RunSpec, StudySpec

    spec = StudySpec(arch="autoencoder", data="mmnist", budget=budget.name, name=name, seed=seed)
    workers.run(plan_study(spec), RunSpec(storage_url=url, trials=trials, workers=workers_,
                                          devices="cpu", progress=False, warm=tuple(warm),
                                          warm_top=top), objective=BenchObjective(budget))


def _curves(url: str, name: str) -> list[dict[str, Any]]:
    import optuna

    from hpo_vidpred.store.records import retried_numbers

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)  # a killed worker's trial: counted once, by its retry
    return [{"number": t.number, "state": t.state.name, "warm": "warm_start" in t.user_attrs,
             "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
             "seconds": t.user_attrs.get("train_seconds") or 0.0}
            for t in sorted(trials, key=lambda t: t.number)
            if t.state.is_finished() and t.number not in retried]


def _finished(url: str, name: str) -> int:
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return 0
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def _source(url: str, budget: Any, trials: int, workers_: int) -> None:
    """Make the source study once; a second process sharing ``--keep`` waits for it."""
    import time

    from filelock import FileLock

    with FileLock(url.removeprefix("sqlite:///") + ".source.lock"):
        if _finished(url, "source") < trials:
            _run("source", budget, trials, url, seed=100, workers_=workers_)
    while _finished(url, "source") < trials:  # pragma: no cover - only if the maker died
        time.sleep(5)


def read_store(url: str) -> list[dict[str, Any]]:
    """Every ``cold-N``/``warm-N`` study in a kept store, for ``--analyse``."""
    import optuna

    out = []
    for summary in optuna.get_all_study_summaries(url):
        strategy, _, seed = summary.study_name.partition("-")
        if strategy in ("cold", "warm") and seed.isdigit():
            out.append({"strategy": strategy, "seed": int(seed),
                        "trials": _curves(url, summary.study_name)})
    return sorted(out, key=lambda s: (s["seed"], s["strategy"]))


def to_reach(trials: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Trials, trial-epochs and training seconds until some trial first reports ``val_mse <=
    target`` (the seconds of the reaching trial pro rata to its epochs)."""
    epochs, seconds = 0, 0.0
    for i, t in enumerate(trials, start=1):
        for k, value in enumerate(t["curve"], start=1):
            if value <= target:
                part = t.get("seconds", 0.0) * k / len(t["curve"])
                return {"reached": True, "trials": i, "epochs": epochs + k,
                        "seconds": round(seconds + part, 1)}
        epochs += len(t["curve"])
        seconds += t.get("seconds", 0.0)
    return {"reached": False, "trials": len(trials), "epochs": epochs,
            "seconds": round(seconds, 1)}


def analyse(studies: list[dict[str, Any]]) -> dict[str, Any]:
    """The target (the cold studies' median final best) and each strategy's compute to it."""
    best = {(s["strategy"], s["seed"]): min(v for t in s["trials"] for v in t["curve"])
            for s in studies if any(t["curve"] for t in s["trials"])}
    target = statistics.median(v for (k, _), v in best.items() if k == "cold")
    rows = [{"strategy": s["strategy"], "seed": s["seed"], "best": best.get((s["strategy"],
             s["seed"])), **to_reach(s["trials"], target),
             "total_epochs": sum(len(t["curve"]) for t in s["trials"])} for s in studies]
    out: dict[str, Any] = {"target": target, "studies": rows}
    for strategy in ("cold", "warm"):
        mine = [r for r in rows if r["strategy"] == strategy]
        if not mine:  # its process has not finished a study yet
            out[strategy] = {"reached": 0, "seeds": 0, "mean_trials": None, "mean_epochs": None,
                             "mean_seconds": None}
            continue
        out[strategy] = {"reached": sum(r["reached"] for r in mine), "seeds": len(mine),
                         "mean_trials": statistics.mean(r["trials"] for r in mine),
                         "mean_epochs": statistics.mean(r["epochs"] for r in mine),
                         "mean_seconds": statistics.mean(r["seconds"] for r in mine)}
    out["epochs_ratio_cold_over_warm"] = (round(out["cold"]["mean_epochs"]
                                                / out["warm"]["mean_epochs"], 3)
                                          if out["warm"]["mean_epochs"]
                                          and out["cold"]["mean_epochs"] else None)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="small", help="the source's budget (one digit)")
    parser.add_argument("--source-trials", type=int, default=20)
    parser.add_argument("--trials", type=int, default=12, help="trials per target study")
    parser.add_argument("--top", type=int, default=3, help="--warm-top")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default="cold,warm",
                        help="which target studies this process runs (the source is shared)")
    parser.add_argument("--source-workers", type=int, default=1)
    parser.add_argument("--keep", default=None, help="folder to keep the store in")
    parser.add_argument("--analyse", default=None, metavar="FOLDER",
                        help="run nothing: analyse the store a --keep run left in FOLDER")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.analyse:
        result = {**analyse(read_store(f"sqlite:///{Path(args.analyse) / 'warm.db'}")),
                  "settings": {"analysed": args.analyse}}
        return _print(result, args.json)
    source = get_budget(args.budget)
    two = dataclasses.replace(source, name=f"{source.name}-2digits",
                              summary=f"{source.name} with two Moving MNIST digits",
                              data_options={"mmnist": {"digits": 2}})
    ensure_budget(two)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'warm.db'}"
        _source(url, source, args.source_trials, args.source_workers)
        studies = []
        chosen = args.strategies.split(",")
        for seed in (int(s) for s in args.seeds.split(",")):
            for strategy, warm in (("cold", ()), ("warm", ("source",))):
                if strategy not in chosen:
                    continue
                name = f"{strategy}-{seed}"
                _run(name, two, args.trials, url, seed, warm, args.top)
                studies.append({"strategy": strategy, "seed": seed,
                                "trials": _curves(url, name)})
        if set(chosen) != {"cold", "warm"}:
            studies = read_store(url)  # the other strategy's process may still be running
            if {s["strategy"] for s in studies} != {"cold", "warm"}:
                print(f"the other strategy's studies are not in {url} yet: when they are, run"
                      f" `python benchmarks/warm_start.py --analyse {folder}`")
                return {"partial": True, "studies": [s["strategy"] + "-" + str(s["seed"])
                                                     for s in studies]}
    result = {**analyse(studies), "settings": vars(args)}
    return _print(result, args.json)


def _print(result: dict[str, Any], as_json: bool) -> dict[str, Any]:
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        print(f"target (cold median final best) {result['target']:.6g}; trial-epochs to it: "
              f"cold {result['cold']['mean_epochs']}, warm {result['warm']['mean_epochs']}"
              f" ({result['epochs_ratio_cold_over_warm']}x)")
    return result


if __name__ == "__main__":
    script_main(main)
