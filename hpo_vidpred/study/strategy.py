"""Samplers and pruners of ``hpo run``, registered by name (``--sampler``, ``--pruner``)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from ..registry import Registry
from ..specs import TrainSpec

if TYPE_CHECKING:
    from .promote import Promotion
    from .plan import StudyPlan

__all__ = ["DEFAULT_SCHEDULER", "N_STARTUP", "PRUNERS", "SAMPLERS", "SCHEDULERS", "machine_index",
           "make_pruner", "make_sampler", "make_scheduler", "resolve_scheduler"]

# A sampler factory takes (study seed, this worker's seed, random startup trials, the names of
# the sampled parameters in the search space's order).
SAMPLERS: Registry[Callable[[int, int, int, list[str]], optuna.samplers.BaseSampler]] = \
    Registry("sampler")
# A pruner factory takes the budgeted TrainSpec (its epochs are the maximal resource).
PRUNERS: Registry[Callable[[TrainSpec], optuna.pruners.BasePruner]] = Registry("pruner")
N_STARTUP = 10  # random trials before a model-based sampler starts modelling
# How configurations are given compute: `fifo` trains every trial to its end (the pruner may
# stop it); `promote` trains them in segments up a ladder of rungs (study/promote.py).
SCHEDULERS: Registry[str] = Registry("scheduler")
SCHEDULERS.register("fifo")("every trial trains to its end unless the pruner stops it")
SCHEDULERS.register("promote")("configurations train in segments; the best of each rung are "
                               "resumed to the next")
DEFAULT_SCHEDULER = "fifo"  # what --scheduler auto means for one objective (several: fifo)
# Rungs at 1, 3, 9, ... epochs: on the learning-curve table of benchmarks/tables/ the ranking
# after one epoch already agrees with the final one (Spearman 0.79), so the first cut comes after
# one epoch; keeping a third (not a quarter, which did best when the replay answered proposals
# with the nearest recorded configuration) is what held up when it answered each new proposal
# with a configuration not yet used (benchmarks/RESULTS.md).
FIRST_RUNG = 1  # epochs of a configuration's first segment
ETA = 3  # promotion keeps the best 1/ETA of each rung


@SAMPLERS.register("tpe")
def _tpe(study_seed: int, seed: int, n_startup: int,
         names: list[str]) -> optuna.samplers.BaseSampler:
    # Multivariate TPE (Falkner et al. 2018) with group decomposition, which models conditional
    # parameters jointly too; constant_liar keeps parallel workers from sampling the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                      constant_liar=True, n_startup_trials=n_startup)


@SAMPLERS.register("tpe-plain")
def _tpe_plain(study_seed: int, seed: int, n_startup: int,
               names: list[str]) -> optuna.samplers.BaseSampler:
    # Optuna's TPE as a hand-written loop uses it: its defaults (each parameter on its own, 10
    # random start-up trials, no constant liar). The baseline of benchmarks/replay.py.
    return optuna.samplers.TPESampler(seed=seed)


@SAMPLERS.register("random")
def _random(study_seed: int, seed: int, n_startup: int,
            names: list[str]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("qmc")
def _qmc(study_seed: int, seed: int, n_startup: int,
         names: list[str]) -> optuna.samplers.BaseSampler:
    # Scrambled Sobol; every worker must share the scramble seed to draw from one sequence.
    return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=study_seed,
                                      independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                      warn_asynchronous_seeding=False,
                                      warn_independent_sampling=False)


@SAMPLERS.register("sobol")
def _sobol(study_seed: int, seed: int, n_startup: int,
           names: list[str]) -> optuna.samplers.BaseSampler:
    # Space-filling, and configuration i is the same in every study of the space (study/sobol.py):
    # what learning-curve tables are drawn with; --seed changes the training seeds only.
    from .sobol import SobolSampler

    return SobolSampler(names)


@SAMPLERS.register("gp")
def _gp(study_seed: int, seed: int, n_startup: int,
        names: list[str]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup,
                                     warn_independent_sampling=False)


@SAMPLERS.register("cmaes")
def _cmaes(study_seed: int, seed: int, n_startup: int,
           names: list[str]) -> optuna.samplers.BaseSampler:
    # CMA-ES models the float and int parameters; categorical ones are sampled at random.
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup,
                                        warn_independent_sampling=False)


@SAMPLERS.register("nsga2")
def _nsga2(study_seed: int, seed: int, n_startup: int,
           names: list[str]) -> optuna.samplers.BaseSampler:
    # NSGA-II (Deb et al. 2002), for several --objectives (TPE's multi-objective mode is the
    # default there).
    return optuna.samplers.NSGAIISampler(seed=seed)


@PRUNERS.register("hyperband")
def _hyperband(train: TrainSpec) -> optuna.pruners.BasePruner:
    # Li et al. 2018; the resource is the epoch (train.py reports val_mse at epochs 1, 2, ...).
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, train.epochs),
                                          reduction_factor=3)


@PRUNERS.register("asha")
def _asha(train: TrainSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


@PRUNERS.register("median")
def _median(train: TrainSpec) -> optuna.pruners.BasePruner:
    # Prunes from the first epoch on, once 5 trials have completed.
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


@PRUNERS.register("none")
def _no_pruner(train: TrainSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def make_sampler(plan: StudyPlan, worker_seed: int) -> optuna.samplers.BaseSampler:
    """The plan's sampler, seeded for one worker (see :mod:`hpo_vidpred.study.pool`) of this
    machine (:func:`machine_index`)."""
    seed = (worker_seed + 7919 * machine_index()) % 2**31
    names = plan.sample_space.dimensions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = SAMPLERS.get(plan.spec.sampler)(plan.spec.seed, seed, N_STARTUP, names)
    if plan.scheduler == "promote" and isinstance(sampler, optuna.samplers.TPESampler):
        from .rung_tpe import RungTPESampler  # TPE learns from every rung (BOHB)

        return RungTPESampler.univariate(make_scheduler(plan).rungs, seed, len(names) + 1)
    return sampler


# The tasks of a job array (Slurm, a Kubernetes Indexed Job) start together with the same study
# and worker indices: their task index goes into the sampler seeds, or they would all draw the
# same first configurations. Machines started by hand: HPO_MACHINE_INDEX=1, 2, ...
_MACHINE_INDEX = ("HPO_MACHINE_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")


def machine_index() -> int:
    """This machine's index among the jobs sharing a study (the first of the variables above
    that holds a number; 0 on a single machine)."""
    for variable in _MACHINE_INDEX:
        value = os.environ.get(variable, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def resolve_scheduler(name: str, objectives: int) -> str:
    """The scheduler a study of ``objectives`` objectives runs with ``--scheduler name``
    (``auto``: :data:`DEFAULT_SCHEDULER`, fifo for several objectives); an :class:`HpoError`
    for promotion with several objectives (its rungs rank one value)."""
    from ..errors import HpoError

    if name == "auto":
        return DEFAULT_SCHEDULER if objectives == 1 else "fifo"
    SCHEDULERS.get(name)
    if name == "promote" and objectives > 1:
        raise HpoError("--scheduler promote ranks configurations by one objective; with "
                       "several --objectives use --scheduler fifo")
    return name


def make_scheduler(plan: StudyPlan, configurations: int | None = None, *,
                   eta: float | None = None, first: int | None = None,
                   margin: float | None = None) -> Promotion:
    """The promotion scheduler of ``plan`` (``--scheduler promote``): the rungs the study
    recorded when it started, or (a new study, or ``eta`` / ``first`` given) rungs from
    :data:`FIRST_RUNG` epochs up to the plan's epochs by a factor :data:`ETA`; the curve rule
    (off with ``--pruner none``, as is the trivial-predictor guard), at most ``configurations``
    configurations (``--trials``; None: no limit)."""
    from .promote import CurveStop, Promotion, Rungs

    if plan.rungs and eta is None and first is None:
        rungs = Rungs(tuple(int(v) for v in plan.rungs["levels"]), float(plan.rungs["eta"]))
    else:
        first = FIRST_RUNG if first is None else first
        rungs = Rungs.geometric(min(first, plan.train.epochs), plan.train.epochs,
                                ETA if eta is None else eta)
    stop = None if plan.spec.pruner == "none" else \
        CurveStop() if margin is None else CurveStop(margin=margin)
    return Promotion(rungs, configurations, stop)


def make_pruner(plan: StudyPlan) -> optuna.pruners.BasePruner:
    """The plan's pruner, sized to the budgeted number of epochs."""
    return PRUNERS.get(plan.spec.pruner)(plan.train)
