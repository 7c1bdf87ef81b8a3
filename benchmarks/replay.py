"""Search strategies replayed on a recorded learning-curve table, with simulated time: how much
compute each needs to find what plain Optuna finds, over many paired seeds.

    python benchmarks/replay.py --table benchmarks/tables/autoencoder-mmnist-small.csv \\
        --seeds 50 --workers 1 --json                 # figures for RESULTS.md (and --workers 4)
    python benchmarks/replay.py --table T --seeds 50 --workers 4 --figure anytime-w4.png

The table (benchmarks/lc_table.py) holds configurations drawn by a space-filling sampler, each
trained to the end with its validation curve and the seconds of each epoch. A strategy proposes
configurations; a proposal is answered by the nearest recorded configuration (each parameter as
its quantile in the distribution it was offered from, the one :mod:`hpo_vidpred.study.sobol` maps
points with: numeric distances in [0, 1], a different categorical value counts 1); with ``--snap
distinct``, by the nearest one the run has not used yet, so that a strategy whose proposals
converge is not answered by the same recorded curve again (a real study would train a new,
nearby configuration); ``repeated_rows_share`` says how often that happens with ``nearest``.
Training a configuration for an epoch costs that epoch's recorded seconds (optimizer steps and
validation) of simulated time on one of W workers, and reports that epoch's recorded validation
MSE; a configuration that diverged in the recording diverges at the same epoch. Each strategy runs
through the code it would run for real:

- Optuna strategies through ``hpo run``'s own pieces: the plan's (budget-narrowed) search space,
  :func:`hpo_vidpred.study.strategy.make_sampler` / ``make_pruner``, the trivial-predictor
  :class:`~hpo_vidpred.study.goals.Guard` and the training loop's per-epoch decision
  (``hpo_vidpred.train._after_epoch``: report, prune, early stopping). ``random`` (RandomSampler,
  no pruning), ``tpe`` (plain ``TPESampler(seed)`` as a user writes it, no pruning),
  ``tpe-median`` (plain TPE + ``--pruner median``), ``tpe-hyperband`` (multivariate TPE +
  Hyperband + the guard) and ``hpo-default`` (whatever ``hpo run`` does without flags).
- From outside Optuna, each with its own scheduler object fed the same events: ``asha`` and
  ``bohb`` (syne-tune 0.16: asynchronous successive halving with random or KDE proposals, reduction
  factor 3, epochs as the resource) and ``dehb`` (DEHB 0.1.2's ask/tell, fidelities 1..E epochs,
  each evaluation trained from scratch to its fidelity). Install them with ``make replay-deps``.

A strategy's result at a simulated time is the configuration it would return then (Optuna: the
best complete trial; the multi-fidelity methods: the best at the highest number of epochs any
configuration has reached), judged by that configuration's recorded final value (its best
validation MSE over all E epochs), never by the partial curve it was stopped on. Targets: the
median over seeds of plain TPE's result after its 20th complete trial (``plain_tpe_20``), and the
final value of the table's ceil(2% n)-th best configuration (``top2pct``). Per strategy:
``compute_to_target`` (median over seeds of simulated time x W, in the table's seconds; seeds that
never reach it count at the horizon), ``reached``, and ``speedup_vs_plain_tpe``: the ratio of the
medians, plain TPE's over the strategy's, with a 95% interval from a paired bootstrap over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import heapq
import json
import math
import sys
import tempfile
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lc_table  # noqa: E402  (the table's reader, beside this file)

OPTUNA_STRATEGIES = {  # name -> (sampler, pruner) of the fifo scheduler
    "random": ("random", "none"),
    "tpe": ("tpe-plain", "none"),
    "tpe-median": ("tpe-plain", "median"),
    "tpe-hyperband": ("tpe", "hyperband"),
}
OURS = ("promote", "hpo-default")  # --scheduler promote; whatever hpo run does without flags
EXTERNAL = ("asha", "bohb", "dehb")
STRATEGIES = (*OPTUNA_STRATEGIES, *OURS, *EXTERNAL)
PLAIN = "tpe"
PLAIN_TRIALS = 20


# --------------------------------------------------------------------------- the table
@dataclass
class Table:
    """The main study of a learning-curve table, as arrays (configurations in index order)."""

    name: str
    space: Any  # hpo_vidpred.search_space.SearchSpace (the narrowed space that was sampled)
    epochs: int
    dims: list[str]
    values: list[dict[str, Any]]
    units: np.ndarray  # (n, d) each value's quantile in its distribution
    categorical: np.ndarray  # (d,) bool
    curves: np.ndarray  # (n, E) validation MSE per epoch; NaN from a divergence on
    costs: np.ndarray  # (n, E) seconds per epoch
    diverged_at: np.ndarray  # (n,) the epoch that diverged (E + 1: none)
    final: np.ndarray  # (n,) best validation MSE over the E epochs; inf if it diverged
    baselines: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    distinct: bool = False  # --snap distinct: a new proposal gets a row this run has not used
    used: set[int] = field(default_factory=set)  # rows this run's proposals were answered with
    memo: dict[tuple, int] = field(default_factory=dict)  # a proposal's values -> its row

    def for_run(self, distinct: bool) -> Table:
        """This table for one run of one strategy (its own record of the rows it used)."""
        return dataclasses.replace(self, distinct=distinct, used=set(), memo={})

    def snap(self, values: dict[str, Any]) -> int:
        """The recorded configuration nearest to ``values`` (a proposal of this space); with
        ``distinct``, the nearest one no earlier proposal of this run was answered with (while
        any is left). A proposal with the values of an earlier one gets its row again (DEHB
        evaluating a configuration at a higher fidelity)."""
        key = tuple(sorted((str(k), repr(v)) for k, v in values.items() if isinstance(k, str)))
        if key in self.memo:
            return self.memo[key]
        u = np.array([_unit(values, name, self) for name in self.dims])
        numeric = np.where(self.categorical, 0.0, (self.units - u) ** 2)
        mismatch = np.where(self.categorical, self.units != u, False)
        distance = numeric.sum(1) + mismatch.sum(1)
        if self.distinct and len(self.used) < len(distance):
            distance[list(self.used)] = np.inf
        row = int(np.argmin(distance))
        self.used.add(row)
        self.memo[key] = row
        return row

    def full_cost(self) -> np.ndarray:
        return np.nansum(self.costs, axis=1)


def _unit(values: dict[str, Any], name: str, table: Table) -> float:
    dist = values.get(("__dist__", name))
    if dist is None:
        return 0.5
    from hpo_vidpred.study.sobol import to_unit

    return to_unit(values[name], dist)


class _Offered:
    """A trial stand-in that answers with given values and keeps the distributions offered."""

    def __init__(self, values: dict[str, Any]) -> None:
        from hpo_vidpred.study.sobol import UnitTrial

        self._values, self._unit = values, UnitTrial({})

    def _take(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        getattr(self._unit, method)(name, *args, **kwargs)
        return self._values[name]

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._take(name, "suggest_float", *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._take(name, "suggest_int", *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._take(name, "suggest_categorical", choices)

    def located(self) -> dict[Any, Any]:
        """The values with their distributions, as :meth:`Table.snap` reads them."""
        out: dict[Any, Any] = dict(self._values)
        out.update({("__dist__", k): d for k, d in self._unit.distributions.items()})
        return out


def locate(space: Any, values: dict[str, Any]) -> dict[Any, Any]:
    """``values`` (a proposal) with the distribution each was drawn from, for snapping."""
    offered = _Offered(values)
    space.sample(offered)
    return offered.located()


def load_table(path: Path) -> Table:
    """The table's first (main) study: complete configurations and the ones that diverged."""
    card = lc_table.read_card(path)
    main = card["studies"][0]
    space = lc_table._space(main["sampling_space"])
    dims = space.dimensions()
    epochs = int(card["epochs"])
    rows = [r for r in lc_table.read_rows(path)  # (not the attempts of stopped workers)
            if r["study"] == main["name"] and r["state"] in ("COMPLETE", "FAIL")
            and not r["reason"].startswith(lc_table.RETRIED)]
    rows.sort(key=lambda r: int(r["index"]))
    values, units, curves, costs, diverged = [], [], [], [], []
    for r in rows:
        offered = _Offered(_typed(r, space))
        space.sample(offered)
        v = offered.located()
        values.append({k: x for k, x in v.items() if isinstance(k, str)})
        units.append([_unit(v, d, None) if d in offered._unit.distributions else 0.5
                      for d in dims])
        curve = [float(r[f"val_mse_{e}"]) if r.get(f"val_mse_{e}") else math.nan
                 for e in range(1, epochs + 1)]
        cost = [float(r[f"train_s_{e}"]) + float(r[f"val_s_{e}"]) if r.get(f"train_s_{e}")
                else math.nan for e in range(1, epochs + 1)]
        done = sum(1 for c in curve if math.isfinite(c))
        if done < epochs:  # diverged at epoch done + 1: it costs a mean epoch of its own
            mean = np.nanmean(cost) if done else math.nan
            cost = cost[:done] + [mean] * (epochs - done)
        curves.append(curve)
        costs.append(cost)
        diverged.append(epochs + 1 if done == epochs else done + 1)
    costs_a = np.array(costs)
    costs_a = np.where(np.isnan(costs_a), np.nanmedian(costs_a), costs_a)
    curves_a = np.array(curves)
    finished = np.array(diverged) > epochs
    final = np.where(finished, np.nanmin(np.where(np.isnan(curves_a), np.inf, curves_a), axis=1),
                     np.inf)
    categorical = np.array([space.param_of(d) is not None and space.param_of(d).type ==
                            "categorical" for d in dims])
    return Table(name=path.stem, space=space, epochs=epochs, dims=dims, values=values,
                 units=np.array(units), categorical=categorical, curves=curves_a, costs=costs_a,
                 diverged_at=np.array(diverged), final=final,
                 baselines=card.get("baselines") or {}, card=card)


def _typed(row: dict[str, str], space: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in space.dimensions():
        if row.get(name, "") == "":
            continue
        p = space.param_of(name)
        raw = row[name]
        if p.type == "categorical":
            out[name] = next(c for c in p.choices if str(c) == raw)
        elif p.type == "int":
            out[name] = int(float(raw))
        else:
            out[name] = float(raw)
    return out


# --------------------------------------------------------------------------- simulation
@dataclass
class Job:
    """Train ``config`` from epoch ``start`` (0: from scratch) to ``stop``."""

    handle: Any
    config: int
    start: int
    stop: int


class Incumbent:
    """What a multi-fidelity method returns: the best configuration at the highest number of
    epochs any configuration has reached."""

    def __init__(self) -> None:
        self.level, self.best, self.config = 0, math.inf, None

    def add(self, config: int, level: int, value: float) -> None:
        if level > self.level:
            self.level, self.best, self.config = level, math.inf, None
        if level == self.level and value < self.best:
            self.best, self.config = value, config


def simulate(strategy: Any, table: Table, workers: int, horizon: float,
             until: float | None = None) -> dict[str, Any]:
    """Run ``strategy`` on ``table`` with ``workers`` parallel workers until ``horizon``
    simulated seconds (or until the returned configuration's final value is at most ``until``);
    returns the anytime curve ``[(t, final value of the returned configuration)]`` and counts."""
    heap: list[tuple[float, int, int, Job, int]] = []
    seq = 0
    idle: list[int] = []
    anytime: list[tuple[float, float]] = []
    epochs_run = 0

    def launch(worker: int, now: float) -> None:
        nonlocal seq
        job = strategy.next_job(now)
        if job is None:
            idle.append(worker)
            return
        epoch = job.start + 1
        heapq.heappush(heap, (now + table.costs[job.config, epoch - 1], seq, worker, job, epoch))
        seq += 1

    for w in range(workers):
        launch(w, 0.0)
    last = None
    while heap:
        now, _, worker, job, epoch = heapq.heappop(heap)
        if now > horizon:
            break
        epochs_run += 1
        diverged = epoch >= table.diverged_at[job.config]
        value = None if diverged else float(table.curves[job.config, epoch - 1])
        go_on = strategy.on_epoch(job, epoch, value, now)
        if go_on and not diverged and epoch < job.stop:
            heapq.heappush(heap, (now + table.costs[job.config, epoch], seq, worker, job,
                                  epoch + 1))
            seq += 1
        else:
            launch(worker, now)
            while idle and heap:  # something may have become available
                launch(idle.pop(), now)
        config = strategy.incumbent()
        if config is not None and config != last:
            anytime.append((now, float(table.final[config])))
            last = config
            if until is not None and anytime[-1][1] <= until:
                break
    return {"anytime": anytime, "epochs": epochs_run}


# --------------------------------------------------------------------------- strategies
def _plan(table: Table, sampler: str, pruner: str, seed: int, scheduler: str = "fifo") -> Any:
    """A StudyPlan with the table's space and training length (enough for the sampler and
    pruner factories, the guard and the per-epoch decision)."""
    from hpo_vidpred.study.plan import StudyPlan
    from hpo_vidpred.specs import DataSpec, ModelSpec, StudySpec, TrainSpec

    study = table.card["studies"][0]["study"]
    # the space's fixed training values (patience, min_delta: the early stopping it asks for)
    _, train = table.space.apply(table.space.fixed, ModelSpec(), TrainSpec(epochs=table.epochs))
    spec = StudySpec(arch=study.get("arch", "autoencoder"), data=study.get("data", "mmnist"),
                     budget=study.get("budget", "small"), sampler=sampler, pruner=pruner,
                     scheduler=scheduler, seed=seed, epochs=table.epochs)
    return StudyPlan(spec=spec, space=table.space, data=DataSpec(), model=ModelSpec(),
                     train=train, raw=(DataSpec(), ModelSpec(), train), sample_space=table.space,
                     scheduler=scheduler)


class OptunaSearch:
    """A study driven like ``hpo run`` drives it: ask, sample the plan's space, train epoch by
    epoch with the training loop's own decision (report, prune, early stopping), tell."""

    def __init__(self, table: Table, sampler: str, pruner: str, seed: int) -> None:
        import optuna
        import torch

        from hpo_vidpred.study.strategy import make_pruner, make_sampler

        self.table, self.pruner = table, pruner
        self.plan = _plan(table, sampler, pruner, seed)
        # named: Optuna's Hyperband assigns a trial's bracket from a hash of the study's name
        # and the trial's number (an unnamed study gets a random name: seeds unpaired)
        self.study = optuna.create_study(study_name=f"replay-{seed}",
                                         sampler=make_sampler(self.plan, seed),
                                         pruner=make_pruner(self.plan))
        self.model = torch.nn.Linear(1, 1)  # _after_epoch keeps "the best weights" of one
        self.best, self.config = math.inf, None
        self.completed: list[tuple[float, int]] = []  # (time, config returned then)

    def next_job(self, now: float) -> Job:
        from hpo_vidpred.study.goals import Guard
        from hpo_vidpred.train import _Run

        trial = self.study.ask()
        values = self.plan.sample_space.sample(trial)
        config = self.table.snap(locate(self.plan.sample_space, values))
        guard = Guard(trial, self.table.baselines, self.table.epochs, multi=False,
                      prune=self.pruner != "none")
        return Job(handle=(trial, guard, _Run()), config=config, start=0, stop=self.table.epochs)

    def on_epoch(self, job: Job, epoch: int, value: float | None, now: float) -> bool:
        from optuna.trial import TrialState

        from hpo_vidpred.train import _after_epoch

        trial, guard, state = job.handle
        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        reason = _after_epoch(state, epoch, {"mse": value}, self.model, self.plan.train, guard)
        if reason == "completed" and epoch < job.stop:
            return True
        if reason == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            return False
        self.study.tell(trial, state.best_val)  # completed or early-stopped: COMPLETE
        if state.best_val < self.best:
            self.best, self.config = state.best_val, job.config
        self.completed.append((now, self.config))
        return False

    def incumbent(self) -> int | None:
        return self.config


class PromoteSearch:
    """``hpo run --scheduler promote`` on an in-memory study: the same scheduler, sampler and
    segment steps (:mod:`hpo_vidpred.study.segments`) its workers take, without a time limit on
    the number of configurations."""

    def __init__(self, table: Table, sampler: str, seed: int, **options: float) -> None:
        import optuna

        from hpo_vidpred.study.goals import trivial_floor
        from hpo_vidpred.study.rung_tpe import RungTPESampler
        from hpo_vidpred.study.strategy import make_sampler, make_scheduler
        from hpo_vidpred.specs import StudySpec

        self.table = table
        # the guard and the curve rule on, as hpo run has them (--pruner none turns them off)
        self.plan = _plan(table, sampler, StudySpec().pruner, seed, scheduler="promote")
        self.scheduler = make_scheduler(self.plan, **options)
        sampler_ = make_sampler(self.plan, seed)
        if isinstance(sampler_, RungTPESampler):  # on this scheduler's rungs (options may differ)
            sampler_ = RungTPESampler(sampler_._tpe, self.scheduler.rungs, sampler_._min)
        self.study = optuna.create_study(study_name=f"replay-{seed}", sampler=sampler_)
        self.floor = trivial_floor(table.baselines)
        self.config_of: dict[int, int] = {}  # trial number -> table row

    def next_job(self, now: float) -> Job | None:
        from hpo_vidpred.study import segments

        chosen: dict[str, Any] = {}

        def sample(trial: Any) -> None:
            chosen.update(self.plan.sample_space.sample(trial))
        segment = segments.begin(self.study, self.scheduler, sample)
        if not isinstance(segment, segments.Segment):
            return None  # wait (or finish: nothing left)
        if segment.start == 0:
            self.config_of[segment.number] = self.table.snap(locate(self.plan.sample_space,
                                                                    chosen))
        return Job(handle=segment, config=self.config_of[segment.number], start=segment.start,
                   stop=segment.until)

    def on_epoch(self, job: Job, epoch: int, value: float | None, now: float) -> bool:
        from hpo_vidpred.study import segments

        if value is None:
            segments.end(self.study, self.scheduler, job.handle, "failed")
            return False
        how = segments.report(self.study, self.scheduler, job.handle, epoch, value, self.floor)
        if how == "go":
            return True
        segments.end(self.study, self.scheduler, job.handle,
                     "stopped" if how == "stop" else "paused")
        return False

    def incumbent(self) -> int | None:
        from hpo_vidpred.study import segments

        number = segments.leader(self.scheduler, segments.configs(self.study))
        return None if number is None else self.config_of[number]


def _units_of(table: Table, config: dict[str, Any]) -> dict[str, Any]:
    """A point from an outside optimizer (numeric dimensions in [0, 1], categorical ones as
    their value) as a configuration of the table's space."""
    from hpo_vidpred.study.sobol import UnitTrial

    units = {}
    for name in table.dims:
        p = table.space.param_of(name)
        if p.type == "categorical":
            units[name] = (p.choices.index(_same(config[name], p.choices)) + 0.5) / len(
                p.choices)
        else:
            units[name] = float(config[name])
    trial = UnitTrial(units)
    table.space.sample(trial)
    return trial.params


def _same(value: Any, choices: tuple) -> Any:
    return next(c for c in choices if str(c) == str(value))


class SyneTuneSearch:
    """syne-tune's ASHA or BOHB scheduler (stopping variant, reduction factor 3, epochs as the
    resource), fed one result per epoch as its Tuner would."""

    def __init__(self, table: Table, kind: str, seed: int) -> None:
        from syne_tune.config_space import choice, uniform
        from syne_tune.optimizer.baselines import ASHA, BOHB

        space = {}
        for name in table.dims:
            p = table.space.param_of(name)
            space[name] = (choice([str(c) for c in p.choices]) if p.type == "categorical"
                           else uniform(0.0, 1.0))
        cls = {"asha": ASHA, "bohb": BOHB}[kind]
        self.scheduler = cls(space, metric="val_mse", time_attr="epoch", max_t=table.epochs,
                             random_seed=seed)
        self.table, self.count, self.best = table, 0, Incumbent()

    def next_job(self, now: float) -> Job | None:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        config = self.table.snap(locate(self.table.space, _units_of(self.table,
                                                                    suggestion.config)))
        trial = Trial(trial_id=self.count, config=suggestion.config,
                      creation_time=datetime.datetime.now())
        self.count += 1
        self.scheduler.on_trial_add(trial)
        return Job(handle=trial, config=config, start=0, stop=self.table.epochs)

    def on_epoch(self, job: Job, epoch: int, value: float | None, now: float) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        if value is None:
            self.scheduler.on_trial_error(job.handle)
            return False
        result = {"val_mse": value, "epoch": epoch}
        self.best.add(job.config, epoch, value)
        decision = self.scheduler.on_trial_result(job.handle, result)
        if epoch >= job.stop:
            self.scheduler.on_trial_complete(job.handle, result)
            return False
        return decision == SchedulerDecision.CONTINUE

    def incumbent(self) -> int | None:
        return self.best.config


class DEHBSearch:
    """DEHB's ask/tell: each evaluation trains a configuration from scratch to its fidelity
    (epochs 1..E); its value is the validation MSE at that epoch."""

    def __init__(self, table: Table, seed: int) -> None:
        import ConfigSpace as CS
        from dehb import DEHB

        cs = CS.ConfigurationSpace(seed=seed)
        for name in table.dims:
            p = table.space.param_of(name)
            cs.add(CS.CategoricalHyperparameter(name, [str(c) for c in p.choices])
                   if p.type == "categorical" else CS.UniformFloatHyperparameter(name, 0.0, 1.0))
        self.tmp = tempfile.TemporaryDirectory()
        # n_workers=1: through ask/tell DEHB keeps several evaluations pending by itself (the
        # W simulated workers ask before they tell); more would start a Dask cluster per seed
        # that only its own run() uses
        self.dehb = DEHB(cs=cs, dimensions=len(table.dims), min_fidelity=1,
                         max_fidelity=table.epochs, eta=3, n_workers=1, seed=seed,
                         output_path=self.tmp.name, log_level="ERROR")
        self.table, self.best = table, Incumbent()

    def next_job(self, now: float) -> Job:
        job = self.dehb.ask()
        fidelity = min(self.table.epochs, max(1, int(round(float(job["fidelity"])))))
        config = self.table.snap(locate(self.table.space, _units_of(
            self.table, dict(job["config"]))))
        return Job(handle=(job, fidelity), config=config, start=0, stop=fidelity)

    def on_epoch(self, job: Job, epoch: int, value: float | None, now: float) -> bool:
        handle, fidelity = job.handle
        if value is not None and epoch < fidelity:
            return True
        cost = float(np.sum(self.table.costs[job.config, :epoch]))
        fitness = value if value is not None else 1e9
        self.dehb.tell(handle, {"fitness": fitness, "cost": cost})
        if value is not None:
            self.best.add(job.config, epoch, value)
        return False

    def incumbent(self) -> int | None:
        return self.best.config


def make_strategy(name: str, table: Table, seed: int, workers: int) -> Any:
    from hpo_vidpred.specs import StudySpec

    from hpo_vidpred.study.strategy import resolve_scheduler

    default = StudySpec()  # what `hpo run` does without flags
    if name == "hpo-default":
        return (PromoteSearch(table, default.sampler, seed)
                if resolve_scheduler(default.scheduler, 1) == "promote"
                else OptunaSearch(table, default.sampler, default.pruner, seed))
    if name == "promote" or name.startswith("promote:"):  # promote:eta=2:first=1:margin=0.1
        # options apart by ':' (a comma separates strategies in --strategies)
        options = dict(kv.split("=") for kv in name.partition(":")[2].split(":") if kv)
        return PromoteSearch(table, default.sampler, seed, **{
            k: (int(v) if k == "first" else float(v)) for k, v in options.items()})
    if name in OPTUNA_STRATEGIES:
        sampler, pruner = OPTUNA_STRATEGIES[name]
        return OptunaSearch(table, sampler, pruner, seed)
    if name in ("asha", "bohb"):
        return SyneTuneSearch(table, name, seed)
    if name == "dehb":
        return DEHBSearch(table, seed)
    raise SystemExit(f"error: unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


# --------------------------------------------------------------------------- one run, many
def _quiet() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass


def run_one(table_path: str, name: str, seed: int, workers: int, horizon: float,
            snap: str = "nearest") -> dict[str, Any]:
    """One strategy, one seed: the anytime curve, and for plain TPE the result after its 20th
    complete trial."""
    _quiet()
    table = _TABLES.get(table_path) or _TABLES.setdefault(table_path, load_table(
        Path(table_path)))
    table = table.for_run(distinct=snap == "distinct")
    strategy = make_strategy(name, table, seed, workers)
    out = simulate(strategy, table, workers, horizon)
    out["proposals"], out["rows"] = len(table.memo), len(table.used)  # distinct ones
    if isinstance(strategy, OptunaSearch) and len(strategy.completed) >= PLAIN_TRIALS:
        t, config = strategy.completed[PLAIN_TRIALS - 1]
        out["after_20"] = float(table.final[config]) if config is not None else math.inf
        out["time_20"] = t
    return out


_TABLES: dict[str, Table] = {}


def first_time(anytime: list[tuple[float, float]], target: float) -> float:
    return next((t for t, v in anytime if v <= target), math.inf)


def value_at(anytime: list[tuple[float, float]], t: float) -> float:
    value = math.inf
    for when, v in anytime:
        if when > t:
            break
        value = v
    return value


def speedup(plain: np.ndarray, other: np.ndarray, horizon: float, rng: np.random.Generator,
            n_boot: int = 2000) -> dict[str, Any]:
    """Ratio of median times (plain TPE's over the strategy's), unreached seeds at the horizon,
    with a 95% paired-bootstrap interval over seeds."""
    a, b = np.minimum(plain, horizon), np.minimum(other, horizon)

    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.median(x) / max(np.median(y), 1e-12))
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    boots = [ratio(a[i], b[i]) for i in idx]
    return {"median": round(ratio(a, b), 3),
            "ci95": [round(float(np.percentile(boots, 2.5)), 3),
                     round(float(np.percentile(boots, 97.5)), 3)]}


def prefix_table(path: Path, first: int, folder: Path) -> Path:
    """A copy of the table (and its card) in ``folder`` whose main study keeps only its first
    ``first`` configurations (indices below it): the table a shorter recording would have
    given, to see how much a result moves with the table's rows and not only with the seeds."""
    import csv
    import shutil

    main = lc_table.read_card(path)["studies"][0]["name"]
    rows = [r for r in lc_table.read_rows(path)
            if r["study"] != main or int(r["index"]) < first]
    out = folder / path.name
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(path.with_suffix(".md"), out.with_suffix(".md"))
    return out


def replay(table_path: Path, strategies: list[str], seeds: int, workers: int,
           budget_trials: float, jobs: int, progress: Callable[[str], None] = lambda s: None,
           snap: str = "nearest") -> dict[str, Any]:
    """Every strategy for ``seeds`` paired seeds; the JSON object of the module docstring."""
    table = load_table(table_path)
    mean_full = float(np.mean(table.full_cost()))
    horizon = budget_trials * mean_full / workers
    finite = np.sort(table.final[np.isfinite(table.final)])
    k = max(1, math.ceil(0.02 * len(table.final)))
    started = time.time()
    runs: dict[str, list[dict[str, Any]]] = {name: [None] * seeds for name in strategies}
    tasks = [(name, s) for s in range(seeds) for name in strategies]
    if jobs <= 1:
        for i, (name, s) in enumerate(tasks, start=1):
            runs[name][s] = run_one(str(table_path), name, s, workers, horizon, snap)
    else:
        with futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(run_one, str(table_path), name, s, workers, horizon, snap):
                       (name, s) for name, s in tasks}
            for i, done in enumerate(futures.as_completed(pending), start=1):
                name, s = pending[done]
                runs[name][s] = done.result()
                if i % max(1, len(tasks) // 20) == 0:
                    progress(f"{i}/{len(tasks)} runs, {time.time() - started:.0f} s")
    plain = runs.get(PLAIN) or [run_one(str(table_path), PLAIN, s, workers, horizon, snap)
                                for s in range(seeds)]
    after = [r.get("after_20", math.inf) for r in plain]
    targets = {"plain_tpe_20": float(np.median(after)), "top2pct": float(finite[k - 1])}
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "table": {"name": table.name, "configurations": len(table.final),
                  "diverged": int(np.sum(~np.isfinite(table.final))), "points": table.epochs,
                  "best_final": float(finite[0]), "median_final": float(np.median(finite)),
                  "mean_full_cost_s": round(mean_full, 1),
                  "snap_loo_spearman": round(snap_loo(table), 3)},
        "seeds": seeds, "workers": workers, "snap": snap,
        "horizon_s": round(horizon, 1), "horizon_full_trials": budget_trials,
        "target": targets["plain_tpe_20"], "targets": targets,
        "plain_tpe_20_reached_in_seeds": int(np.sum(np.isfinite(after))),
        "strategies": {}, "seconds": round(time.time() - started, 1)}
    times = {name: {t: np.array([first_time(r["anytime"], v) for r in runs[name]])
                    for t, v in targets.items()} for name in strategies}
    grid = np.linspace(0, horizon, 41)
    for name in strategies:
        entry: dict[str, Any] = {"seeds": seeds}
        for t in targets:
            ts = times[name][t]
            key = "" if t == "plain_tpe_20" else f"_{t}"
            entry[f"reached{key}"] = int(np.sum(np.isfinite(ts)))
            med = float(np.median(np.minimum(ts, horizon)))
            entry[f"compute_to_target{key}"] = round(med * workers, 1) if np.sum(
                np.isfinite(ts)) * 2 > len(ts) else None
            if PLAIN in times:
                entry[f"speedup_vs_plain_tpe{key}"] = speedup(times[PLAIN][t], ts, horizon, rng)
        curves = np.array([[value_at(r["anytime"], g) for g in grid] for r in runs[name]])
        entry["anytime"] = {"t_s": [round(float(g), 1) for g in grid],
                            "median": _finite(np.median(curves, axis=0)),
                            "q25": _finite(np.percentile(curves, 25, axis=0)),
                            "q75": _finite(np.percentile(curves, 75, axis=0))}
        entry["epochs_per_run"] = round(float(np.mean([r["epochs"] for r in runs[name]])), 1)
        after_20 = [r["after_20"] for r in runs[name] if "after_20" in r]
        if after_20:  # the returned configuration's final value after 20 complete trials
            entry["after_20"] = {"seeds": len(after_20), **{
                q: round(float(np.percentile(after_20, p)), 6)
                for q, p in (("q25", 25), ("median", 50), ("q75", 75))}}
        # how often a new proposal was answered with a row the run had already used
        entry["repeated_rows_share"] = round(1 - float(np.sum([r["rows"] for r in runs[name]]))
                                             / max(1, np.sum([r["proposals"]
                                                              for r in runs[name]])), 3)
        out["strategies"][name] = entry
    out["seconds"] = round(time.time() - started, 1)
    return out


def _finite(values: np.ndarray) -> list[float | None]:
    return [round(float(v), 6) if math.isfinite(v) else None for v in values]


def snap_loo(table: Table) -> float:
    """Leave-one-out check of the nearest-neighbour answer: the rank correlation between each
    finished configuration's final value and that of its nearest other configuration (how well
    snapping ranks a configuration that was not recorded)."""
    ok = np.flatnonzero(np.isfinite(table.final))
    if len(ok) < 4:
        return math.nan
    predicted = []
    for i in ok:
        numeric = np.where(table.categorical, 0.0, (table.units - table.units[i]) ** 2)
        mismatch = np.where(table.categorical, table.units != table.units[i], False)
        d = numeric.sum(1) + mismatch.sum(1)
        d[i] = np.inf
        d[~np.isfinite(table.final)] = np.inf
        predicted.append(table.final[int(np.argmin(d))])
    return lc_table.spearman(list(table.final[ok]), predicted)


def figure(result: dict[str, Any], path: Path) -> None:
    """The anytime figure: median and interquartile band of each strategy's returned
    configuration's final validation MSE against simulated time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, entry in result["strategies"].items():
        a = entry["anytime"]
        t = np.array(a["t_s"]) * result["workers"] / 3600

        def arr(key: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in a[key]])
        line, = ax.plot(t, arr("median"), label=name, lw=2.2 if name == "hpo-default" else 1.4)
        ax.fill_between(t, arr("q25"), arr("q75"), color=line.get_color(), alpha=0.12)
    ax.axhline(result["target"], color="k", ls=":", lw=1, label="target (plain TPE, 20 trials)")
    ax.set_xlabel(f"simulated compute (CPU hours, {result['workers']} worker"
                  f"{'s' if result['workers'] > 1 else ''})")
    ax.set_ylabel("final val MSE of the returned configuration")
    ax.set_title(f"{result['table']['name']}: median and IQR over {result['seeds']} seeds")
    finite = [v for e in result["strategies"].values() for v in e["anytime"]["q75"]
              if v is not None]
    if finite:
        ax.set_ylim(result["table"]["best_final"] * 0.98, np.percentile(finite, 90))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--strategies", help="comma-separated; default: all, except bohb with "
                        "several workers (syne-tune's BOHB takes minutes per seed there)")
    parser.add_argument("--budget-trials", type=float, default=50.0,
                        help="horizon: this many mean full trials of compute")
    parser.add_argument("--jobs", type=int, default=2, help="processes running seeds")
    parser.add_argument("--snap", choices=("nearest", "distinct"), default="nearest",
                        help="answer a proposal with the nearest recorded configuration "
                        "(nearest), or with the nearest one this run has not used yet "
                        "(distinct: a table of n configurations as n candidates)")
    parser.add_argument("--first", type=int, help="replay on the table's first N configurations "
                        "only (how much a result moves with the table's rows)")
    parser.add_argument("--figure", type=Path, help="write the anytime figure (PNG)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [s for s in (args.strategies or ",".join(STRATEGIES)).split(",") if s]
    if args.strategies is None and args.workers > 1:
        names.remove("bohb")
        print("note: bohb left out with several workers (about 2.5 min per seed on 2 cores); "
              "name it in --strategies to run it", file=sys.stderr)
    unknown = [s for s in names if s not in STRATEGIES and not s.startswith("promote:")]
    if unknown:
        print(f"error: unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        table = args.table if args.first is None else \
            prefix_table(args.table, args.first, Path(folder))
        result = replay(table, names, args.seeds, args.workers, args.budget_trials,
                        args.jobs, progress=lambda line: print(line, file=sys.stderr),
                        snap=args.snap)
    if args.first is not None:
        result["table"]["first"] = args.first
    if args.figure:
        figure(result, args.figure)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"table {result['table']['name']}: {result['table']['configurations']} "
              f"configurations, target {result['target']:.5g} (plain TPE, 20 trials), "
              f"{result['seeds']} seeds, {result['workers']} worker(s)")
        for name, e in result["strategies"].items():
            s = e.get("speedup_vs_plain_tpe", {})
            print(f"  {name:14s} reached {e['reached']:3d}/{e['seeds']}  compute "
                  f"{e['compute_to_target']}  speedup {s.get('median')} {s.get('ci95')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
