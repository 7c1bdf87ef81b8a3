"""Whole studies through ``hpo store serve`` on loopback: three ``hpo run`` of two workers each
share a smoke study on a fresh PostgreSQL database through the gRPC proxy; one whole run is
killed (SIGKILL to its process group) and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clusters import StoreProxy
from deploy_helpers import HPO, freeze_mid_trial, group_pids, study_trials
from optuna.trial import TrialState

from hpo_vidpred.store.records import trial_counts

pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")


@pytest.mark.postgres
@pytest.mark.slow
def test_three_runs_of_two_workers_through_the_proxy_finish_exactly_n_trials_after_a_kill(
        fresh_postgres: str, tmp_path: Path, tiny_space: str) -> None:
    target, name = 12, "proxy-smoke"
    proxy = StoreProxy(fresh_postgres, cwd=tmp_path)
    try:
        run = [*HPO, "run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke",
               "--trials", str(target), "--search-space", tiny_space, "--study", name,
               "--storage", proxy.url, "--workers", "2", "--threads", "1", "--heartbeat", "4",
               "--quiet"]
        prepared = subprocess.run([*HPO, "store", "prepare", *run[len(HPO):]],
                                  capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert prepared.returncode == 0, prepared.stderr
        assert f"study {name} created on {proxy.url}: 0/{target}" in prepared.stdout
        logs = [open(tmp_path / f"run{i}.log", "w") for i in range(3)]
        runs = [subprocess.Popen(run, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                 start_new_session=True) for log in logs]
        # run 0 is killed whole (its parent and its two workers) while it runs a trial
        caught, killed = freeze_mid_trial(fresh_postgres, name,
                                          lambda: group_pids(runs[0].pid))
        os.killpg(runs[0].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        runs[0].wait(30)
        for proc in runs[1:]:
            proc.wait(600)
        elapsed = time.monotonic() - killed_at
        for log in logs:
            log.close()
        outputs = [(tmp_path / f"run{i}.log").read_text() for i in range(3)]
        # (--heartbeat 4: with --heartbeat 2 one run once ended with an error here, 20 processes
        # on 2 busy cores; most likely a beat starved past its 4 s grace, see docs/deploy.md)
        assert [p.returncode for p in runs] == [-signal.SIGKILL, 0, 0], outputs
    finally:
        served = proxy.stop()
    assert "Traceback" not in served, served[-3000:]

    trials = study_trials(fresh_postgres, name)
    counts = trial_counts(trials)
    assert counts["finished"] == target and counts["running"] == counts["waiting"] == 0
    # run 0's running trials (those caught inside the objective, and any it had just asked
    # for) were failed and re-queued: counted once, by their retries
    assert counts["failed"] == 0 and counts["retried"] >= len(caught) >= 1
    assert len(trials) == target + counts["retried"]
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none twice or lost
    for lost in caught:  # failed on the server after the grace period, then run again
        trial = next(t for t in trials if t.number == lost.number)
        assert trial.state == TrialState.FAIL and "fail_reason" not in trial.user_attrs
        (rerun,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
        assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert rerun.params == trial.params
        assert int(rerun.user_attrs["worker"].rsplit(":", 1)[1]) not in killed
    # every worker of the two runs left took part through the proxy
    workers = {t.user_attrs["worker"] for t in trials if t.state != TrialState.FAIL}
    assert len(workers) >= 4, workers
    print(f"killed run 0 ({len(killed)} processes) with {counts['retried']} running trial(s); "
          f"the study finished {elapsed:.1f} s later")


def test_a_proxy_killed_for_good_ends_the_run_within_the_retry_time_in_one_line(
        tmp_path: Path, tiny_space: str) -> None:
    """kill -9 of hpo store serve under a running hpo run: a line when the outage starts, and
    the run ends about HPO_RECONNECT_S later with the URL and the status in its last line (it
    was silent for 8 minutes: each clean-up call retried its own 120 s). Nothing is lost."""
    db, reconnect_s = tmp_path / "store.db", 5
    proxy = StoreProxy(f"sqlite:///{db}", cwd=tmp_path)
    run = [*HPO, "run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke",
           "--trials", "500", "--search-space", tiny_space, "--study", "gone", "--storage",
           proxy.url, "--workers", "1", "--heartbeat", "2", "--quiet"]
    proc = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env={**os.environ, "HPO_RECONNECT_S": str(reconnect_s)})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                done = [t for t in study_trials(f"sqlite:///{db}", "gone")
                        if t.state == TrialState.COMPLETE]
            except Exception:  # noqa: BLE001 (no study yet)
                done = []
            if len(done) >= 2:
                break
            time.sleep(0.5)
        assert len(done) >= 2, proc.stderr.read() if proc.poll() is not None else "too slow"
        proxy.proc.kill()
        proxy.proc.wait()
        killed = time.monotonic()
        _, err = proc.communicate(timeout=300)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.stop()
    lines = err.splitlines()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and not any(line.startswith("E1") for line in lines), err
    assert lines[-1].startswith(f"error: cannot reach the study store {proxy.url} "
                                "(UNAVAILABLE: "), err
    assert "rerun the same command (finished trials are kept" in lines[-1]
    announced = [line for line in lines if "retrying until" in line]
    assert len(announced) == 1 and announced[0].startswith(
        f"warning: the study store {proxy.url} is unreachable (UNAVAILABLE: "), err
    assert elapsed < reconnect_s + 30, (elapsed, err)
    kept = [t for t in study_trials(f"sqlite:///{db}", "gone") if t.state == TrialState.COMPLETE]
    assert {t.number for t in done} <= {t.number for t in kept}
    print(f"the run ended {elapsed:.1f} s after the proxy was killed "
          f"(HPO_RECONNECT_S={reconnect_s})")
