"""The client of ``hpo store serve``: ``hpo run --storage grpc://host:port``
(:class:`ProxyStorage`, Optuna's ``GrpcStorageProxy`` plus the ``hpo.Store`` calls the server
adds: the study lock, heartbeats, the stale check; :mod:`.grpc_server` says what they do)."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# gRPC's core logs its own lines (``E1202 ... add_port.cc:83] Failed to add port``) to stderr
# before ours say the same in one line with what to do; GRPC_VERBOSITY=error brings them back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import optuna  # noqa: E402
from optuna.storages import GrpcStorageProxy  # noqa: E402

from ..errors import HpoError  # noqa: E402
from . import retry  # noqa: E402
from .optuna_private import channel_of  # noqa: E402
from .urls import CONNECT_TIMEOUT_S, mask_url  # noqa: E402

__all__ = ["DEFAULT_PORT", "PROTOCOL", "SERVICE", "ProxyStorage", "connect"]

DEFAULT_PORT = 13000
SERVICE = "hpo.Store"
PROTOCOL = 1


def _dump(message: dict) -> bytes:
    return json.dumps(message).encode()


def _load(data: bytes) -> dict:
    return json.loads(data.decode())


class ProxyStorage(GrpcStorageProxy):
    """Optuna's ``GrpcStorageProxy`` plus the ``hpo.Store`` calls: :meth:`study_lock`,
    :meth:`record_heartbeat`, :meth:`fail_stale`. Storage calls are retried while the proxy is
    unreachable (:mod:`.retry`)."""

    def __init__(self, *, host: str, port: int, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or (2 * heartbeat_interval if heartbeat_interval
                                             else None)
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        super()._setup()
        channel = channel_of(self)
        self._hpo = {name: channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=_dump,
                                               response_deserializer=_load)
                     for name in ("Hello", "Heartbeat", "FailStale")}
        self._hpo_lock = channel.unary_stream(f"/{SERVICE}/Lock", request_serializer=_dump,
                                              response_deserializer=_load)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_hpo", None)
        state.pop("_hpo_lock", None)
        return state

    def hello(self) -> dict:
        """The server's answer, waiting up to CONNECT_TIMEOUT_S for one that is starting (on
        this channel: Optuna's ``wait_server_ready`` opens and closes a second one, 0.2 s)."""
        return self._hpo["Hello"]({}, timeout=CONNECT_TIMEOUT_S, wait_for_ready=True)

    def record_heartbeat(self, trial_id: int) -> None:  # retried: see retry.RETRIED
        self._hpo["Heartbeat"]({"trial_id": int(trial_id)})

    def fail_stale(self, study_name: str, orphan_age: float) -> None:
        """Fail and re-queue the study's stale and orphaned trials (on the server)."""
        if self.heartbeat_interval is None:
            return
        retry.call(self._hpo["FailStale"], {
            "study": study_name, "heartbeat": int(self.heartbeat_interval),
            "grace": int(self.grace_period), "orphan_age": float(orphan_age)},
            store=getattr(self, "hpo_url", None))

    @contextmanager
    def study_lock(self, study_name: str) -> Iterator[None]:
        """Hold the study's lock on the server for the duration of the block."""
        delay, attempt = 0.02, 0
        while True:
            call = self._hpo_lock({"study": study_name})
            try:
                granted = next(call, {"granted": False})["granted"]  # no answer: try again
            except grpc.RpcError as exc:
                call.cancel()
                if not retry.transient(exc):
                    raise
                retry.wait(exc, attempt, getattr(self, "hpo_url", None))  # or give up
                attempt += 1
                continue
            retry.answered()
            if granted:
                break
            call.cancel()
            time.sleep(delay)
            delay = min(2 * delay, 0.25)
        try:
            yield
        finally:
            call.cancel()


retry.retrying(ProxyStorage)


def connect(url: str, *, heartbeat_interval: int | None = None,
            grace_period: int | None = None) -> ProxyStorage:
    """A :class:`ProxyStorage` for ``grpc://host[:port]``; one line within seconds when nothing
    answers there, or when a bare Optuna proxy (without ``hpo.Store``) answers."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host, port = parsed.host or "localhost", parsed.port or DEFAULT_PORT
    with warnings.catch_warnings():  # "GrpcStorageProxy is experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = ProxyStorage(host=host, port=port, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    storage.hpo_url = mask_url(url)  # what the retries' lines name
    try:
        storage.hello()
    except grpc.RpcError as exc:
        storage.close()
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise HpoError(f"{mask_url(url)} is a bare Optuna gRPC proxy, without hpo's study "
                           "lock and heartbeats; serve the store with 'hpo store serve' "
                           "instead") from None
        raise HpoError(f"cannot reach the study store {mask_url(url)} (no gRPC proxy answers "
                       "there); start one with 'hpo store serve --storage URL --host 0.0.0.0' "
                       "or check the host and port") from None
    return storage
