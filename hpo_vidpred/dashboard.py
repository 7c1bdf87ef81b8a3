"""``hpo dashboard``: optuna-dashboard on a study store, with its artifact store (prediction strips).

It listens on 127.0.0.1 unless told otherwise: the dashboard has no login, and anyone who reaches
it can read and annotate every study in the store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .errors import HpoError
from .store import artifact_dir, mask_url, normalize_url, open_artifact_store, open_storage

__all__ = ["make_dashboard_server", "serve"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # one line per request: too much
        pass


def make_dashboard_server(storage: str | None = None, host: str = "127.0.0.1",
                          port: int = 8080, artifacts: str | Path | None = None) -> WSGIServer:
    """A WSGI server (not yet serving) for optuna-dashboard on the store at ``storage``.

    The store must exist; its artifact store is :func:`hpo_vidpred.store.artifact_dir` unless
    ``artifacts`` names another folder. A port in use is an :class:`HpoError`.
    """
    import optuna_dashboard

    url = normalize_url(storage)
    rdb = open_storage(url, must_exist=True)
    folder = artifact_dir(url, artifacts)
    store = open_artifact_store(url, artifacts, create=False) if folder.is_dir() else None
    app = optuna_dashboard.wsgi(rdb, artifact_store=store)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise HpoError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port")


def serve(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080,
          artifacts: str | Path | None = None) -> None:
    """Serve optuna-dashboard until Ctrl-C (see :func:`make_dashboard_server`)."""
    server = make_dashboard_server(storage, host, port, artifacts)
    url = normalize_url(storage)
    print(f"optuna-dashboard for {mask_url(url)} on http://{host}:{server.server_port}/ "
          f"(artifacts: {artifact_dir(url, artifacts)}); Ctrl-C stops it", file=sys.stderr)
    if host not in _LOOPBACK:
        print(f"warning: listening on {host}: the dashboard has no login; anyone who reaches "
              "this port can read and change the studies", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
