"""Does the replay tell the truth? Real ``hpo run`` studies at a learning-curve table's settings
(one seed each), set against the replay's interquartile bands of the same strategies.

    # the real studies (each ~1 h with 2 workers on 2 cores at the `small` budget):
    hpo run --arch autoencoder --data mmnist --budget small --epochs 8 --workers 2 \\
        --storage sqlite:///reality.db --trials 20 --seed 0 --study reality-hpo-default
    hpo run ... --study reality-tpe --sampler tpe-plain --pruner none --scheduler fifo
    # the replay of the same strategies with as many workers, then the comparison:
    python benchmarks/replay.py --table benchmarks/tables/autoencoder-mmnist-small.csv \\
        --strategies tpe,hpo-default --workers 2 --seeds 50 --json > replay-w2.json
    python benchmarks/reality_check.py --table benchmarks/tables/autoencoder-mmnist-small.csv \\
        --replay replay-w2.json --storage sqlite:///reality.db \\
        --studies tpe=reality-tpe,hpo-default=reality-hpo-default --json --figure reality.png

Each real trial is put on the replay's clock: it is charged the recorded seconds of the table
configuration the replay would answer its parameters with (the nearest one), for the epochs it
trained, on the worker free first (in the order the trials started). So both curves spend the same
seconds for the same proposals, and what is compared is what the replay stands in for: the values
real trials reach and the order a real study proposes them in. The real best-so-far (the best
complete trial's value) is read at each point of the replay's anytime grid up to the real study's
end: the share of points inside the band, below it (reality better) and above it; and the best after
20 complete trials against the replay's quartiles of the same. The real studies' own wall clock is
given beside (the table's seconds were recorded on a busier machine), and how well the nearest
row stands in for a real configuration trained to the end (rank correlation and median ratio of
the real value to the row's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replay as rp  # noqa: E402  (beside this file)


def real_curve(table: rp.Table, trials: list[Any], workers: int,
               clock: str = "table") -> dict[str, Any]:
    """A finished real study on the table's clock: ``anytime`` [(t, best so far)] at each
    complete trial's end, ``after_20`` (the best of the first 20 complete trials), counts.
    ``clock="table"``: each trial one job of its rows' seconds on the worker free first (a
    trial that trains in one go); ``"wall"``: the trials' real end times, scaled so that the
    study spends the table's seconds of what it trained (trials that pause and resume, whose
    segments interleave: ``--scheduler promote``)."""
    import heapq

    import optuna

    done = [t for t in trials if t.state.is_finished()]
    done.sort(key=lambda t: t.datetime_start)
    slots = [0.0] * workers  # each trial starts on the worker free first, as in the replay
    events, pairs = [], []  # pairs: (real value, the answering row's) of full trials
    spent = 0.0
    for t in done:
        values = table.space.sample(optuna.trial.FixedTrial(t.params))
        row = table.snap(rp.locate(table.space, values))
        epochs = min(len(t.intermediate_values), table.epochs)
        charged = float(np.sum(table.costs[row, :epochs]))
        end = heapq.heappop(slots) + charged
        heapq.heappush(slots, end)
        spent += charged
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
        events.append((end, value, t))
        if value is not None and epochs == table.epochs and math.isfinite(table.final[row]):
            pairs.append((value, float(table.final[row])))
    starts = [t.datetime_start for t in done]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if ends else 0.0
    if clock == "wall" and wall > 0:
        first, scale = min(starts), spent / workers / wall
        events = [((t.datetime_complete - first).total_seconds() * scale, value, t)
                  for _, value, t in events]
    events.sort(key=lambda e: e[0])
    anytime, best, complete, after_20 = [], math.inf, 0, None
    for when, value, _ in events:
        if value is None:
            continue
        complete += 1
        if value < best:
            best = value
            if anytime and anytime[-1][0] == when:  # trials that ended together: one point
                anytime.pop()
            anytime.append((when, best))
        if complete == rp.PLAIN_TRIALS:
            after_20 = best
    answer = {"trials": len(pairs)}
    if len(pairs) >= 3:  # how well the nearest row stands in for a trained configuration
        real_v, row_v = zip(*pairs)
        answer.update(spearman=round(rp.lc_table.spearman(list(real_v), list(row_v)), 3),
                      median_ratio=round(float(np.median(np.array(real_v) / row_v)), 3))
    return {"anytime": anytime, "after_20": after_20, "trials": len(done), "complete": complete,
            "nearest_answer": answer,
            "end_s": events[-1][0] if events else 0.0,
            "wall_s": wall}


def against_band(curve: list[tuple[float, float]], band: dict[str, Any],
                 end: float) -> dict[str, Any]:
    """Where the real best-so-far sits on the replay's grid (the points up to ``end`` where the
    replay's upper quartile has a value)."""
    inside = below = above = 0
    for t, lo, hi in zip(band["t_s"], band["q25"], band["q75"]):
        if t > end or hi is None:  # (before 3 in 4 replayed runs returned anything)
            continue
        v = rp.value_at(curve, t)  # (an upper quartile with a value has a lower one)
        if v < lo:
            below += 1
        elif v > hi:
            above += 1
        else:
            inside += 1
    n = inside + below + above
    return {"points": n, "inside": round(inside / n, 3) if n else None,
            "below": round(below / n, 3) if n else None,
            "above": round(above / n, 3) if n else None}


def check(table_path: Path, replayed: dict[str, Any], storage: str,
          studies: dict[str, str]) -> dict[str, Any]:
    """Each real study against its strategy's replay (promotion on the scaled wall clock)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = rp.load_table(table_path).for_run(distinct=False)
    workers = int(replayed["workers"])
    out: dict[str, Any] = {"table": table.name, "workers": workers,
                           "replay_seeds": replayed["seeds"], "storage": storage,
                           "strategies": {}}
    for name, study in studies.items():
        if name not in replayed["strategies"]:
            raise SystemExit(f"error: the replay has no strategy {name!r}; replay it with "
                             f"--strategies {name}")
        entry = replayed["strategies"][name]
        trials = optuna.load_study(study_name=study, storage=storage).trials
        clock = "wall" if name.startswith("promote") else "table"
        real = real_curve(table, trials, workers, clock)
        result = {"study": study, "clock": clock,
                  **{k: real[k] for k in ("trials", "complete", "wall_s", "nearest_answer")},
                  "table_clock_s": round(real["end_s"], 1),
                  "real_after_20": real["after_20"], "replay_after_20": entry.get("after_20"),
                  "band": against_band(real["anytime"], entry["anytime"], real["end_s"]),
                  "anytime": [[round(t, 1), round(v, 6)] for t, v in real["anytime"]]}
        q = entry.get("after_20")
        if q and real["after_20"] is not None:
            result["after_20_inside_quartiles"] = q["q25"] <= real["after_20"] <= q["q75"]
        out["strategies"][name] = result
    return out


def figure(replayed: dict[str, Any], result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    w = result["workers"]
    for name, real in result["strategies"].items():
        a = replayed["strategies"][name]["anytime"]
        t = np.array(a["t_s"]) * w / 3600
        arr = {k: np.array([np.nan if v is None else v for v in a[k]]) for k in
               ("median", "q25", "q75")}
        line, = ax.plot(t, arr["median"], label=f"{name}: replay median, IQR")
        ax.fill_between(t, arr["q25"], arr["q75"], color=line.get_color(), alpha=0.15)
        if real["anytime"]:
            xs = [p[0] * w / 3600 for p in real["anytime"]] + [real["table_clock_s"] * w / 3600]
            ys = [p[1] for p in real["anytime"]] + [real["anytime"][-1][1]]
            ax.step(xs, ys, where="post", color=line.get_color(), ls="--", lw=2,
                    label=f"{name}: real study ({real['study']})")
    ax.set_xlabel(f"compute on the table's clock (CPU hours, {w} worker{'s' * (w > 1)})")
    ax.set_ylabel("best validation MSE so far")
    lowest = min([replayed["table"]["best_final"]] + [p[1] for r in result["strategies"].values()
                                                       for p in r["anytime"]])
    ax.set_ylim(lowest * 0.97, replayed["table"]["median_final"])
    ax.legend(fontsize=8)
    ax.set_title(f"{result['table']}: real studies against the replay "
                 f"({result['replay_seeds']} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--replay", required=True, type=Path, help="replay.py --json output")
    parser.add_argument("--storage", required=True, help="the real studies' store URL")
    parser.add_argument("--studies", required=True,
                        help="strategy=study pairs, e.g. tpe=reality-tpe,hpo-default=reality")
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        studies = dict(pair.split("=", 1) for pair in args.studies.split(",") if pair)
    except ValueError:
        print("error: --studies takes strategy=study pairs apart by commas", file=sys.stderr)
        return 2
    replayed = json.loads(args.replay.read_text())
    result = check(args.table, replayed, args.storage, studies)
    if args.figure:
        figure(replayed, result, args.figure)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, r in result["strategies"].items():
            print(f"{name}: {r['complete']} complete of {r['trials']}, best after 20 "
                  f"{r['real_after_20']} (replay quartiles {r['replay_after_20']}); band "
                  f"{r['band']}; nearest answer {r['nearest_answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
