"""Riding out a dropped connection to the study store (DESIGN section 11, "Studies, stores and
workers"): a PostgreSQL restart or fail-over, a network blip, a restarted gRPC proxy.

Every call of the storage API that the workers make (ask, tell, report, heartbeats, reads) is
retried with backoff while it fails because the connection was lost or refused, for up to
:data:`RECONNECT_S` seconds; other errors (a full disk, a constraint) pass at once. SQLAlchemy's
``pool_pre_ping`` replaces the dead pooled connections once the server is back.

A worker that saw the store go away remembers when (:func:`last_outage`): for a while afterwards
it declares no trial dead, because the other workers' heartbeats could not reach the store either
(see :func:`hpo_vidpred.store.lifecycle.fail_stale`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna

__all__ = ["RECONNECT_S", "RETRIED", "RetryingRDBStorage", "call", "last_outage", "note_outage",
           "retrying", "transient"]


def _seconds(variable: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(variable) or default))
    except ValueError:
        return default


# How long a store call keeps retrying a lost connection ($HPO_RECONNECT_S; 0: not at all).
RECONNECT_S = _seconds("HPO_RECONNECT_S", 120.0)
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)  # then 2 s between attempts

# The storage methods retried: Optuna's storage API (BaseStorage), the heartbeat ones and the
# private helpers Optuna's in-process cache (_CachedStorage) calls on the RDB storage it wraps.
RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "get_best_trial",
    "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
    "_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
    "_get_stale_trial_ids", "set_trial_user_attrs", "set_trial_params",
)

# Fragments of the messages of a lost, refused or not-yet-accepting connection (psycopg 3,
# PostgreSQL's own while it shuts down or starts, the socket layer).
_LOST = (
    "connection refused", "could not connect", "connection failed", "server closed the "
    "connection", "terminating connection", "the database system is starting up", "the "
    "database system is shutting down", "the database system is in recovery mode", "the "
    "connection is closed", "connection is lost", "connection reset", "broken pipe",
    "ssl syscall", "no connection to the server", "consuming input failed", "timeout expired",
    "connection timed out", "cannot connect now", "admin_shutdown",
)

_local = threading.local()
_outage = {"at": float("-inf")}  # time.monotonic() of the last lost connection seen here


def transient(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it wraps) is a lost or refused connection."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        if getattr(exc, "connection_invalidated", False):  # SQLAlchemy saw the connection die
            return True
        code = getattr(exc, "code", None)
        if callable(code):
            try:  # a gRPC call (grpc.RpcError): the proxy is not (yet) reachable
                if getattr(code(), "name", "") == "UNAVAILABLE":
                    return True
            except Exception:  # noqa: BLE001
                pass
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    text = " ".join(str(e) for e in seen).lower()
    return any(fragment in text for fragment in _LOST)


def note_outage() -> None:
    """Remember that the store was unreachable just now (see :func:`last_outage`)."""
    _outage["at"] = time.monotonic()


def last_outage() -> float:
    """``time.monotonic()`` when this process last saw the store unreachable (-inf: never)."""
    return _outage["at"]


class _LostConnectionWarning(logging.Filter):
    """Drops Optuna's "Caught an error from sqlalchemy ... Falling back to a slower alternative"
    warning when the error is a lost connection: Optuna takes every OperationalError there for
    too many SQL variables, and its multi-line SQL dump would reach the user for an outage that
    :func:`call` rides out (its fallback query fails the same way and is retried)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Caught an error from sqlalchemy") and \
                any(fragment in message.lower() for fragment in _LOST):
            note_outage()
            return False
        return True


logging.getLogger("optuna.storages._rdb.storage").addFilter(_LostConnectionWarning())


def call(fn: Callable[..., Any], *args: Any, settled: Callable[[], bool] | None = None,
         **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried with backoff while it fails on a lost connection (at most
    :data:`RECONNECT_S` seconds). Nested calls (a retried method calling another) run once: the
    outermost call retries. ``settled``: for a state change, whether it is done already -- an
    attempt that lost its connection may have committed, and the retry then finds the trial
    finished (``UpdateFinishedTrialError``); if ``settled()``, that retry succeeded."""
    if getattr(_local, "active", False):
        return fn(*args, **kwargs)
    _local.active = True
    try:
        deadline = time.monotonic() + RECONNECT_S
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if attempt and settled is not None and settled():
                    return True
                raise
            except Exception as exc:
                if not transient(exc) or time.monotonic() >= deadline:
                    raise
                note_outage()
                time.sleep(BACKOFF_S[attempt] if attempt < len(BACKOFF_S) else 2.0)
                attempt += 1
    finally:
        _local.active = False


def _retried(cls: type, name: str) -> Callable[..., Any]:
    """``cls.name`` retried (:func:`call`). An inherited method is looked up in ``cls``'s bases
    at each call, so that what patches Optuna's class later (``hpo_vidpred.bench.store``'s
    timing) is still called; one ``cls`` defines itself is kept."""
    own = vars(cls).get(name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        method = own.__get__(self) if own is not None else getattr(super(cls, self), name)
        settled = None
        if name == "set_trial_state_values":
            trial_id = args[0] if args else kwargs["trial_id"]
            state = args[1] if len(args) > 1 else kwargs["state"]
            settled = lambda: self.get_trial(trial_id).state == state  # noqa: E731
        return call(method, *args, settled=settled, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = getattr(getattr(cls, name, None), "__doc__", None)
    return wrapper


def retrying(cls: type) -> type:
    """Class decorator: every method of :data:`RETRIED` that ``cls`` inherits, retried on a lost
    connection (see :func:`call`)."""
    for name in RETRIED:
        if getattr(cls, name, None) is not None:
            setattr(cls, name, _retried(cls, name))
    return cls


@retrying
class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose API calls ride out a lost connection (:func:`call`)."""
