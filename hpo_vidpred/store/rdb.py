"""The RDB storage the study store opens (SQLite, PostgreSQL): Optuna's, with lost connections
ridden out (:mod:`.retry`) and fewer round trips per trial (DESIGN section 11; measured by
``benchmarks/store_overhead.py``, before and after in benchmarks/RESULTS.md):

- A study's id is looked up once per storage object: Optuna's Hyperband pruner builds a new study
  object, and with it a lookup by name, whenever the sampler or the pruner reads a bracket (about
  11 lookups per trial of a small search).
- Several user attributes of a trial are written in one statement
  (:func:`hpo_vidpred.store.lifecycle.set_user_attrs`; 14 calls per trial were 3).
- Within :func:`reading_once` (a trial's sampling) the study's trials are read from the store at
  most once: TPE reads them for every parameter it samples through a fresh bracket study, which
  Optuna's own per-trial cache (kept on the study object) never hits. What the sampler sees is the
  snapshot of the first read, as Optuna's cache intends. The sampled parameters are written when
  the block ends, in one transaction (7 round trips per trial were 1).

The attributes stay one row per key: readers, reports and optuna-dashboard see what they saw.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from sqlalchemy.dialects import postgresql, sqlite

from . import retry

__all__ = ["Storage", "reading_once"]

_window = threading.local()


@contextlib.contextmanager
def reading_once() -> Iterator[None]:
    """In this thread, until the block ends, read each study's trials from the store once (later
    reads find nothing new, so Optuna's cache answers them). Nested blocks join the outer one."""
    if getattr(_window, "read", None) is not None:
        yield
        return
    _window.read, _window.params = set(), []
    try:
        yield
    finally:
        params, _window.read, _window.params = _window.params, None, None
        for storage in dict.fromkeys(p[0] for p in params):
            storage.set_trial_params([p[1:] for p in params if p[0] is storage])


@retry.retrying
class Storage(retry.RetryingRDBStorage):
    """Optuna's RDB storage, retried on a lost connection, with the savings of the module doc."""

    def get_study_id_from_name(self, study_name: str) -> int:
        ids = self.__dict__.setdefault("_hpo_study_ids", {})
        if study_name not in ids:  # an unknown name raises KeyError and is not remembered
            ids[study_name] = super().get_study_id_from_name(study_name)
        return ids[study_name]

    def delete_study(self, study_id: int) -> None:
        ids = self.__dict__.get("_hpo_study_ids", {})
        for name in [n for n, i in ids.items() if i == study_id]:
            del ids[name]
        super().delete_study(study_id)

    def _get_trials(self, study_id: int, states: Any, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list:
        read = getattr(_window, "read", None)
        if read is not None and states is None:  # Optuna's cache asking what changed
            if study_id in read:
                return []
            trials = super()._get_trials(study_id, states, included_trial_ids,
                                         trial_id_greater_than)
            read.add(study_id)
            return trials
        return super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        params = getattr(_window, "params", None)
        if params is None:
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                     previous_distribution)
        else:  # written when reading_once ends
            params.append((self, trial_id, param_name, param_value_internal, distribution,
                           previous_distribution))

    def set_trial_params(self, params: list[tuple]) -> None:
        """Several ``_set_trial_param(trial_id, name, value, distribution, previous)`` in one
        transaction (Optuna's checks of each: the trial is running, the distribution fits)."""
        if not params:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            for args in params:
                self._set_trial_param_without_commit(session, *args)

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Set several user attributes of a running trial in one transaction (one statement
        on SQLite and PostgreSQL): as ``set_trial_user_attr`` for each, in one round trip."""
        model = models.TrialUserAttributeModel
        with _create_scoped_session(self.scoped_session, True) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, trial.state)
            dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(self.engine.name)
            if dialect is None:  # another database: Optuna's own upsert, key by key
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)
                return
            insert = dialect.insert(model).values(
                [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                 for key, value in attrs.items()])
            session.execute(insert.on_conflict_do_update(
                index_elements=[model.trial_id, model.key],
                set_={"value_json": insert.excluded.value_json}))
