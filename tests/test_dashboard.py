"""``hpo dashboard`` serves the study and its prediction strips (a real server on a free port)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from hpo_vidpred.dashboard import make_dashboard_server
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import RunSpec, StudySpec
from hpo_vidpred.store import open_storage
from hpo_vidpred.store.local_proxy import free_port
from hpo_vidpred.study.plan import plan_study
from hpo_vidpred.study.pool import run

SQLITE = "sqlite:///studies/hpo.db"


def _get(url: str, timeout: float = 30.0) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def test_hpo_dashboard_serves_the_study_and_its_artifacts() -> None:
    Path("space.yaml").write_text("fixed: {depth: 1, hidden: 4, kernel: 3, batch_size: 4}\n"
                                  "params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
    plan = plan_study(StudySpec(budget="smoke", search_space="space.yaml"))
    run(plan, RunSpec(storage_url=SQLITE, trials=1, progress=False))
    study = optuna.load_study(study_name=plan.name, storage=open_storage(SQLITE))
    trial = study.trials[0]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo_vidpred.cli", "dashboard", "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["autoencoder-mmnist"]
        artifact = trial.user_attrs["prediction_artifact"]
        png = _get(f"http://127.0.0.1:{port}/artifacts/{study._study_id}/{trial._trial_id}/"
                   f"{artifact}")
        assert png.startswith(b"\x89PNG")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}/" in err.decode()


def test_the_dashboard_needs_an_existing_store_and_a_free_port() -> None:
    with pytest.raises(HpoError, match="no study store at studies/hpo.db"):
        make_dashboard_server()
    open_storage(SQLITE)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(HpoError, match="pick another --port"):
            make_dashboard_server(port=busy.getsockname()[1])
