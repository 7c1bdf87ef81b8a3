"""The RDB storage the study store opens (SQLite, PostgreSQL): Optuna's, with lost connections
ridden out (:mod:`.retry`), SQLite transactions that take the write lock up front, and fewer
round trips per trial (docs/design.md section 11; measured by ``benchmarks/store_overhead.py``,
before and after in benchmarks/RESULTS.md). It keeps Optuna's storage contract
(``optuna.testing.pytest_storages.StorageTestCase`` passes against it, inside
:func:`reading_once` too: tests/store/test_optuna_contract.py).

- Several user attributes of a trial are written in one statement
  (:func:`hpo_vidpred.store.lifecycle.set_user_attrs`; 14 calls per trial were 3).
- Within :func:`reading_once` (a trial's sampling) each study's trials are read from the store
  once and its id looked up once: TPE reads the trials for every parameter it samples through a
  fresh bracket study, each looking the study up by name, which Optuna's own per-trial cache
  (kept on the study object) never hits. What the sampler sees is the snapshot of the first read,
  as Optuna's cache intends; a write through this storage (from any thread) ends the snapshot, so
  a read after it sees it. The sampled parameters are checked at once, as Optuna checks them (a
  finished trial, a distribution that does not fit the study's), and written in one transaction
  before the next write or when the block ends; reads of the trial see them before that.
- Outside :func:`reading_once` nothing is remembered: a study id remembered for the life of a
  process (``hpo store serve``, a worker pool) outlived a delete by another process and sent a
  trial into the study that took over the id (SQLite reuses the highest id).

SQLite: pysqlite's own transaction handling is off (``isolation_level=None``); every
transaction starts with ``BEGIN IMMEDIATE`` when it writes (the write lock taken up front, so a
transaction that read first can never fail with "database is locked" in WAL mode) and with a
plain ``BEGIN`` when it only reads (WAL readers never wait, so a read opened while this thread
writes does not wait out the busy timeout). The engine is set up so again after unpickling.

The attributes stay one row per key: readers, reports and optuna-dashboard see what they saw.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from optuna import distributions as optuna_distributions
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from . import optuna_private, retry
from .optuna_private import scoped_session, trial_id_of

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "Storage", "reading_once"]

SQLITE_BUSY_TIMEOUT_S = 60

_local = threading.local()  # .window: the open reading_once block; .writing: write depth


@dataclass
class _Param:
    storage: Storage
    study_id: int
    trial_id: int
    name: str
    value: float
    distribution: Any


@dataclass
class _Window:
    """What one :func:`reading_once` block remembers, per storage object: trial snapshots and
    study ids (each with the storage's write count when read), and the parameters to write."""

    trials: dict[tuple[Storage, int], tuple[int, list]] = field(default_factory=dict)
    ids: dict[tuple[Storage, str], tuple[int, int]] = field(default_factory=dict)
    params: list[_Param] = field(default_factory=list)


def _window() -> _Window | None:
    return getattr(_local, "window", None)


@contextlib.contextmanager
def reading_once() -> Iterator[None]:
    """In this thread, until the block ends, read each study's trials and id from the store once
    (until this process writes through the same storage) and write the sampled parameters
    together. Nested blocks join the outer one. An error raised inside the block is the one that
    leaves it: the parameters sampled before it are still written (as Optuna keeps them)."""
    if _window() is not None:
        yield
        return
    window = _local.window = _Window()
    try:
        yield
    except BaseException:
        _local.window = None
        with contextlib.suppress(Exception):  # the block's own error is the one to see
            _write_params(window.params)
        raise
    _local.window = None
    _write_params(window.params)


def _write_params(params: list[_Param]) -> None:
    for storage in dict.fromkeys(p.storage for p in params):
        storage.set_trial_params([p for p in params if p.storage is storage])


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """Mark this thread's transactions as writing (SQLite: ``BEGIN IMMEDIATE``)."""
    _local.writing = getattr(_local, "writing", 0) + 1
    try:
        yield
    finally:
        _local.writing -= 1


def _begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(_local, "writing", 0) else "BEGIN")


# The API's writes that change what a study or trial reads back: each first writes the parameters
# sampled before it, takes SQLite's write lock up front and ends this storage's snapshots.
_WRITES = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
           "create_new_trial", "_create_new_trial", "set_trial_state_values",
           "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr")


class _Base(retry.RetryingRDBStorage):
    """Optuna's RDB storage with its engine set up for hpo (again after unpickling) and every
    write of :data:`_WRITES` done through :meth:`_write`."""

    def __init__(self, url: str, engine_kwargs: dict | None = None, *args: Any,
                 **kwargs: Any) -> None:
        engine_kwargs = dict(engine_kwargs or {})
        if url.startswith("sqlite"):  # pysqlite's own BEGINs off: _begin emits them
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S,
                                             **engine_kwargs.get("connect_args", {}),
                                             "isolation_level": None}
        self._hpo_counter, self._hpo_writes = itertools.count(1), 0
        super().__init__(url, engine_kwargs, *args, **kwargs)
        self._set_up_engine()

    def _set_up_engine(self) -> None:
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "begin", _begin)
        # a pooled connection found dead (pre-ping) or dropped mid-query: the store was away
        event.listen(self.engine, "invalidate", lambda *args: retry.note_outage())

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_hpo_counter", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._hpo_counter = itertools.count(self._hpo_writes + 1)
        self._set_up_engine()

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``name`` of Optuna's storage, after the parameters this thread sampled before it,
        in a writing transaction; then this storage's snapshots are over."""
        self._flush_params()
        try:
            with _writing():
                return getattr(super(), name)(*args, **kwargs)
        finally:
            self._hpo_writes = next(self._hpo_counter)

    def _flush_params(self) -> None:
        window = _window()
        if window is None or not any(p.storage is self for p in window.params):
            return
        mine = [p for p in window.params if p.storage is self]
        window.params = [p for p in window.params if p.storage is not self]
        try:
            self.set_trial_params(mine)
        except BaseException:
            window.params = mine + window.params  # a retried call writes them again
            raise


def _writer(name: str) -> Any:
    def method(self: _Base, *args: Any, **kwargs: Any) -> Any:
        return self._write(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in _WRITES:
    setattr(_Base, _name, _writer(_name))


@retry.retrying
class Storage(_Base):
    """Optuna's RDB storage, retried on a lost connection, with the savings of the module doc."""

    # --- reads inside reading_once: one snapshot per study, the pending parameters on top
    def get_study_id_from_name(self, study_name: str) -> int:
        window = _window()
        if window is None:
            return super().get_study_id_from_name(study_name)
        known = window.ids.get((self, study_name))
        if known is not None and known[0] == self._hpo_writes:
            return known[1]
        writes = self._hpo_writes
        study_id = super().get_study_id_from_name(study_name)
        window.ids[(self, study_name)] = (writes, study_id)
        return study_id

    def _get_trials(self, study_id: int, states: Any, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list:
        window = _window()
        if window is None:
            return super()._get_trials(study_id, states, included_trial_ids,
                                       trial_id_greater_than)
        trials = _snapshot(self, window, study_id)
        if trials is None:
            writes = self._hpo_writes
            trials = super()._get_trials(study_id, None, set(), -1)
            window.trials[(self, study_id)] = (writes, trials)
        # Optuna's selection: the given ids up to trial_id_greater_than, and every later id
        included = {i for i in included_trial_ids if i <= trial_id_greater_than}
        return [_with_params(self, t, window) for t in trials
                if (states is None or t.state in states)
                and (trial_id_of(t) in included or trial_id_of(t) > trial_id_greater_than)]

    def get_trial(self, trial_id: int) -> Any:
        return _with_params(self, super().get_trial(trial_id), _window())

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        window = _window()
        for p in window.params if window is not None else ():
            if p.storage is self and p.trial_id == trial_id and p.name == param_name:
                return p.value
        return super().get_trial_param(trial_id, param_name)

    # --- writes
    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        """Inside :func:`reading_once`, a parameter of a trial in the snapshot is checked now
        (as Optuna checks it: the trial still running, the distribution fits the study's) and
        written with the others; anywhere else it is written now."""
        window = _window()
        found = None
        for (storage, study_id), (writes, trials) in (window.trials.items() if window else ()):
            if storage is self and writes == self._hpo_writes:
                found = next((t for t in trials if trial_id_of(t) == trial_id), None)
                if found is not None:
                    break
        if found is None:
            self._write("_set_trial_param", trial_id, param_name, param_value_internal,
                        distribution, previous_distribution)
            return
        if found.state.is_finished():
            self.check_trial_is_updatable(trial_id, found.state)  # raises, naming the trial
        pending = [p for p in window.params if p.storage is self and p.study_id == study_id]
        if param_name in found.params or any(p.trial_id == trial_id and p.name == param_name
                                             for p in pending):
            return  # Optuna keeps a trial's first value of a parameter (a unique key)
        if previous_distribution is None:
            known = [t.distributions[param_name] for t in trials
                     if param_name in t.distributions]
            known += [p.distribution for p in pending if p.name == param_name]
            previous_distribution = known[0] if known else None
        if previous_distribution is not None:
            optuna_distributions.check_distribution_compatibility(previous_distribution,
                                                                  distribution)
        window.params.append(_Param(self, study_id, trial_id, param_name, param_value_internal,
                                    distribution))

    def set_trial_params(self, params: list[_Param]) -> None:
        """Write sampled parameters in one transaction (Optuna's checks of each: the trial is
        running, the distribution fits). If that fails, each is tried alone, so that one that
        cannot be written does not take the others with it; the first error is raised."""
        if not params:
            return
        self._flush_params()
        try:
            with _writing(), scoped_session(self, ignore_integrity_error=True) as session:
                for p in params:
                    optuna_private.set_trial_param_without_commit(
                        self, session, p.trial_id, p.name, p.value, p.distribution)
            return
        except Exception as exc:
            if retry.transient(exc) or len(params) == 1:
                raise
        finally:
            self._hpo_writes = next(self._hpo_counter)
        first = None
        for p in params:
            try:
                with _writing():
                    super()._set_trial_param(p.trial_id, p.name, p.value, p.distribution, None)
            except Exception as exc:  # noqa: BLE001
                first = first or exc
        if first is not None:
            raise first

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Set several user attributes of a running trial in one transaction (one statement
        on SQLite and PostgreSQL): as ``set_trial_user_attr`` for each, in one round trip."""
        self._flush_params()
        models = optuna_private.rdb_models()
        model = models.TrialUserAttributeModel
        try:
            with _writing(), scoped_session(self, ignore_integrity_error=True) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, trial.state)
                dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(self.engine.name)
                if dialect is None:  # another database: Optuna's own upsert, key by key
                    for key, value in attrs.items():
                        optuna_private.set_trial_attr_without_commit(self, session, model,
                                                                     trial_id, key, value)
                    return
                insert = dialect.insert(model).values(
                    [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                     for key, value in attrs.items()])
                session.execute(insert.on_conflict_do_update(
                    index_elements=[model.trial_id, model.key],
                    set_={"value_json": insert.excluded.value_json}))
        finally:
            self._hpo_writes = next(self._hpo_counter)

    def record_heartbeat(self, trial_id: int) -> None:
        # a write that no read sees: it leaves the snapshots (the heartbeat thread beats while
        # the trial samples)
        with _writing():
            super().record_heartbeat(trial_id)


def _snapshot(storage: Storage, window: _Window, study_id: int) -> list | None:
    """The study's trials as this block read them, while nothing was written since."""
    known = window.trials.get((storage, study_id))
    return known[1] if known is not None and known[0] == storage._hpo_writes else None


def _with_params(storage: Storage, trial: Any, window: _Window | None) -> Any:
    """``trial`` with the parameters sampled for it and not yet written (a copy: what a snapshot
    handed out never changes)."""
    if window is None:
        return trial
    trial_id = trial_id_of(trial)
    mine = [p for p in window.params if p.storage is storage and p.trial_id == trial_id]
    if not mine:
        return trial
    return optuna_private.with_params(
        trial, {p.name: p.distribution.to_external_repr(p.value) for p in mine},
        {p.name: p.distribution for p in mine})
