"""The ``hpo`` command line. Parses flags, builds specs, calls the modules; no logic of its own.

Every failure a user can cause reaches the terminal as one line (``error: ...``) and a non-zero exit.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .errors import HpoError

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


def _not_built(command: str) -> None:
    raise HpoError(f"'hpo {command}' is not built yet in this version; see README.md for what works")


@app.command()
def run() -> None:
    """Run (or continue) an Optuna study. Example: hpo run --arch autoencoder --data kth --trials 100"""
    _not_built("run")


@app.command()
def fixed() -> None:
    """Train the seed's fixed configuration. Example: hpo fixed --arch autoencoder --data kth --cell stlstm"""
    _not_built("fixed")


@app.command()
def compare() -> None:
    """Retrain fixed and best configurations with several seeds and test them.
    Example: hpo compare --arch autoencoder --data kth --seeds 3"""
    _not_built("compare")


@app.command()
def matrix() -> None:
    """All archs x cells x datasets: studies, fixed baselines, comparisons, then a report.
    Example: hpo matrix --data mmnist,kth,kitti --trials 50"""
    _not_built("matrix")


@app.command()
def report() -> None:
    """Tables and figures from the study store. Example: hpo report --out reports/kth"""
    _not_built("report")


@app.command()
def export() -> None:
    """Best configuration(s) of a study as files. Example: hpo export --study autoencoder-kth --format yaml"""
    _not_built("export")


@app.command()
def dashboard() -> None:
    """optuna-dashboard on the study store (127.0.0.1). Example: hpo dashboard --port 8080"""
    _not_built("dashboard")


@app.command()
def models() -> None:
    """Every architecture x cell with its trainable-parameter count. Example: hpo models --data kth"""
    _not_built("models")


@app.command()
def bench() -> None:
    """Training-step throughput on this device. Example: hpo bench --arch autoencoder --json"""
    _not_built("bench")


@data_app.command("info")
def data_info() -> None:
    """Files found, split sizes and cache state. Example: hpo data info --data kth --data-dir datasets/kth"""
    _not_built("data info")


@data_app.command("prepare")
def data_prepare() -> None:
    """Decode and cache a dataset. Example: hpo data prepare --data kth"""
    _not_built("data prepare")


@data_app.command("download")
def data_download() -> None:
    """Download a dataset where a network exists. Example: hpo data download mmnist"""
    _not_built("data download")


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: run the app, turn :class:`HpoError` into one line on stderr."""
    try:
        app(args=argv, standalone_mode=False)
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
        # themselves; anything else is a bug and keeps its traceback.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
