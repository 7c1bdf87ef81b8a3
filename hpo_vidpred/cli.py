"""The ``hpo`` command line: flags -> specs -> jobs, no logic of its own. Shared options are
declared once, the names a flag accepts come from the registries, and every failure a user can
cause is one line (``error: ...``) and a non-zero exit."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle threads sleep instead of spinning (spinning threads made small
# steps 10x slower or worse on a busy CPU; docs/design.md section 11).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402

from . import budgets  # noqa: E402
from .archs import ARCHS  # noqa: E402
from .cells import CELLS  # noqa: E402
from .data import DATASETS  # noqa: E402
from .errors import HpoError  # noqa: E402
from .data import default_spec, download, format_info, info, prepare  # noqa: E402
from .jobs import (compare as compare_job, export as export_job, fixed as fixed_job,  # noqa: E402
                   matrix as matrix_job, search, workers)
from .jobs.samplers import PRUNERS, SAMPLERS  # noqa: E402
from .specs import StudySpec  # noqa: E402
from .store import normalize_url, open_storage, store_failure  # noqa: E402

app = typer.Typer(
    name="hpo",
    help="Hyperparameter-optimization studies for video-prediction networks.\n\n"
    "Example: hpo run --arch autoencoder --data mmnist --trials 20 --budget small",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, prepare and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _choices(registry) -> str:  # noqa: ANN001
    return " | ".join(registry.names())


ARCH = typer.Option(..., help=f"architecture: {_choices(ARCHS)}")
DATA = typer.Option(..., "--data", help=f"dataset: {_choices(DATASETS)}")
CELL = typer.Option(..., help=f"recurrent cell: {_choices(CELLS)}")
BUDGET = typer.Option("seed", help=f"compute per training run: {_choices(budgets.BUDGETS)} "
                      "(small: the CPU demo)")
SAMPLER = typer.Option("tpe", help=f"{_choices(SAMPLERS)} (tpe: multivariate)")
PRUNER = typer.Option("hyperband", help=_choices(PRUNERS))
STORAGE = typer.Option(None, help="study store URL (default sqlite:///studies/hpo.db or "
                       "$HPO_STORAGE)")
DATA_DIR = typer.Option(None, "--data-dir", help="data root (default ./datasets or "
                        "$HPO_DATA_DIR) or the dataset's folder")
DEVICE = typer.Option("auto", help="auto | cpu | cuda | cuda:N")
QUIET = typer.Option(False, "--quiet", help="no progress lines and bars")
JSON = typer.Option(False, "--json", help="print the result as JSON")
OUT = typer.Option(None, help="report folder (default reports/<store name>)")
ARTIFACTS = typer.Option(None, help="artifact folder (default: artifacts/ beside a SQLite store)")
N_IN = typer.Option(None, "--n-in", help="input frames")
N_OUT = typer.Option(None, "--n-out", help="predicted frames")
HEIGHT = typer.Option(None, help="frame height (default: the dataset's)")
WIDTH = typer.Option(None, help="frame width (default: the dataset's)")


def _log(quiet: bool):  # noqa: ANN202
    return lambda line: None if quiet else typer.echo(line, err=True)


def _names(value: Optional[str]) -> Optional[list[str]]:
    """A comma-separated option as a list (None when not given)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _show(summary: dict, as_json: bool, text) -> None:  # noqa: ANN001
    typer.echo(json.dumps(summary, indent=1) if as_json else text(summary))


@app.command()
def run(
    arch: str = ARCH,
    data: str = DATA,
    trials: int = typer.Option(20, help="finished trials of the study in total (all workers and "
                               "machines); a rerun continues up to this number"),
    timeout: Optional[float] = typer.Option(None, help="start no trial after this many seconds"),
    cell: Optional[str] = typer.Option(None, help=f"pin the recurrent cell ({_choices(CELLS)}); "
                                       "default: sampled"),
    study: Optional[str] = typer.Option(None, help="study name (default {arch}-{data}[-{cell}])"),
    storage: Optional[str] = STORAGE,
    sampler: str = SAMPLER,
    pruner: str = PRUNER,
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
    quiet: bool = typer.Option(False, "--quiet", help="no per-trial lines and no bar"),
    as_json: bool = JSON,
) -> None:
    """Run (or continue) an Optuna study. Example: hpo run --arch autoencoder --data kth --trials 100"""
    spec = StudySpec(arch=arch, data=data, cell=cell or "", budget=budget, sampler=sampler,
                     pruner=pruner, search_space=search_space or "", name=study or "",
                     data_dir=data_dir or "", seed=seed)
    summary = workers.run(search.plan_study(spec), storage_url=normalize_url(storage),
                          trials=trials, timeout=timeout, workers=n_workers, devices=devices,
                          heartbeat=heartbeat, artifacts=artifacts, progress=not quiet,
                          threads=threads)
    _show(summary, as_json, search.format_summary)


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
                                        f"with a search study; {','.join(CELLS.names())})"),
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
    url = normalize_url(storage)
    plan = compare_job.plan_compare(url, arch, data, cells=_names(cells), seeds=seeds,
                                    budget=budget, config=config, data_dir=data_dir,
                                    device=device)
    summary = compare_job.run_compare(plan, url, progress=not (quiet or as_json),
                                      log=_log(quiet or as_json))
    _show(summary, as_json, compare_job.format_summary)


@app.command()
def matrix(
    data: str = typer.Option(..., help=f"datasets, e.g. {','.join(DATASETS.names())} (missing "
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
    plan = matrix_job.plan_matrix(_names(data) or [], _names(archs), _names(cells),
                                  trials=trials, seeds=seeds, budget=budget, sampler=sampler,
                                  pruner=pruner, workers=n_workers, devices=devices,
                                  data_dir=data_dir)
    summary = matrix_job.run_matrix(plan, storage, out, progress=not quiet, log=_log(quiet))
    typer.echo(matrix_job.format_summary(summary))


@app.command()
def report(
    storage: Optional[str] = STORAGE,
    out: Optional[str] = OUT,
    studies: str = typer.Option("*", help="glob on study names, e.g. '*-kth*'"),
) -> None:
    """Tables (index.html, tables.md, tables.tex, results.csv) and figures from the study store,
    readable offline. Example: hpo report --out reports/kth --studies '*-kth*'"""
    from .report import write_report

    summary = write_report(storage, out, studies)
    typer.echo(f"wrote {summary['out']}/index.html (+ tables.md, tables.tex, results.csv, "
               f"{len(summary['files'])} files): {summary['search_studies']} search studies, "
               f"{summary['comparisons']} comparisons")


@app.command()
def export(
    study: str = typer.Option(..., help="study name, e.g. autoencoder-kth-stlstm"),
    storage: Optional[str] = STORAGE,
    fmt: str = typer.Option("yaml", "--format", help="yaml | json"),
    top: int = typer.Option(1, help="the K best complete trials"),
    per_cell: bool = typer.Option(False, "--per-cell", help="the K best per recurrent cell"),
    out: Optional[str] = typer.Option(None, help="write to this file (default: print)"),
) -> None:
    """Best configuration(s) of a study as a file that 'hpo fixed/compare --config' retrain.
    Example: hpo export --study autoencoder-kth --format yaml --per-cell --out best.yaml"""
    url = normalize_url(storage)
    document = export_job.export_study(open_storage(url, read_only=True), study, top=top,
                                       per_cell=per_cell, url=url)
    text = export_job.dump_export(document, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(export_job.write_export(text, out, document), err=True)


@app.command()
def dashboard(
    storage: Optional[str] = STORAGE,
    host: str = typer.Option("127.0.0.1", help="address (loopback: the dashboard has no login)"),
    port: int = typer.Option(8080, help="port to listen on"),
    artifacts: Optional[str] = ARTIFACTS,
) -> None:
    """optuna-dashboard on the study store (127.0.0.1). Example: hpo dashboard --port 8080"""
    from .dashboard import serve

    if not 0 <= port <= 65535:
        raise HpoError(f"--port {port} is not a port number (0-65535; 0: any free one)")
    serve(storage, host, port, artifacts)


@app.command()
def models(
    data: Optional[str] = typer.Option(None, "--data", help="datasets, comma-separated "
                                       "(default: all)"),
    as_json: bool = JSON,
) -> None:
    """Every architecture x cell with its parameter count and the seed's (studies/fixed.yaml).
    Example: hpo models --data kth"""
    from .archs import format_parameter_table, parameter_table

    rows = parameter_table(_names(data))
    typer.echo(json.dumps(rows, indent=2) if as_json else format_parameter_table(rows))


@app.command()
def bench(
    arch: Optional[str] = typer.Option(None, help="architectures, comma-separated (default: all)"),
    cell: Optional[str] = typer.Option(None, help="cells, comma-separated (default: all)"),
    data: str = typer.Option("mmnist", help=f"whose fixed configurations: {_choices(DATASETS)}"),
    data_dir: Optional[str] = DATA_DIR,
    batch: int = typer.Option(4, help="batch size"),
    steps: int = typer.Option(3, help="timed steps per row (the median is reported)"),
    warmup: Optional[int] = typer.Option(None, help="untimed steps first (default 1; 3 compiled)"),
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    n_in: Optional[int] = N_IN,
    n_out: Optional[int] = N_OUT,
    variants: Optional[str] = typer.Option(None, help="auto, fp32, bf16, channels_last, compile, "
                                           "cudagraphs, ... or all (default: all on CUDA)"),
    device: str = DEVICE,
    threads: Optional[int] = typer.Option(None, help="CPU threads (torch.set_num_threads)"),
    as_json: bool = JSON,
) -> None:
    """Training-step throughput of the fixed configurations on this device (ms/step, samples/s,
    peak memory, data share; on CUDA with and without bf16 / compile / CUDA graphs /
    channels_last). Example: hpo bench --arch autoencoder --batch 8 --json"""
    from .bench import bench as run_bench
    from .bench import format_rows
    from .devices import torch_threads

    spec = default_spec(data, root=data_dir, height=height, width=width, n_in=n_in,
                        n_out=n_out, val_size=8, test_size=8)  # validation is not timed
    with torch_threads(threads or 0):
        rows = run_bench(spec, _names(arch), _names(cell), batch=batch, steps=steps,
                         warmup=warmup, variants=_names(variants), device=device, progress=True)
    typer.echo(json.dumps(rows, indent=1) if as_json else format_rows(rows))


@data_app.command("info")
def data_info(
    data: str = DATA,
    data_dir: Optional[str] = DATA_DIR,
    protocol: Optional[str] = typer.Option(None, help="split protocol (kth: kth | openstl)"),
    stride: Optional[int] = typer.Option(None, help="frames between training windows (1)"),
    eval_stride: Optional[int] = typer.Option(None, help="frames between val/test windows "
                                              "(default n_in + n_out)"),
    n_in: Optional[int] = N_IN,
    n_out: Optional[int] = N_OUT,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    as_json: bool = JSON,
) -> None:
    """Files found, split sizes and cache state.
    Example: hpo data info --data kth --data-dir datasets/kth"""
    spec = default_spec(data, root=data_dir, protocol=protocol, stride=stride,
                        eval_stride=eval_stride, n_in=n_in, n_out=n_out, height=height,
                        width=width)
    _show(info(spec), as_json, format_info)


@data_app.command("prepare")
def data_prepare(
    data: str = DATA,
    data_dir: Optional[str] = DATA_DIR,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
) -> None:
    """Decode and cache a dataset. Example: hpo data prepare --data kth --data-dir datasets/kth"""
    typer.echo(format_info(prepare(default_spec(data, root=data_dir, height=height,
                                                width=width))))


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help=f"dataset: {_choices(DATASETS)} (kth, kitti: prints "
                               "where to get them)"),
    data_dir: Optional[str] = DATA_DIR,
    mirror: Optional[str] = typer.Option(None, help="a folder URL holding the same file names"),
) -> None:
    """Download a dataset where a network exists. Example: hpo data download mmnist"""
    typer.echo("\n".join(download(name, data_dir, mirror)))


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: run the app, turn :class:`HpoError` into one line on stderr; warnings
    reach a user as ``warning: ...`` lines without file names and line numbers."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        # typer turns Ctrl-C into Exit(130), which standalone_mode=False returns as a number
        if app(args=argv, standalone_mode=False, prog_name="hpo") == 130:
            raise KeyboardInterrupt
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; everything finished so far is stored", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (--help, usage errors)
        return int(exc.code or 0)
    except Exception as exc:
        # typer's (vendored) click signals usage errors with exceptions that know how to show
        # themselves; a store failure (full disk, read-only file, ...) is one line; anything
        # else is a bug and keeps its traceback.
        failure = store_failure(exc)
        if failure:
            print(f"error: {failure}", file=sys.stderr)
            return 2
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "hpo"
            print(f"error: {' '.join(exc.format_message().split()).rstrip('.')}; see '{where} "
                  "--help'", file=sys.stderr)
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            return 1
        raise
    return 0


def entry() -> None:
    """The ``hpo`` command. After an interrupt (130) the process ends at once: what finished is
    stored and the interrupted trials are queued by then. A normal interpreter shutdown here was
    seen, about once in 15 SIGTERMs, to end by SIGINT (exit status -2) instead of 130."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 130:
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    entry()
