"""The commands that read a study store: ``hpo report``, ``export`` and ``dashboard``."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import HpoError
from . import ARTIFACTS, OUT, STORAGE, app


@app.command()
def report(
    storage: Optional[str] = STORAGE,
    out: Optional[str] = OUT,
    studies: str = typer.Option("*", help="glob on study names, e.g. '*-kth*'"),
) -> None:
    """Tables (index.html, tables.md, tables.tex, results.csv) and figures from the study store,
    readable offline. Example: hpo report --out reports/kth --studies '*-kth*'"""
    from ..report import write_report

    summary = write_report(storage, out, studies)
    tables = ", ".join(f for f in ("tables.md", "tables.tex", "overview.csv", "results.csv")
                       if f in summary["files"])
    typer.echo(f"wrote {summary['out']}/index.html (+ {tables}, {len(summary['files'])} files): "
               f"{summary['search_studies']} search studies, {summary['comparisons']} comparisons")


@app.command()
def export(
    study: str = typer.Option(..., help="study name, e.g. autoencoder-kth-stlstm"),
    storage: Optional[str] = STORAGE,
    fmt: str = typer.Option("yaml", "--format", help="yaml | json"),
    top: int = typer.Option(1, help="the K best complete trials"),
    per_cell: bool = typer.Option(False, "--per-cell", help="the K best per recurrent cell"),
    out: Optional[str] = typer.Option(None, help="write to this file (default: print)"),
    pick: Optional[str] = typer.Option(None, help="one configuration of a multi-objective "
                                       "study's front: knee | fastest-within:5%"),
) -> None:
    """Best configuration(s) of a study as a file that 'hpo fixed/compare --config' retrain.
    Example: hpo export --study autoencoder-kth --format yaml --per-cell --out best.yaml"""
    from ..workflows import export as export_job
    from ..store import normalize_url, open_storage

    url = normalize_url(storage)
    document = export_job.export_study(open_storage(url, read_only=True), study, top=top,
                                       per_cell=per_cell, url=url, pick=pick)
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
    from ..dashboard import serve

    if not 0 <= port <= 65535:
        raise HpoError(f"--port {port} is not a port number (0-65535; 0: any free one)")
    serve(storage, host, port, artifacts)
