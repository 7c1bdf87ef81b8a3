"""Riding out a dropped connection to the study store (docs/design.md section 11, "Studies,
stores and workers"): a PostgreSQL restart or fail-over, a network blip, a restarted gRPC proxy.

Every call of the storage API that the workers make (ask, tell, report, heartbeats, reads) is
retried with backoff while it fails because the connection was lost or refused; other errors (a
full disk, a constraint) pass at once. An outage has one deadline, :data:`RECONNECT_S` seconds
after the first call that met it, shared by every call of the process: the clean-up after it
(failing and re-queueing the running trial, the study lock) tries each call once more and does
not wait again. Its start is one line on stderr (``retrying until HH:MM:SS``); a call that gives
up raises :class:`StoreUnreachable`, one line with the store's URL and the reason
(``UNAVAILABLE: ...``). SQLAlchemy's ``pool_pre_ping`` replaces the dead pooled connections once
the server is back.

A worker that saw the store go away remembers when (:func:`last_outage`): for a while afterwards
it declares no trial dead, because the other workers' heartbeats could not reach the store either
(see :func:`hpo_vidpred.store.lifecycle.fail_stale`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna

from ..errors import HpoError
from .optuna_private import CACHE_CALLS, RDB_LOGGER

__all__ = ["RECONNECT_S", "RETRIED", "RetryingRDBStorage", "StoreUnreachable", "answered", "call",
           "last_outage", "note_outage", "reason", "retrying", "transient", "wait"]


def _seconds(variable: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(variable) or default))
    except ValueError:
        return default


# How long a store call keeps retrying a lost connection ($HPO_RECONNECT_S; 0: not at all).
RECONNECT_S = _seconds("HPO_RECONNECT_S", 120.0)
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)  # then 2 s between attempts

# The storage methods retried: Optuna's storage API (BaseStorage), the heartbeat ones, the
# private helpers Optuna's in-process cache (_CachedStorage) calls on the RDB storage it wraps
# (CACHE_CALLS) and the store's batched writes (rdb.Storage).
RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "get_best_trial",
    "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
    *CACHE_CALLS, "set_trial_user_attrs", "set_trial_params",
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
# time.monotonic() of the last lost connection seen here ("at"), and of the outage going on now:
# its start and deadline (None: none), the store it was announced for
_outage: dict[str, Any] = {"at": float("-inf"), "since": None, "until": None, "store": None}
_outage_lock = threading.Lock()


class StoreUnreachable(HpoError):
    """The store stayed unreachable until the outage's deadline (:data:`RECONNECT_S`)."""


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


def reason(exc: BaseException) -> str:
    """What went wrong, in a few words: a gRPC call's status and details (``UNAVAILABLE:
    failed to connect ...``), else the first line of the driver's message."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        code = getattr(exc, "code", None)
        if callable(code) and callable(getattr(exc, "details", None)):
            try:
                return f"{code().name}: {exc.details()}".splitlines()[0][:200]
            except Exception:  # noqa: BLE001
                pass
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    text = str(getattr(seen[-1], "orig", None) or seen[-1]).strip()
    return text.splitlines()[0][:200] if text else type(seen[-1]).__name__


def _lost(exc: BaseException, store: str | None = None) -> float:
    """Note a call that met a lost connection; returns the outage's deadline (``time.monotonic()``).
    The first call of an outage sets it and says so on stderr."""
    now = time.monotonic()
    with _outage_lock:
        previous, _outage["at"] = _outage["at"], now
        if _outage["until"] is not None and now - previous < RECONNECT_S:
            return _outage["until"]  # the same outage (no call since failed long ago)
        _outage.update(since=now, until=now + RECONNECT_S, store=store)
    until = time.strftime("%H:%M:%S", time.localtime(time.time() + RECONNECT_S))
    print(f"warning: {_named(store)} is unreachable ({reason(exc)}); retrying until {until} "
          f"(HPO_RECONNECT_S={RECONNECT_S:g}); finished trials are kept", file=sys.stderr,
          flush=True)
    return _outage["until"]


def answered() -> None:
    """A call went through: an outage going on is over."""
    if _outage["until"] is None:
        return
    with _outage_lock:
        since, store = _outage["since"], _outage["store"]
        if since is None:
            return
        _outage.update(since=None, until=None, store=None)
    print(f"note: {_named(store)} answers again (after {time.monotonic() - since:.0f} s)",
          file=sys.stderr, flush=True)


def _named(store: str | None) -> str:
    return "the study store" + (f" {store}" if store else "")


def _unreachable(exc: BaseException, store: str | None = None) -> StoreUnreachable:
    """The one line for an outage that outlasted its deadline."""
    since = _outage["since"]
    waited = f" for {time.monotonic() - since:.0f} s" if since is not None else ""
    return StoreUnreachable(
        f"cannot reach {_named(store)} ({reason(exc)}){waited}; check that the "
        "database server (or hpo store serve) runs and the URL is right, then rerun the same "
        "command (finished trials are kept; a running trial is re-run)")


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


logging.getLogger(RDB_LOGGER).addFilter(_LostConnectionWarning())


def call(fn: Callable[..., Any], *args: Any, settled: Callable[[], bool] | None = None,
         store: str | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried with backoff while it fails on a lost connection, until
    the outage's deadline (:func:`wait`); then :class:`StoreUnreachable` naming ``store`` (its
    masked URL). Nested calls (a retried method calling another) run once: the outermost call
    retries. ``settled``: for a state change, whether it is done already -- an attempt that lost
    its connection may have committed, and the retry then finds the trial finished
    (``UpdateFinishedTrialError``); if ``settled()``, that retry succeeded."""
    if getattr(_local, "active", False):
        return fn(*args, **kwargs)
    _local.active = True
    try:
        attempt = 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if attempt and settled is not None and settled():
                    return True
                raise
            except StoreUnreachable:
                raise
            except Exception as exc:
                if not transient(exc):
                    raise
                wait(exc, attempt, store)
                attempt += 1
                continue
            answered()
            return result
    finally:
        _local.active = False


def wait(exc: BaseException, attempt: int, store: str | None = None) -> None:
    """Sleep before retry ``attempt + 1`` of a call that met a lost connection, or raise
    :class:`StoreUnreachable` when the outage's deadline has passed."""
    deadline = _lost(exc, store)
    left = deadline - time.monotonic()
    if left <= 0:
        raise _unreachable(exc, store) from exc
    time.sleep(min(left, BACKOFF_S[attempt] if attempt < len(BACKOFF_S) else 2.0))


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
        return call(method, *args, settled=settled, store=getattr(self, "hpo_url", None),
                    **kwargs)

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
