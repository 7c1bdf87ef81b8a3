"""The ``hpo`` command line: flags -> specs -> jobs, no logic of its own. Shared options are
declared once (here), the names a flag accepts come from the registries, and every failure a user
can cause is one line (``error: ...``) and a non-zero exit. The commands live in
:mod:`.studies` (run, fixed, compare, matrix), :mod:`.stores` (report, export, dashboard) and
:mod:`.tools` (models, bench, data), :mod:`.deploy` (store serve, store prepare)."""

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

from .. import budgets  # noqa: E402
from ..errors import HpoError  # noqa: E402
from ..interrupts import install_interrupts, take_interrupt  # noqa: E402
from ..study.strategy import PRUNERS, SAMPLERS  # noqa: E402
from ..registry import module_names  # noqa: E402

# The names the registries hold, read from the packages' module names: a command that only
# reads a store (or --help) never loads PyTorch.
ARCHS = module_names("hpo_vidpred.archs")
CELLS = module_names("hpo_vidpred.cells")
DATASETS = module_names("hpo_vidpred.data")

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
    """``a | b | c``: the names of a registry (or a list of names)."""
    return " | ".join(registry if isinstance(registry, list) else registry.names())


ARCH = typer.Option(..., help=f"architecture: {_choices(ARCHS)}")
DATA = typer.Option(..., "--data", help=f"dataset: {_choices(DATASETS)}")
CELL = typer.Option(..., help=f"recurrent cell: {_choices(CELLS)}")
BUDGET = typer.Option("seed", help=f"compute per training run: {_choices(budgets.BUDGETS)} "
                      "(small: the CPU demo)")
SAMPLER = typer.Option("tpe", help=f"{_choices(SAMPLERS)} (tpe: multivariate; tpe-plain: "
                       "Optuna's defaults)")
PRUNER = typer.Option("hyperband", help=f"{_choices(PRUNERS)} (stops trials of the fifo "
                      "scheduler)")
SCHEDULER = typer.Option("auto", help="fifo: every trial trains to its end unless pruned | "
                         "promote: configurations train in segments, the best of each rung "
                         "resumed to the next | auto: the default for one objective, fifo for "
                         "several (a study keeps the one it started with)")
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
        take_interrupt()  # a second Ctrl-C or SIGTERM while this process ends is ignored
        print("error: interrupted; everything finished so far is stored", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (--help, usage errors)
        return int(exc.code or 0)
    except Exception as exc:
        # typer's (vendored) click signals usage errors with exceptions that know how to show
        # themselves; a store failure (full disk, read-only file, ...) is one line; anything
        # else is a bug and keeps its traceback.
        from ..store import store_failure

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
    seen, about once in 15 SIGTERMs, to end by SIGINT (exit status -2) instead of 130. Ctrl-C and
    SIGTERM are an interrupt (130, one line) in every command and at every moment, also between
    the steps that catch them (a second SIGTERM, sent while a stopped run wound down, ended it
    with the default action, 143)."""
    install_interrupts()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 130:
        os._exit(130)
    sys.exit(code)


from . import deploy, studies, stores, tools  # noqa: E402,F401  (register the commands)
