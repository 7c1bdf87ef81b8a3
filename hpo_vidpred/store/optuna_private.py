"""Optuna's private names, the one module of the project that uses them: attributes of its
studies, trials and storages (a study's storage and id, a trial's id, a live trial's cached
frozen trial, a gRPC proxy's channel), private modules (the RDB models and scoped session, the
heartbeat helpers, the gRPC proxy's servicer and generated code) and private methods of its RDB
storage. Optuna may change any of them in any release (setup.cfg pins its minor version): kept
here, behind small named functions, a change breaks this module only. tests/test_layout.py keeps
them out of every other module.

One kind of use stays outside: the hooks of Optuna's classes that the store's subclasses override
(``_create_new_trial``, ``_get_trials`` and ``_set_trial_param`` in :mod:`.rdb`, ``_setup`` in
:mod:`.grpc_client`) carry Optuna's names where they are defined, and call their parents' versions
through ``super()``; :data:`CACHE_CALLS` lists the RDB storage's for :mod:`.retry`.

Nothing here imports a private module before it is used: importing this module costs nothing
beyond Optuna itself, and the gRPC parts (which import ``grpc``) load only when
:mod:`.grpc_server` asks for them, after it has set gRPC's environment up.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["CACHE_CALLS", "RDB_LOGGER", "backend_of", "cached_frozen_trial", "channel_of",
           "get_trials", "grpc_api", "heartbeat_enabled", "heartbeat_table", "proxy_service",
           "rdb_models", "scoped_session", "served_storage", "set_trial_attr_without_commit",
           "set_trial_param_without_commit", "stale_trial_ids", "storage_of", "study_id_of",
           "to_proto_trial", "trial_id_of", "with_params"]

# The private methods of the RDB storage that Optuna calls on it from outside: its in-process
# cache (``_CachedStorage``), its heartbeat check and its gRPC servicer (retried like the API:
# :data:`hpo_vidpred.store.retry.RETRIED`).
CACHE_CALLS = ("_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
               "_get_stale_trial_ids")

# The logger of Optuna's RDB storage (its warnings on SQLAlchemy errors).
RDB_LOGGER = "optuna.storages._rdb.storage"


# --------------------------------------------------------------------------- studies and trials
def storage_of(study: Any) -> Any:
    """The storage a study reads and writes through (Optuna's cache around an RDB storage)."""
    return study._storage


def study_id_of(study: Any) -> int:
    return study._study_id


def trial_id_of(trial: Any) -> int:
    """The storage's id of a trial (``optuna.Trial`` or ``FrozenTrial``), not its number."""
    return trial._trial_id


def cached_frozen_trial(trial: Any) -> Any:
    """The ``FrozenTrial`` a live ``optuna.Trial`` keeps of itself (its ``user_attrs`` are what
    the trial reads back)."""
    return trial._cached_frozen_trial


def with_params(trial: Any, params: dict[str, Any], distributions: dict[str, Any]) -> Any:
    """A copy of the ``FrozenTrial`` ``trial`` with ``params`` (external values) and their
    ``distributions`` added; ``trial`` itself is left as it was."""
    trial = copy.copy(trial)
    trial._params = {**trial._params, **params}
    trial._distributions = {**trial._distributions, **distributions}
    return trial


# --------------------------------------------------------------------------- storages
def backend_of(storage: Any) -> Any:
    """The RDB storage under Optuna's in-process cache (``_CachedStorage``); any other storage
    itself."""
    return getattr(storage, "_backend", storage)


def get_trials(storage: Any, study_id: int, states: Container[Any] | None,
               included_trial_ids: set[int], trial_id_greater_than: int) -> list:
    """The RDB storage's read of a study's trials: those of ``included_trial_ids`` up to
    ``trial_id_greater_than`` and every later one (what Optuna's cache asks for)."""
    return storage._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)


def stale_trial_ids(storage: Any, study_id: int) -> list[int]:
    """The study's RUNNING trials whose heartbeat is older than the storage's grace period."""
    return storage._get_stale_trial_ids(study_id)


def heartbeat_enabled(storage: Any) -> bool:
    """Whether ``storage`` records heartbeats (a ``BaseHeartbeat`` with an interval)."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    return isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)


def heartbeat_table() -> Any:
    """The SQLAlchemy table of the RDB storage's heartbeats (``trial_id``, ``heartbeat``)."""
    from optuna.storages._rdb.models import TrialHeartbeatModel

    return TrialHeartbeatModel.__table__


def rdb_models() -> Any:
    """The module of the RDB storage's SQLAlchemy models (``TrialModel``, ...)."""
    from optuna.storages._rdb import models

    return models


def scoped_session(storage: Any, *, ignore_integrity_error: bool) -> AbstractContextManager:
    """A session of the RDB storage ``storage`` (a context manager) whose transaction commits
    when the block ends (rolled back on an error), as Optuna's own writes take it."""
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(storage.scoped_session, ignore_integrity_error)


def set_trial_param_without_commit(storage: Any, session: Any, trial_id: int, name: str,
                                   value: float, distribution: Any) -> None:
    """The RDB storage's write of one parameter (checked as ``set_trial_param`` checks it) in
    ``session``'s transaction."""
    storage._set_trial_param_without_commit(session, trial_id, name, value, distribution)


def set_trial_attr_without_commit(storage: Any, session: Any, model: Any, trial_id: int,
                                  key: str, value: Any) -> None:
    """The RDB storage's upsert of one attribute (``model``: the user or system attribute model)
    in ``session``'s transaction."""
    storage._set_trial_attr_without_commit(session, model, trial_id, key, value)


def channel_of(proxy: Any) -> Any:
    """The gRPC channel of a ``GrpcStorageProxy`` (open after its ``_setup``)."""
    return proxy._channel


# --------------------------------------------------------------------------- the gRPC proxy
# These import grpc: only grpc_server.py calls them, after setting gRPC's environment up.
def grpc_api() -> tuple[Any, Any]:
    """Optuna's generated gRPC code: the modules ``api_pb2`` and ``api_pb2_grpc``."""
    from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc

    return api_pb2, api_pb2_grpc


def proxy_service() -> type:
    """Optuna's proxy service class (``OptunaStorageProxyService``), to subclass."""
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    return OptunaStorageProxyService


def served_storage(servicer: Any) -> Any:
    """The storage an ``OptunaStorageProxyService`` serves."""
    return servicer._backend


def to_proto_trial(trial: Any) -> Any:
    """A ``FrozenTrial`` as the proxy sends it (``api_pb2.Trial``)."""
    from optuna.storages._grpc.servicer import _to_proto_trial

    return _to_proto_trial(trial)
