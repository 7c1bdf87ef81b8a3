"""benchmarks/store_scaling.py at its smallest: SQLite, 1 and 2 processes for about a second each.
Its figures are positive and the store holds exactly the trials it reports. Timings are never
compared (the machine is shared)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script() -> Any:
    """The script as module ``store_scaling`` (its spawned workers import it by that name)."""
    if "store_scaling" not in sys.modules:
        spec = importlib.util.spec_from_file_location("store_scaling",
                                                      BENCHMARKS / "store_scaling.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["store_scaling"] = module
        spec.loader.exec_module(module)
    return sys.modules["store_scaling"]


def test_store_scaling_on_sqlite(tmp_path: Path, capsys) -> None:
    result = _script().main(["--json", "--stores", "sqlite", "--procs", "1,2", "--seconds", "1",
                             "--sqlite-dir", str(tmp_path)])
    assert '"trials_per_s"' in capsys.readouterr().out
    assert result["skipped"] == {} and result["settings"]["procs"] == [1, 2]
    assert result["settings"]["cpu"] and result["settings"]["user_attrs"] == 14
    rows = result["rows"]
    assert [(r["store"], r["procs"]) for r in rows] == [("sqlite", 1), ("sqlite", 2)]
    for r in rows:
        assert r["errors"] == 0 and r["first_error"] is None, r
        assert r["trials"] > 0 and r["trials_per_s"] > 0 and r["span_s"] > 0
        for name in ("ask", "body", "tell"):
            assert 0 < r[f"{name}_p50_ms"] <= r[f"{name}_p99_ms"]
        assert r["store_calls"] > r["trials"]  # a trial is many store calls
        # the store holds exactly the trials reported
        storage = optuna.storages.RDBStorage(r["url"])
        study = optuna.load_study(study_name=r["study"], storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        assert len(complete) == r["trials"] == r["stored"]
        assert len(study.trials) == r["trials"]  # nothing failed or left running
        trial = complete[0]
        assert len(trial.user_attrs) == 14 and len(trial.intermediate_values) == 4
        assert len(trial.params) == 7
        storage.engine.dispose()
