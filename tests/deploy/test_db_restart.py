"""A PostgreSQL restart in the middle of a 4-worker study: the workers wait for the database and
go on, no finished trial is lost, the study ends at exactly N. The restarted server is a
throwaway cluster on its own port (tests/clusters.py), never the shared one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from deploy_helpers import HPO, study_trials
from optuna.trial import TrialState

from hpo_vidpred.store.records import trial_counts

DOWN_S = 8  # the database is away this long: twice the grace period of --heartbeat 2


@pytest.mark.slow
def test_a_study_survives_a_database_restart(pg_cluster, tmp_path: Path,
                                             tiny_space: str) -> None:
    target, name, url = 8, "restart-smoke", pg_cluster.url
    with open(tmp_path / "run.log", "w") as log:
        proc = subprocess.Popen(
            [*HPO, "run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke",
             "--trials", str(target), "--search-space", tiny_space, "--study", name,
             "--storage", url, "--workers", "4", "--threads", "1", "--heartbeat", "2"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            before = _wait_for_finished(url, name, 3, proc)
            running = [t for t in study_trials(url, name) if t.state == TrialState.RUNNING]
            pg_cluster.stop()  # connections dropped mid-study, then refused
            stopped = time.monotonic()
            time.sleep(DOWN_S)
            pg_cluster.start()
            back = time.monotonic()
            proc.wait(600)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "error" not in output.lower(), output[-3000:]

    trials = study_trials(url, name)
    counts = trial_counts(trials)
    assert counts["finished"] == target and counts["running"] == counts["waiting"] == 0
    # nothing was declared dead while the heartbeats could not reach the database
    # (a restart inside the study lock may leave one trial handed back untrained: "surplus")
    assert counts["failed"] == counts["retried"] == 0 and counts.get("surplus", 0) <= 1
    assert len(trials) == target + counts.get("surplus", 0)
    for old in before:  # what had finished before the restart is there, unchanged
        now = next(t for t in trials if t.number == old.number)
        assert now.state == old.state and now.value == old.value
    for trial in running:  # trials under way when the database went away ran to their end
        assert trials[trial.number].state in (TrialState.COMPLETE, TrialState.PRUNED)
    print(f"{len(before)} trials finished before the restart, {len(running)} ran through it "
          f"(database away {back - stopped:.1f} s)")


def _wait_for_finished(url: str, name: str, n: int, proc) -> list:  # noqa: ANN001
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, "hpo run ended early"
        try:
            finished = [t for t in study_trials(url, name) if t.state.is_finished()]
        except Exception:  # noqa: BLE001 (no study yet)
            finished = []
        if len(finished) >= n:
            return finished
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} trials finished in time")
