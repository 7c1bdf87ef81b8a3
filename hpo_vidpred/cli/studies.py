"""The commands that train: ``hpo run``, ``fixed``, ``compare`` and ``matrix``."""

from __future__ import annotations

from typing import Optional

import typer

from .. import budgets
from ..specs import RunSpec, StudySpec
from . import (ARCH, ARTIFACTS, BUDGET, CELL, CELLS, DATA, DATA_DIR, DATASETS, DEVICE, JSON, OUT,
               PRUNER, QUIET, SAMPLER, SCHEDULER, STORAGE, _choices, _log, _names, _show, app)

# (each command imports what it runs when it runs: --help loads no PyTorch)
GOAL_NAMES = "val_mse, val_ssim, ms_per_step, params"  # study/goals.py; a test checks them


@app.command()
def run(
    arch: str = ARCH,
    data: str = DATA,
    trials: int = typer.Option(20, help="configurations the study tries in total (all workers "
                               "and machines), one trial each: trained to the end (fifo) or up "
                               "the rungs as far as they win (promote); a rerun continues up to "
                               "this number"),
    timeout: Optional[float] = typer.Option(None, help="start no trial after this many seconds"),
    cell: Optional[str] = typer.Option(None, help=f"pin the recurrent cell ({_choices(CELLS)}); "
                                       "default: sampled"),
    study: Optional[str] = typer.Option(None, help="study name (default {arch}-{data}[-{cell}])"),
    storage: Optional[str] = STORAGE,
    sampler: str = SAMPLER,
    pruner: str = PRUNER,
    scheduler: str = SCHEDULER,
    budget: str = BUDGET,
    n_workers: int = typer.Option(0, "--workers", help="worker processes sharing the study (0: "
                                  "one per core up to 4 on a CPU, 4 per GPU)"),
    devices: str = typer.Option("auto", help="auto | cpu | GPUs (0,1 or cuda:0,cuda:1)"),
    seed: int = typer.Option(0, help="sampler and training seeds derive from it"),
    data_dir: Optional[str] = DATA_DIR,
    search_space: Optional[str] = typer.Option(None, "--search-space", help="search-space "
                                               "YAML (default studies/<arch>.yaml)"),
    artifacts: Optional[str] = ARTIFACTS,
    heartbeat: int = typer.Option(30, help="seconds between heartbeats; a dead worker's trial "
                                  "is re-run after twice this"),
    threads: int = typer.Option(0, help="torch threads per CPU worker (0: cores shared out)"),
    objectives: str = typer.Option("val_mse", help="what to optimize, comma list of "
                                   f"{GOAL_NAMES}; several: a Pareto front"),
    warm_start: Optional[str] = typer.Option(None, "--warm-start", help="comma list of studies "
                                             "whose best configurations run first"),
    warm_top: int = typer.Option(3, "--warm-top", help="configurations per --warm-start study"),
    epochs: int = typer.Option(0, help="epochs per trial, of the budget's steps each (0: the "
                               "budget's); the learning-rate schedule spans them"),
    record_test: bool = typer.Option(False, "--record-test", help="also test each trial's model "
                                     "(for learning-curve tables; never choose by it)"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-trial lines and no bar"),
    as_json: bool = JSON,
) -> None:
    """Run (or continue) an Optuna study. Example: hpo run --arch autoencoder --data kth --trials 100"""
    from ..store import normalize_url
    from ..study.plan import plan_study
    from ..study.pool import run as run_study
    from ..study.summary import format_summary

    spec = StudySpec(arch=arch, data=data, cell=cell or "", budget=budget, sampler=sampler,
                     pruner=pruner, search_space=search_space or "", name=study or "",
                     data_dir=data_dir or "", seed=seed,
                     objectives=tuple(_names(objectives) or ()), epochs=epochs,
                     record_test=record_test, scheduler=scheduler)
    settings = RunSpec(storage_url=normalize_url(storage), trials=trials, timeout=timeout,
                       workers=n_workers, devices=devices, heartbeat=heartbeat,
                       artifacts=artifacts, progress=not quiet, threads=threads,
                       warm=tuple(_names(warm_start) or ()), warm_top=warm_top)
    summary = run_study(plan_study(spec), settings)
    _show(summary, as_json, format_summary)


@app.command()
def fixed(
    arch: str = ARCH,
    data: str = DATA,
    cell: str = CELL,
    budget: str = BUDGET,
    storage: Optional[str] = STORAGE,
    data_dir: Optional[str] = DATA_DIR,
    seed: int = typer.Option(0, help="training seed (initial weights, batches)"),
    device: str = DEVICE,
    config: Optional[str] = typer.Option(None, "--config", help="retrain exactly the --cell "
                                         "configuration of an 'hpo export' file, at its budget "
                                         "(study config-{arch}-{data}-{cell}-{id})"),
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Train the seed's fixed configuration and record it as study fixed-{arch}-{data}-{cell}.
    Example: hpo fixed --arch autoencoder --data kth --cell stlstm"""
    from ..workflows import export as export_job
    from ..workflows import fixed as fixed_job

    plan = (export_job.plan_from_config(config, arch, data, cell, data_dir=data_dir, seed=seed,
                                        device=device) if config is not None else
            fixed_job.plan_fixed(arch, data, cell, budget, data_dir=data_dir, seed=seed,
                                 device=device))
    summary = fixed_job.run_fixed(plan, storage, progress=not quiet, log=_log(quiet or as_json))
    _show(summary, as_json, fixed_job.format_summary)


@app.command()
def compare(
    arch: str = ARCH,
    data: str = DATA,
    cells: Optional[str] = typer.Option(None, help="comma list of cells (default: every cell "
                                        f"with a search study; {','.join(CELLS)})"),
    seeds: int = typer.Option(3, help="retrain each configuration with seeds 0..K-1"),
    budget: Optional[str] = typer.Option(None, help=f"{_choices(budgets.BUDGETS)} (default: "
                                         "the search study's)"),
    storage: Optional[str] = STORAGE,
    config: Optional[str] = typer.Option(None, "--config", help="an 'hpo export' file: its "
                                         "first configuration per cell is the optimized one"),
    data_dir: Optional[str] = DATA_DIR,
    device: str = DEVICE,
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Retrain the seed's fixed and the best found configuration per cell with K seeds at the full
    budget, test each once, record study compare-{arch}-{data}; reruns do only what is missing.
    Example: hpo compare --arch autoencoder --data kth --seeds 3"""
    from ..workflows import compare as compare_job
    from ..store import normalize_url

    url = normalize_url(storage)
    plan = compare_job.plan_compare(url, arch, data, cells=_names(cells), seeds=seeds,
                                    budget=budget, config=config, data_dir=data_dir,
                                    device=device)
    summary = compare_job.run_compare(plan, url, progress=not (quiet or as_json),
                                      log=_log(quiet or as_json))
    _show(summary, as_json, compare_job.format_summary)


@app.command()
def matrix(
    data: str = typer.Option(..., help=f"datasets, e.g. {','.join(DATASETS)} (missing "
                             "ones are skipped)"),
    archs: Optional[str] = typer.Option(None, help="comma list of architectures (default: all)"),
    cells: Optional[str] = typer.Option(None, help="comma list of cells (default: all)"),
    trials: int = typer.Option(..., help="finished trials per study"),
    seeds: int = typer.Option(3, help="retrain seeds per configuration in the comparison"),
    budget: str = BUDGET,
    storage: Optional[str] = STORAGE,
    out: Optional[str] = OUT,
    sampler: str = SAMPLER,
    pruner: str = PRUNER,
    n_workers: int = typer.Option(1, "--workers", help="worker processes per study"),
    devices: str = typer.Option("auto", help="auto | cpu | GPUs; retrains use the first"),
    data_dir: Optional[str] = DATA_DIR,
    quiet: bool = typer.Option(False, "--quiet", help="only the final summary"),
) -> None:
    """All datasets x architectures x cells: the study, the fixed baselines and the comparison,
    skipping what the store already holds (rerun to resume), then the report.
    Example: hpo matrix --data mmnist,kth,kitti --trials 50"""
    from ..workflows import matrix as matrix_job

    plan = matrix_job.plan_matrix(_names(data) or [], _names(archs), _names(cells),
                                  trials=trials, seeds=seeds, budget=budget, sampler=sampler,
                                  pruner=pruner, workers=n_workers, devices=devices,
                                  data_dir=data_dir)
    summary = matrix_job.run_matrix(plan, storage, out, progress=not quiet, log=_log(quiet))
    typer.echo(matrix_job.format_summary(summary))
