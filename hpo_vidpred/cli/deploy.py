"""The commands for studies on many machines (docs/deploy.md): ``hpo store serve`` (the study
store behind a gRPC proxy) and ``hpo store prepare`` (create a study before jobs join it)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from ..errors import HpoError
from ..specs import StudySpec
from . import JSON, STORAGE, _names, _show, app

store_app = typer.Typer(help="Serve a study store to many machines; prepare a study for them.",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command()
def serve(
    storage: Optional[str] = STORAGE,
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every "
                             "interface; the proxy has no login: a private network only)"),
    port: int = typer.Option(13000, help="port to listen on"),
    threads: int = typer.Option(32, help="server threads (each client's held study lock "
                                "keeps one)"),
) -> None:
    """Serve the study store to workers on other machines: Optuna's gRPC proxy plus hpo's study
    lock and heartbeats. Workers use --storage grpc://HOST:PORT.
    Example: hpo store serve --storage postgresql+psycopg://hpo@db/hpo --host 0.0.0.0"""
    from ..store import normalize_url

    if not 1 <= port <= 65535:
        raise HpoError(f"--port {port} is not a port number (1-65535)")
    try:
        from ..store.grpc_server import serve as serve_proxy
    except ImportError:
        raise HpoError("hpo store serve needs grpcio and protobuf: pip install "
                       "'hpo-vidpred[grpc]'") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("note: the gRPC proxy has no login and no encryption; keep it on a private "
                   "network", err=True)
    serve_proxy(normalize_url(storage), host, port, threads,
                log=lambda line: typer.echo(line, err=True))


@store_app.command(context_settings={"allow_extra_args": True,
                                     "ignore_unknown_options": True})
def prepare(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Create (or check) the study of an 'hpo run' command line without running a trial, before
    jobs on many machines join it with that command (bad flags, a different spec or an
    unreachable store fail here, once).
    Example: hpo store prepare run --arch autoencoder --data kth --trials 200 --storage URL"""
    from ..workflows import prepare as prepare_job
    from ..study.plan import plan_study
    from ..store import normalize_url

    args = list(ctx.args)
    if args[:1] == ["hpo"]:
        args = args[1:]
    if args[:1] != ["run"]:
        raise HpoError("hpo store prepare takes an 'hpo run' command line: hpo store prepare "
                       "run --arch A --data D --trials N [...]")
    run_command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    with run_command.make_context("hpo run", args[1:]) as sub:
        params = dict(sub.params)
    summary = prepare_job.prepare_study(
        plan_study(_run_spec(params)), normalize_url(params.get("storage")),
        params["trials"], warm=_names(params.get("warm_start")) or (),
        warm_top=params["warm_top"], timeout=params["timeout"], heartbeat=params["heartbeat"],
        threads=params["threads"])
    _show(summary, as_json, prepare_job.format_prepared)


def _run_spec(params: dict) -> StudySpec:
    """The StudySpec that 'hpo run' builds from these flags: each spec field from the flag of
    its name (``--study`` for ``name``), unset flags at the spec's defaults, comma lists as
    tuples."""
    values = {}
    for field in dataclasses.fields(StudySpec):
        value = params.get("study" if field.name == "name" else field.name)
        if value is None:
            continue
        if isinstance(field.default, tuple) and isinstance(value, str):
            value = tuple(_names(value) or ())
        values[field.name] = value
    return StudySpec(**values)
