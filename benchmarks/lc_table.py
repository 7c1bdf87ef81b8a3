"""Learning-curve tables: what ``hpo run --sampler sobol --pruner none --epochs E --record-test``
recorded, as one compact CSV with its card, and back.

    # the table's studies -> benchmarks/tables/NAME.csv + NAME.md (the card)
    python benchmarks/lc_table.py export --storage sqlite:///lc.db \\
        --studies lc-autoencoder-mmnist-small,lc-autoencoder-mmnist-small-seed100000,... \\
        --out benchmarks/tables/autoencoder-mmnist-small.csv
    # on another machine: the same studies rebuilt from the file, then `hpo run` continues them
    python benchmarks/lc_table.py import --table benchmarks/tables/autoencoder-mmnist-small.csv \\
        --storage sqlite:///lc.db
    # how predictive early points are, and the seed noise (RESULTS.md)
    python benchmarks/lc_table.py summary --table benchmarks/tables/autoencoder-mmnist-small.csv

One row per study and configuration index (the Sobol point, :mod:`hpo_vidpred.study.sobol`): the
outcome of its last attempt (a retry queued with ``enqueue_trial`` replaces the attempt it
retried; a retry of a stopped worker takes an index of its own, and the attempt it retried is a
row marked ``retried: ...`` that the replay and the summary leave out, and that an import
makes the retry's history again, so that it does not count towards ``--trials``), the
trained values, parameters, per epoch ``val_mse_E``, ``val_ssim_E``, ``val_mae_E``,
``val_psnr_E``, ``train_s_E`` (seconds of that epoch's optimizer steps) and ``val_s_E``, and the
test metrics of the best epoch's weights. A configuration whose attempt had not finished when the
table was exported is a row with state RUNNING (its parameters only): an import queues it to run
again, so nothing recorded is lost and the Sobol sequence continues where it was.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import re
import statistics
import sys
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

FORMAT = "hpo-vidpred-lc-table/1"
METRICS = ("mse", "ssim", "mae", "psnr")
TESTS = ("test_mse", "test_mae", "test_ssim", "test_psnr")


# --------------------------------------------------------------------------- export
def _final_attempts(trials: list) -> dict[int, Any]:
    """index -> the trial holding that configuration's last attempt (see the module docstring)."""
    index_of: dict[int, int] = {}
    final: dict[int, Any] = {}
    counter = 0
    for t in sorted(trials, key=lambda t: t.number):
        if "fixed_params" not in t.system_attrs:
            index_of[t.number] = counter
            counter += 1
        else:
            history = t.system_attrs.get("retry_history") or []
            origin = next((index_of[n] for n in reversed(history) if n in index_of), None)
            if origin is None:
                continue  # a queued trial that is no retry (a warm start): not a table row
            index_of[t.number] = origin
        final[index_of[t.number]] = t
    return final


def _row(study_name: str, seed: int, index: int, t: Any, names: list[str],
         epochs: int) -> dict[str, Any]:
    from hpo_vidpred.store.records import trained_params

    a = t.user_attrs
    state = t.state.name
    trained = trained_params(t)
    curves = a.get("curves") or {}
    row: dict[str, Any] = {
        "study": study_name, "seed": seed, "index": index, "number": t.number, "state": state,
        "reason": a.get("stop_reason") or a.get("fail_reason", ""),
        **{n: trained.get(n, "") for n in names},
        "n_params": a.get("n_params", ""), "epochs": a.get("epochs", ""),
        "value": "" if t.value is None else _g(t.value),
        **{k: _g(a.get(k)) for k in TESTS}, "step_ms": _g(a.get("step_ms")),
        "train_seed": (a.get("train_spec") or {}).get("seed", ""),
    }
    for e in range(1, epochs + 1):
        for m in METRICS:
            values = curves.get(f"val_{m}") or []
            row[f"val_{m}_{e}"] = _g(values[e - 1]) if e <= len(values) else ""
        for s in ("train_s", "val_s"):
            values = curves.get(s) or []
            row[f"{s}_{e}"] = f"{values[e - 1]:.3f}" if e <= len(values) else ""
    return row


RETRIED = "retried: its worker stopped before an epoch ended"


def _mark_retried(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """A failed attempt without an epoch whose configuration a later row trained again is the
    attempt of a stopped worker (a machine that went away), not an outcome of the configuration:
    its reason says so (:data:`RETRIED`), and the replay and the summary leave it out. (A retry
    of a stale trial takes a Sobol index of its own: the row after it holds the retry, and that
    index's own point is not in the table.)"""
    for i, r in enumerate(rows):
        if r["state"] != "FAIL" or r.get("val_mse_1"):
            continue
        again = next((later["index"] for later in rows[i + 1:]
                      if all(str(r[n]) == str(later[n]) for n in names)), None)
        if again is not None:
            r["reason"] = f"{RETRIED}; index {again} trained it again"
    return rows


def _g(value: Any) -> str:
    """A float as the shortest text that reads back as the same float ("" for none)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def export(storage_url: str, studies: list[str], out: Path, command: str = "") -> dict[str, Any]:
    """Write ``out``.csv and ``out``.md (``out`` with or without the .csv); returns the card."""
    out = out.with_suffix("") if out.suffix in (".csv", ".md") else out
    import optuna

    from hpo_vidpred.store import mask_url, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, create_tables=False)
    rows, cards = [], []
    names: list[str] = []
    epochs = 0
    baselines = None
    starts, ends = [], []
    recorded = {s.study_name for s in storage.get_all_studies()}
    if studies[0] not in recorded:
        raise SystemExit(f"error: no study {studies[0]} in {mask_url(storage_url)}; "
                         "name the main study first")
    for name in studies:
        if name not in recorded:  # a noise study not started yet: exported once it is
            print(f"note: no study {name} yet; left out", file=sys.stderr)
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        spec = attrs["spec"]
        space = attrs.get("sampling_space") or spec["search_space"]
        epochs = max(epochs, int(spec["train"]["epochs"]))
        dims = _dimensions(space)
        names += [n for n in dims if n not in names]
        trials = study.get_trials(deepcopy=False)
        mine = [_row(name, int(attrs.get("seed", 0)), index, t, dims,
                     int(spec["train"]["epochs"]))
                for index, t in sorted(_final_attempts(trials).items())]
        rows += _mark_retried(mine, dims)
        baselines = baselines or attrs.get("baselines")  # the same split in every study
        if attrs.get("recorded_since"):  # an imported table's first date
            starts.append(datetime.fromisoformat(attrs["recorded_since"]))
        for t in trials:  # (rows imported from an exported table have no dates)
            if t.datetime_start and t.datetime_complete:
                starts.append(t.datetime_start)
                ends.append(t.datetime_complete)
        cards.append({"name": name, "seed": int(attrs.get("seed", 0)), "study": spec["study"],
                      "search_space": spec["search_space"], "sampling_space": space,
                      "budget": attrs.get("budget"), "git_commit": attrs.get("git_commit"),
                      "package_version": attrs.get("package_version")})
    columns = list(dict.fromkeys(k for r in rows for k in r))
    seconds = sum(float(v) for r in rows for k, v in r.items()  # every row, imported ones too
                  if k.startswith(("train_s_", "val_s_")) and v not in (None, ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    counts = {}
    for r in rows:
        counts.setdefault(r["study"], {}).setdefault(r["state"], 0)
        counts[r["study"]][r["state"]] += 1
    card = {"format": FORMAT, "storage": mask_url(storage_url), "command": command,
            "studies": cards, "epochs": epochs, "counts": counts,
            "baselines": baselines,  # the trivial predictors, validation split
            "device": _device(), "first_start": min(starts).isoformat() if starts else None,
            "last_end": max(ends).isoformat() if ends else None,
            "trial_seconds": round(seconds), "exported": datetime.now().isoformat(
                timespec="seconds")}
    out.with_suffix(".md").write_text(_card_text(card, out.with_suffix(".csv").name))
    return card


def _dimensions(space: dict[str, Any]) -> list[str]:
    return _space(space).dimensions() if space else []


def _space(raw: dict[str, Any]):
    """A recorded (narrowed) search space as a :class:`SearchSpace`."""
    from hpo_vidpred.search_space import from_record

    return from_record(raw)


def _device() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"CPU {model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _card_text(card: dict[str, Any], csv_name: str) -> str:
    main = card["studies"][0]
    study = main["study"]
    lines = [
        f"# Learning-curve table: {study['arch']} on {study['data']} at budget "
        f"{study['budget']} ({csv_name})", "",
        "Every configuration trained to the end, without pruning or early stopping, drawn by a "
        "space-filling sampler (configuration i is point i of one scrambled Sobol sequence: "
        "the same on every machine). Rows, columns and how to continue the recording: "
        "`benchmarks/lc_table.py`.", "",
        f"- command: `{card['command'] or 'see the studies below'}`",
        "- studies: " + "; ".join(f"{s['name']} (--seed {s['seed']}): " + ", ".join(
            f"{n} {k.lower()}" for k, n in sorted(card["counts"].get(s["name"], {}).items()))
            for s in card["studies"]),
        f"- budget: {study['budget']} with --epochs {card['epochs']} ("
        + "; ".join((main.get("budget") or {}).get("changes", [])) + ")",
        f"- sampled space: `{json.dumps(main['sampling_space']['params'])}`, fixed "
        f"`{json.dumps(main['sampling_space']['fixed'])}`",
        f"- device: {card['device']}; each trial one worker process with one torch thread, "
        "two at a time, beside other work (seconds per epoch are wall clock on a shared "
        "machine)",
        f"- recorded: trials trained from {card['first_start']} to "
        f"{card['last_end']}; {card['trial_seconds']} seconds of training and validation in all "
        f"rows ({card['trial_seconds'] / 3600:.1f} CPU hours)",
        f"- code: hpo-vidpred {main.get('package_version')} at {main.get('git_commit')}",
        "", "```json", json.dumps(card, indent=1), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- import
def read_card(table: Path) -> dict[str, Any]:
    card = table.with_suffix(".md")
    if not card.is_file():
        raise SystemExit(f"error: no card {card} beside the table {table}; a table goes with the "
                         "card its export wrote (copy both, or export again)")
    text = card.read_text()
    match = re.search(r"```json\n(.*?)\n```", text, re.S)
    if not match:
        raise SystemExit(f"error: {table.with_suffix('.md')} holds no card (a ```json block)")
    return json.loads(match.group(1))


def read_rows(table: Path) -> list[dict[str, str]]:
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


class _Replay:
    """A trial stand-in for :meth:`SearchSpace.sample` that answers with a row's values and keeps
    the distributions they were offered from (what Optuna stores with each parameter)."""

    def __init__(self, row: dict[str, str]) -> None:
        from optuna import distributions as d

        self.row, self.d, self.distributions = row, d, {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        self.distributions[name] = self.d.FloatDistribution(low, high, log=log, step=step)
        return float(self.row[name])

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False,
                    step: int = 1) -> int:
        self.distributions[name] = self.d.IntDistribution(low, high, log=log, step=step or 1)
        return int(float(self.row[name]))

    def suggest_categorical(self, name: str, choices: list) -> Any:
        self.distributions[name] = self.d.CategoricalDistribution(choices)
        return next(c for c in choices if str(c) == self.row[name])


def import_table(table: Path, storage_url: str) -> dict[str, int]:
    """Rebuild the table's studies in ``storage_url`` (new studies only); rows per study."""
    import dataclasses

    import optuna
    import yaml
    from optuna.trial import TrialState, create_trial

    from hpo_vidpred.errors import HpoError
    from hpo_vidpred.study.plan import open_search_study, plan_study
    from hpo_vidpred.specs import StudySpec, to_dict
    from hpo_vidpred.store import open_storage, study_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    card, rows = read_card(table), read_rows(table)
    storage = open_storage(storage_url)
    done = {}
    for entry in card["studies"]:
        with tempfile.TemporaryDirectory() as tmp:
            space = Path(tmp) / "space.yaml"
            space.write_text(yaml.safe_dump(entry["search_space"], sort_keys=False))
            fields = {f.name for f in dataclasses.fields(StudySpec)}
            spec = StudySpec(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in entry["study"].items() if k in fields},
                             name=entry["name"], seed=entry["seed"], search_space=str(space))
            plan = plan_study(spec)
        with study_lock(storage, plan.name):
            study = open_search_study(plan, storage)
            if study.get_trials(deepcopy=False):
                raise HpoError(f"study {plan.name} already has trials in {storage_url}; import "
                               "into a new store")
            if card.get("baselines"):  # the trivial predictors on the validation split
                study.set_user_attr("baselines", card["baselines"])
            if card.get("first_start"):  # the recording began before this store
                study.set_user_attr("recorded_since", card["first_start"])
            mine = sorted((r for r in rows if r["study"] == entry["name"]),
                          key=lambda r: int(r["index"]))
            retried, number_of = _retried_by(mine), {}
            for r in mine:
                index = int(r["index"])
                number_of[index] = len(study.get_trials(deepcopy=False))
                _add(study, plan, r, card["epochs"], table.name, create_trial, TrialState,
                     to_dict, [number_of[i] for i in retried.get(index, ())])
        done[plan.name] = len(mine)
    return done


def _retried_by(rows: list[dict[str, Any]]) -> dict[int, list[int]]:
    """index -> the indices of the stopped workers' attempts that index trained again. Their
    trial numbers become its retry history, so that, as in the store they came from, those
    attempts do not count towards ``--trials``."""
    retried: dict[int, list[int]] = {}
    for r in rows:
        match = re.search(r"index (\d+) trained it again", r["reason"]) \
            if r["reason"].startswith(RETRIED) else None
        if match:
            retried.setdefault(int(match.group(1)), []).append(int(r["index"]))
    return retried


def _add(study, plan, r, epochs, source, create_trial, TrialState, to_dict,
         retry_history=()) -> None:
    import optuna

    replay = _Replay(r)
    values = plan.sample_space.sample(replay)
    model, train = plan.trial_specs(values, int(r["index"]))
    if r["train_seed"]:
        train = train.__class__(**{**to_dict(train), "seed": int(r["train_seed"])})
    curves = {}
    for m in METRICS:
        curves[f"val_{m}"] = [float(r[f"val_{m}_{e}"]) for e in range(1, epochs + 1)
                              if r.get(f"val_{m}_{e}")]
    for s in ("train_s", "val_s"):
        curves[s] = [float(r[f"{s}_{e}"]) for e in range(1, epochs + 1) if r.get(f"{s}_{e}")]
    attrs = {"model_spec": to_dict(model), "train_spec": to_dict(train), "curves": curves,
             "imported_from": source}
    mse = curves["val_mse"]
    if mse:
        best = min(range(len(mse)), key=mse.__getitem__)
        attrs.update(val_mse=mse[best], best_epoch=best + 1, epochs=len(mse),
                     val_ssim=curves["val_ssim"][best] if curves["val_ssim"] else None,
                     val_psnr=curves["val_psnr"][best] if curves["val_psnr"] else None,
                     train_seconds=sum(curves["train_s"]) + sum(curves["val_s"]))
    for k in ("n_params",):
        if r.get(k):
            attrs[k] = int(r[k])
    for k in TESTS + ("step_ms",):
        if r.get(k):
            attrs[k] = float(r[k])
    state = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED}.get(
        r["state"], TrialState.FAIL)
    if r["reason"]:
        attrs["stop_reason" if state != TrialState.FAIL else "fail_reason"] = r["reason"]
    trial = create_trial(state=state, value=float(r["value"]) if state == TrialState.COMPLETE
                         else None, params=values_of(replay), distributions=replay.distributions,
                         user_attrs=attrs, system_attrs={"retry_history": list(retry_history)}
                         if retry_history else None, intermediate_values={
                             e: v for e, v in enumerate(mse, start=1)})
    study.add_trial(trial)
    if r["state"] == "RUNNING":  # not finished when exported: run it again
        frozen = study.get_trials(deepcopy=True)[-1]
        frozen.user_attrs = {}
        with warnings.catch_warnings():  # experimental since Optuna 2.8, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)


def values_of(replay: _Replay) -> dict[str, Any]:
    out = {}
    for name, dist in replay.distributions.items():
        raw = replay.row[name]
        out[name] = (next(c for c in dist.choices if str(c) == raw)
                     if hasattr(dist, "choices") else
                     int(float(raw)) if type(dist).__name__ == "IntDistribution" else float(raw))
    return out


# --------------------------------------------------------------------------- summary
def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else math.nan


def summary(table: Path) -> dict[str, Any]:
    """Rank correlation of each epoch's validation MSE with the last epoch's (configurations of
    the first study that completed every epoch), and the seed noise: the same configurations
    trained with the other studies' seeds."""
    card, rows = read_card(table), read_rows(table)
    epochs = card["epochs"]
    main = card["studies"][0]["name"]

    def complete(r: dict[str, str]) -> bool:
        return r["state"] == "COMPLETE" and all(r.get(f"val_mse_{e}") for e in
                                                range(1, epochs + 1))

    rows = [r for r in rows if not r["reason"].startswith(RETRIED)]
    first = [r for r in rows if r["study"] == main and complete(r)]
    final = [float(r[f"val_mse_{epochs}"]) for r in first]
    out: dict[str, Any] = {
        "table": table.name, "epochs": epochs,
        "configurations": sum(1 for r in rows if r["study"] == main),
        "complete": len(first),
        "failed": sum(1 for r in rows if r["study"] == main and r["state"] == "FAIL"),
        "final_val_mse": {"best": min(final, default=math.nan),
                          "median": statistics.median(final) if final else math.nan},
        "spearman_to_final": [round(spearman([float(r[f"val_mse_{e}"]) for r in first], final),
                                    3) for e in range(1, epochs + 1)],
    }
    top = sorted(first, key=lambda r: float(r[f"val_mse_{epochs}"]))[:max(1, len(first) // 10)]
    out["top10pct_found_at_epoch"] = [
        round(sum(1 for r in top if _rank(first, r, e) < len(top) * 3) / len(top), 3)
        for e in range(1, epochs + 1)]
    seeds = {}
    for r in rows:
        if complete(r):
            seeds.setdefault(int(r["index"]), {})[r["study"]] = float(r[f"val_mse_{epochs}"])
    noise = []
    for other in [s["name"] for s in card["studies"][1:]]:  # each seed repeat against the main
        pairs = [(v[main], v[other]) for v in seeds.values() if main in v and other in v]
        if len(pairs) >= 3:
            spreads = [statistics.stdev(p) / statistics.mean(p) for p in pairs]
            noise.append({"study": other, "configurations": len(pairs),
                          "median_cv_final": round(statistics.median(spreads), 4),
                          "max_cv_final": round(max(spreads), 4),
                          "spearman_to_main": round(spearman(*zip(*pairs)), 3)})
    if noise:
        out["noise"] = noise
    return out


def _rank(rows: list[dict[str, str]], row: dict[str, str], epoch: int) -> int:
    value = float(row[f"val_mse_{epoch}"])
    return sum(1 for r in rows if float(r[f"val_mse_{epoch}"]) < value)


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="studies -> CSV + card")
    ex.add_argument("--storage", required=True)
    ex.add_argument("--studies", required=True, help="comma list, the main study first")
    ex.add_argument("--out", required=True, type=Path,
                    help="the table .csv (its card is written beside it as .md)")
    ex.add_argument("--recorded-with", default="", help="the recording command, for the card")
    im = sub.add_parser("import", help="CSV + card -> studies that hpo run continues")
    im.add_argument("--table", required=True, type=Path)
    im.add_argument("--storage", required=True)
    su = sub.add_parser("summary", help="rank correlations and seed noise, as JSON")
    su.add_argument("--table", required=True, type=Path)
    args = parser.parse_args(argv)
    from hpo_vidpred.errors import HpoError

    try:
        if args.command == "export":
            card = export(args.storage, [s for s in args.studies.split(",") if s], args.out,
                          args.recorded_with)
            print(json.dumps(card["counts"]))
        elif args.command == "import":
            print(json.dumps(import_table(args.table, args.storage)))
        else:
            print(json.dumps(summary(args.table), indent=1))
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
