"""The study store behind Optuna's gRPC proxy: ``hpo store serve`` (:func:`serve`); its
client, ``hpo run --storage grpc://host:port``, is :mod:`.grpc_client`. docs/design.md section 11.

Optuna's proxy (``optuna.storages.run_grpc_proxy_server`` / ``GrpcStorageProxy``, Optuna >= 4.2)
carries the storage API only: no heartbeats (``GrpcStorageProxy`` is not a ``BaseHeartbeat``), no
database engine, so no study lock. What a shared study needs beside it, the server offers as a
second gRPC service on the same port (``hpo.Store``, JSON messages, no generated code):

- ``Lock`` (a server stream): the study's lock, taken on the server -- a per-study lock in the
  proxy process, then :func:`hpo_vidpred.store.study_lock` on the database (the PostgreSQL
  advisory lock), so workers through the proxy and workers connected directly exclude each other.
  The first message says whether it was granted; the lock is held until the client cancels the
  call or its connection drops (a killed worker releases it; keepalive pings detect a vanished
  machine within about a minute). A busy lock answers at once and the client retries, so
  waiting workers hold no server thread.
- ``Heartbeat``: records a trial's heartbeat in the database (the database's clock).
- ``FailStale``: runs :func:`hpo_vidpred.store.lifecycle.fail_stale` on the server with the
  client's heartbeat interval and grace period (stale trials failed and re-queued, orphans too).
- ``Hello``: tells a client that it found an hpo proxy, not a bare Optuna one.

The proxy has no login and no encryption: keep it on a private network.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# gRPC's core logs its own lines (``E1202 ... add_port.cc:83] Failed to add port``) to stderr
# before ours say the same in one line with what to do; GRPC_VERBOSITY=error brings them back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import optuna  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import HpoError  # noqa: E402
from ..interrupts import interrupts, take_interrupt  # noqa: E402
from . import lifecycle, optuna_private  # noqa: E402
from .connect import open_storage, study_lock  # noqa: E402
from .grpc_client import DEFAULT_PORT, PROTOCOL, SERVICE, _dump, _load  # noqa: E402
from .urls import mask_url  # noqa: E402

api_pb2, api_pb2_grpc = optuna_private.grpc_api()  # Optuna's generated code (imports grpc)

__all__ = ["serve"]

# The server pings idle connections; a client that stops answering (its machine vanished) is
# dropped, and with it the study lock it may hold. gRPC binds with SO_REUSEPORT by default: a
# second server on a port in use listened beside the first, and the kernel shared the clients out
# between the two stores.
_SERVER_OPTIONS = [("grpc.so_reuseport", 0),
                   ("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 20_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                   ("grpc.max_receive_message_length", -1)]


# --------------------------------------------------------------------------- the server
class _Extras:
    """The ``hpo.Store`` service: what Optuna's proxy lacks (see the module docstring)."""

    def __init__(self, url: str, storage: Any) -> None:
        self.url, self.storage = url, storage
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._beating: dict[tuple[int, int], Any] = {}

    def hello(self, request: dict, context: Any) -> dict:
        return {"protocol": PROTOCOL, "version": __version__, "store": mask_url(self.url)}

    def heartbeat(self, request: dict, context: Any) -> dict:
        self.storage.record_heartbeat(int(request["trial_id"]))
        return {}

    def fail_stale(self, request: dict, context: Any) -> dict:
        key = (int(request["heartbeat"]), int(request["grace"]))
        with self._guard:  # one storage per (interval, grace): the stale check reads them
            if key not in self._beating:
                self._beating[key] = open_storage(self.url, heartbeat_interval=key[0],
                                                  grace_period=key[1], create_tables=False)
        study = optuna.load_study(study_name=request["study"], storage=self._beating[key],
                                  sampler=optuna.samplers.RandomSampler())
        lifecycle.fail_stale(study, float(request["orphan_age"]))
        return {}

    def lock(self, request: dict, context: Any) -> Iterator[dict]:
        name = request["study"]
        with self._guard:
            local = self._locks.setdefault(name, threading.Lock())
        if not local.acquire(blocking=False):  # busy: the client retries shortly
            yield {"granted": False}
            return
        try:
            with study_lock(self.storage, name):  # the database's lock as well
                gone = threading.Event()
                if not context.add_callback(gone.set):  # the client left already
                    return
                yield {"granted": True}
                while not gone.wait(1.0) and context.is_active():
                    pass
        finally:
            local.release()


class _Servicer(optuna_private.proxy_service()):
    """Optuna's proxy service on the storage itself rather than through Optuna's cache, which
    keeps a study's finished trials by its id for the life of the server: after another process
    deleted a study, the one that took over its id (SQLite reuses the highest) showed the old
    study's trials. Each client keeps its own cache and asks only for what changed; that is
    what is read."""

    def GetTrials(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        try:
            trials = optuna_private.get_trials(optuna_private.served_storage(self),
                                               request.study_id, None,
                                               set(request.included_trial_ids),
                                               request.trial_id_greater_than)
        except KeyError as exc:
            context.abort(code=grpc.StatusCode.NOT_FOUND, details=str(exc))
        return api_pb2.GetTrialsReply(trials=[optuna_private.to_proto_trial(t)
                                              for t in trials])


def serve(url: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = 32,
          log: Any = print) -> None:
    """Serve the study store at ``url`` on ``host:port`` until Ctrl-C or SIGTERM: Optuna's gRPC
    proxy (what ``optuna.storages.run_grpc_proxy_server`` starts, built here with keepalive
    options) plus the ``hpo.Store`` service."""
    if url.startswith("grpc"):
        raise HpoError("hpo store serve needs the database's URL (sqlite:///... or "
                       "postgresql+psycopg://...), not another proxy")
    if threads < 4:
        raise HpoError("--threads must be at least 4")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = grpc.server(ThreadPoolExecutor(max_workers=threads), options=_SERVER_OPTIONS)
    try:  # the port first: a server that cannot listen opens (or creates) no store
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise HpoError(f"cannot listen on {host}:{port} (in use, or not an address of this "
                       "machine); pass another --port or --host")
    storage = open_storage(url, pool=(8, max(0, threads - 8)))  # a connection per thread at most
    api_pb2_grpc.add_StorageServiceServicer_to_server(_Servicer(storage), server)
    extras = _Extras(url, storage)
    unary = {name: grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=_load, response_serializer=_dump)
        for name, fn in (("Hello", extras.hello), ("Heartbeat", extras.heartbeat),
                         ("FailStale", extras.fail_stale))}
    stream = grpc.unary_stream_rpc_method_handler(extras.lock, request_deserializer=_load,
                                                  response_serializer=_dump)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {**unary, "Lock": stream}),))
    server.start()
    log(f"serving {mask_url(url)} at grpc://{host}:{bound} (Optuna's gRPC proxy with hpo's "
        "study lock and heartbeats); Ctrl-C stops")
    try:
        with interrupts():
            server.wait_for_termination()
    except KeyboardInterrupt:
        take_interrupt()
        server.stop(grace=5).wait()
        log("stopped")


# --------------------------------------------------------------------------- the client
