"""What the deployment tests share: the hpo command line, a tiny search space, reading a
study's trials, waiting for processes."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

import optuna

from hpo_vidpred.store import open_storage

HPO = [sys.executable, "-m", "hpo_vidpred.cli"]  # `make test` does not put .venv/bin on PATH
TINY = ("fixed: {depth: 1, hidden: 4, kernel: 3, batch_size: 4}\n"
        "params:\n  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n")


@functools.lru_cache(maxsize=None)
def _storage(url: str):  # noqa: ANN202
    return open_storage(url, create_tables=False)


def study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read from its store."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=_storage(url)).get_trials(deepcopy=False)


def running_of(url: str, name: str, pids: set[int]) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials of the study whose worker (``host:pid``) is one of ``pids``, inside the
    objective (parameters sampled)."""
    try:
        trials = study_trials(url, name)
    except Exception:  # noqa: BLE001 (no store, no tables or no study yet)
        return []
    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params
            and int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1]) in pids]


def freeze_mid_trial(url: str, name: str, pids_of, deadline_s: float = 240.0):
    """Stop (SIGSTOP) the processes ``pids_of()`` at a moment when one of them runs a trial;
    returns (the trials they were running, the stopped pids). A trial seen running may end
    before the stop lands: then they go on (SIGCONT) and the next one is caught."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        pids = pids_of()
        if pids and running_of(url, name, pids):
            for pid in pids:
                _signal(pid, signal.SIGSTOP)
            time.sleep(0.5)  # a commit under way lands
            caught = running_of(url, name, pids)
            if caught:
                return caught, pids
            for pid in pids:
                _signal(pid, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("no trial was seen running in time")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def group_pids(pgid: int) -> set[int]:
    """The processes of a process group (an ``hpo run`` started in its own session and the
    workers it spawned)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.add(int(entry))
            except ProcessLookupError:
                continue
    return pids


def pids_with(*args: str) -> set[int]:
    """The processes whose command line holds ``args`` in a row (read from /proc)."""
    needle = "\0".join(args).encode() + b"\0"
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                pids.add(int(entry))
    return pids
