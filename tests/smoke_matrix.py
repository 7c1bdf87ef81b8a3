"""The issue's smoke matrix, run once per test session and shared by the tests that read it.

``hpo matrix --data mmnist --archs autoencoder --trials 3 --seeds 2 --budget smoke`` is started as
a real process, interrupted with SIGINT as soon as the comparison study holds its first retrain,
and started again with the same command, which must finish it. The first run's finished trials
are kept (``before``) so that tests can check the second run redid none of them.
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


def _finished(url: str) -> dict[str, dict[str, Any]]:
    """study -> trial number -> (state, value, completed at) of every finished trial."""
    out = {}
    for name in optuna.get_all_study_names(url):
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        out[name] = {str(t.number): [t.state.name, t.value, str(t.datetime_complete)]
                     for t in trials if t.state.is_finished()}
    return out


SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")


def _compare_trials(db: Path) -> int:
    """Trials of the comparison study, read without taking any lock (the matrix writes)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials JOIN studies USING (study_id) "
                                "WHERE study_name = ?", (COMPARE,)).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


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
        # SIGINT as at a terminal even when the tests run as a background job (which ignores
        # it): restored by a small exec wrapper, not a preexec_fn (a fork of this process, which
        # may hold gRPC's threads from the proxy tests, can abort before it execs)
        first = subprocess.Popen([sys.executable, "-c", SIGINT_DEFAULT, *args], cwd=root,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        deadline = time.time() + 900
        while first.poll() is None and time.time() < deadline:
            if (root / "store.db").is_file() and _compare_trials(root / "store.db") >= 1:
                break
            time.sleep(0.5)
        # Ctrl-C, again every few seconds while it runs on: Python drops a KeyboardInterrupt
        # that lands in a weakref callback or __del__ ("Exception ignored in ..."), as a user
        # would press Ctrl-C again.
        for _ in range(20):
            if first.poll() is not None:
                break
            first.send_signal(signal.SIGINT)
            try:
                first.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        out1, err1 = first.communicate(timeout=300)
        before = _finished(url)
        second = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True,
                                timeout=1200)
        result = {"root": str(root), "url": url, "report": str(root / "report"),
                  "models": str(root / "models"), "first_rc": first.returncode,
                  "first_err": err1[-4000:], "before": before, "rc": second.returncode,
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
        return run_smoke_matrix(tmp_path_factory.getbasetemp())

    return _matrix
