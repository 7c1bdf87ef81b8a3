"""deploy/slurm: the array script and submit.sh, on a real single-node Slurm that the test starts
(tests/clusters.py: munged, slurmctld, slurmd with 4 CPUs and 4 file-backed GPUs)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from deploy_helpers import HPO, freeze_mid_trial, pids_with, study_trials
from optuna.trial import TrialState

from hpo_vidpred.store.records import trial_counts

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "deploy" / "slurm"


def test_the_slurm_scripts_parse_and_ask_for_one_gpu_per_task() -> None:
    for script in ("submit.sh", "hpo-array.sbatch"):
        assert subprocess.run(["bash", "-n", str(SLURM / script)]).returncode == 0
        assert os.access(SLURM / script, os.X_OK)
    directives = re.findall(r"^#SBATCH (\S+)", (SLURM / "hpo-array.sbatch").read_text(), re.M)
    assert "--gres=gpu:1" in directives
    assert any(d.startswith("--output=") and "%A_%a" in d for d in directives)  # a log per task
    assert 'exec "$@"' in (SLURM / "hpo-array.sbatch").read_text()


def test_submit_refuses_a_command_that_is_not_hpo_run(tmp_path: Path) -> None:
    for args in (["x", "--", "hpo", "run"], ["4", "--partition", "gpu"], ["2", "--", "ls"]):
        done = subprocess.run([str(SLURM / "submit.sh"), *args], capture_output=True,
                              text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr
        assert done.stderr.count("\n") == 1
    assert not (tmp_path / "slurm-logs").exists()  # nothing submitted, nothing created


def test_array_tasks_draw_different_first_configurations(monkeypatch, tiny_space) -> None:
    """Tasks of an array start together with the same worker indices and an empty study: their
    task index goes into the sampler seed (one machine keeps its seeds)."""
    import optuna

    from hpo_vidpred.study.strategy import make_sampler
    from hpo_vidpred.study.plan import plan_study
    from hpo_vidpred.specs import StudySpec

    plan = plan_study(StudySpec(budget="smoke", search_space=tiny_space))

    def first_lr() -> float:
        study = optuna.create_study(sampler=make_sampler(plan, 0))
        return study.ask().suggest_float("lr", 1e-3, 3e-2, log=True)

    for variable in ("HPO_MACHINE_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    alone = first_lr()
    assert first_lr() == alone  # reproducible
    seen = {alone}
    for variable, index in (("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_ID", "2"),
                            ("JOB_COMPLETION_INDEX", "3")):
        monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
        monkeypatch.setenv(variable, index)
        seen.add(first_lr())
    assert len(seen) == 4


def _task_of(pid: int) -> str:
    """``<array job>_<task>`` of the Slurm task a process belongs to (its environment)."""
    env = dict(item.split("=", 1) for item in
               Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


@pytest.mark.slow
def test_an_array_of_four_tasks_finishes_exactly_n_trials_and_reruns_cancelled_ones(
        slurm, tmp_path: Path, tiny_space: str) -> None:
    target, url, name = 12, f"sqlite:///{tmp_path / 'study.db'}", "slurm-smoke"
    command = [*HPO, "run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke",
               "--trials", str(target), "--search-space", tiny_space, "--study", name,
               "--storage", url, "--workers", "1", "--threads", "1", "--heartbeat", "2",
               "--quiet"]
    submitted = subprocess.run(
        [str(SLURM / "submit.sh"), "4", "--cpus-per-task=1", "--", *command],
        env={**slurm.env, "HPO_SLURM_LOGS": str(tmp_path / "logs")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    assert f"study {name} created on {url}: 0/{target} finished trials" in submitted.stdout
    job = re.search(r"Submitted batch job (\d+)", submitted.stdout).group(1)

    def task_pids() -> set[int]:  # the hpo processes of the array's tasks still running
        return pids_with("--study", name)

    # Task A's process is killed outright mid-trial (SIGKILL, as by the OOM killer or with its
    # node; Slurm's own 'scancel --signal=KILL' cancels with SIGTERM first): its trial is
    # failed by the other tasks after the heartbeat grace period and re-run.
    (killed,), stopped = _one_task_mid_trial(url, name, task_pids)
    task_a = _task_of(int(killed.user_attrs["worker"].rsplit(":", 1)[1]))
    for pid in stopped:
        os.kill(pid, signal.SIGKILL)
    _gone(stopped)
    # Task B is cancelled the ordinary way (SIGTERM, then SIGKILL after KillWait): hpo fails its
    # trial as interrupted and queues it again at once.
    (cancelled,), _ = _one_task_mid_trial(url, name, task_pids)
    task_b = _task_of(int(cancelled.user_attrs["worker"].rsplit(":", 1)[1]))
    assert task_b != task_a
    assert slurm.run("scancel", task_b).returncode == 0  # Slurm sends SIGCONT, then SIGTERM

    deadline = time.time() + 400
    while slurm.jobs(job) and time.time() < deadline:
        time.sleep(1)
    assert not slurm.jobs(job), f"the array did not finish: {slurm.jobs(job)}"

    trials = study_trials(url, name)
    counts = trial_counts(trials)
    seen = (counts, [(t.number, t.state.name, t.user_attrs.get("fail_reason"),
                      t.system_attrs.get("failed_trial")) for t in trials],
            {i: (tmp_path / "logs" / f"hpo-{job}_{i}.out").read_text()[-1500:] for i in range(4)})
    assert counts["finished"] == target and counts["running"] == counts["waiting"] == 0, seen
    assert counts["retried"] == 2 and counts["failed"] == 0 and len(trials) == target + 2, seen
    assert sorted(t.number for t in trials) == list(range(target + 2))  # none twice, none lost
    first_tries = [t.params["lr"] for t in trials if "failed_trial" not in t.system_attrs]
    assert len(set(first_tries)) == len(first_tries)  # the tasks did not draw the same values
    by_number = {t.number: t for t in trials}
    for lost, reason in ((killed, None), (cancelled, "interrupted")):
        trial = by_number[lost.number]
        assert trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") == reason
        (rerun,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
        assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert rerun.params == trial.params  # the same configuration, run again
    # a log file per task; the two tasks left ran until the study was done and ended cleanly
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == [f"hpo-{job}_{i}.out" for i in range(4)]
    survivors = {f"{job}_{i}" for i in range(4)} - {task_a, task_b}
    for task in survivors:
        shown = slurm.run("scontrol", "show", "job", task).stdout
        assert "JobState=COMPLETED" in shown and "ExitCode=0:0" in shown, shown
    for task in (task_a, task_b):
        assert "JobState=COMPLETED" not in slurm.run("scontrol", "show", "job", task).stdout

    # submitting again: the study is done, nothing is queued; with other settings: refused
    def submit(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SLURM / "submit.sh"), "4", "--", *command, *extra],
                              env=slurm.env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    again = submit()
    assert again.returncode == 0 and again.stdout.endswith("nothing submitted\n"), again.stdout
    other = submit("--budget", "small")
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "exists with a different spec (study.budget: smoke -> small" in other.stderr
    assert "Submitted" not in again.stdout + other.stdout
    assert slurm.run("squeue", "-h").stdout.strip() == ""


def _one_task_mid_trial(url: str, name: str, task_pids):  # noqa: ANN202
    """Freeze the tasks' processes while one of them runs a trial; keep only that one stopped
    (the others go on). Returns ([the trial], [the stopped pid])."""
    caught, stopped = freeze_mid_trial(url, name, task_pids)
    pid = int(caught[0].user_attrs["worker"].rsplit(":", 1)[1])
    _resume(stopped - {pid})
    return caught[:1], {pid}


def _resume(pids) -> None:  # noqa: ANN001
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _gone(pids, wait_s: float = 60.0) -> None:  # noqa: ANN001
    """Wait until the processes ``pids`` have ended."""
    deadline = time.time() + wait_s
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "a killed task lives on"
