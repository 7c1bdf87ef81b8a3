"""The smoke matrix, run once per test session (by one of its test processes) and shared by
the tests that read it.

``hpo matrix --data mmnist --archs autoencoder --trials 3 --seeds 2 --budget smoke`` is started as
a real process, stopped with SIGTERM (what a batch system's time limit sends) as soon as the
comparison study holds its first retrain and a fixed retrain trains (an ``hpo fixed`` trial is
RUNNING), and started again with the same command, which must finish it. The first run's finished
trials are kept (``before``) so that tests can check the second run redid none of them, and its
RUNNING ones (``running``: none may be left behind).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from filelock import FileLock

COMMAND = ["matrix", "--data", "mmnist", "--archs", "autoencoder", "--trials", "3", "--seeds",
           "2", "--budget", "smoke"]
COMPARE = "compare-autoencoder-mmnist"
SEARCH = ("autoencoder-mmnist-convlstm", "autoencoder-mmnist-stlstm")
FIXED = ("fixed-autoencoder-mmnist-convlstm", "fixed-autoencoder-mmnist-stlstm")


def stop_when(proc: subprocess.Popen, ready, wait_s: float = 900.0,
              sig: int = signal.SIGTERM) -> tuple[str, str]:
    """SIGTERM (what a batch system's time limit sends; or ``sig``) to ``proc`` once ``ready()``,
    again every 5 s while it runs on; its stdout and stderr."""
    deadline = time.time() + wait_s
    while proc.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.3)
    for _ in range(20):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return proc.communicate(timeout=300)


def trials_in(db: Path, study: str, state: str = "%") -> int:
    """Trials of the studies named like ``study`` in ``state``, read without taking any lock
    (a run writes)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials JOIN studies USING (study_id) "
                                "WHERE study_name LIKE ? AND state LIKE ?",
                                (study, state)).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def running(url: str) -> list[str]:
    """``study trial`` of every RUNNING trial in the store."""
    return [f"{name} {t.number}" for name in optuna.get_all_study_names(url)
            for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.RUNNING]


def _finished(url: str) -> dict[str, dict[str, Any]]:
    """study -> trial number -> (state, value, completed at) of every finished trial."""
    out = {}
    for name in optuna.get_all_study_names(url):
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        out[name] = {str(t.number): [t.state.name, t.value, str(t.datetime_complete)]
                     for t in trials if t.state.is_finished()}
    return out


def run_smoke_matrix(base: Path) -> dict[str, Any]:
    """Run (once per session: cached under ``base``) the interrupted and resumed matrix."""
    root = base / "smoke-matrix"
    done = root / "result.json"
    with FileLock(str(base / "smoke-matrix.lock")):
        if done.is_file():
            return json.loads(done.read_text())
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        url = f"sqlite:///{root / 'store.db'}"
        args = [sys.executable, "-m", "hpo_vidpred.cli", *COMMAND, "--storage", url, "--out",
                str(root / "report")]
        env = {**os.environ, "HPO_MODELS_DIR": str(root / "models"), "OMP_NUM_THREADS": "1"}
        env.pop("HPO_STORAGE", None)
        first = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        db = root / "store.db"
        out1, err1 = stop_when(first, lambda: trials_in(db, COMPARE) >= 1
                               and trials_in(db, "fixed-%", "RUNNING") >= 1)
        before, left = _finished(url), running(url)
        second = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True,
                                timeout=1200)
        result = {"root": str(root), "url": url, "report": str(root / "report"),
                  "models": str(root / "models"), "first_rc": first.returncode,
                  "first_err": err1[-4000:], "before": before, "running": left,
                  "after": running(url), "rc": second.returncode,
                  "out": second.stdout, "err": second.stderr[-20000:]}
        done.write_text(json.dumps(result))
        return result


def copy_store(result: dict[str, Any], target: Path) -> str:
    """A private copy of the matrix's store (tests that add trials use one); its URL."""
    source = sqlite3.connect(Path(result["root"]) / "store.db")
    copy = sqlite3.connect(target / "store.db")
    with copy:
        source.backup(copy)  # WAL-safe, unlike copying the file
    source.close()
    copy.close()
    return f"sqlite:///{target / 'store.db'}"



def matrix_fixture():  # noqa: ANN201
    """A module-scoped fixture ``matrix`` with the smoke matrix's result (see
    :func:`run_smoke_matrix`); a test module declares it with ``smoke = matrix_fixture()``."""

    @pytest.fixture(scope="module", name="matrix")
    def _matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # one matrix for the session's test processes
            base = base.parent  # (each has a folder of its own inside the session's)
        return run_smoke_matrix(base)

    return _matrix
