"""benchmarks/gpu.sh, the one script for a GPU machine, dry-run on the CPU: every step at smoke
sizes, so that the first contact with a GPU cannot fail on a typo, a missing wheel or a flag (the
``hpo`` commands, which the suite's own tests run, parsed with their flags but not run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"


@pytest.mark.slow
def test_the_gpu_script_dry_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    if not (shutil.which("bash") and shutil.which("timeout") and shutil.which("tar")):
        pytest.skip("needs bash, timeout and tar")
    out = tmp_path / "out"
    # no `hpo` on the PATH (as on the device): the script must bring its own
    env = {**os.environ, "GPU_DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable,
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=SCRIPT.parents[1], env=env,
                          capture_output=True, text=True, timeout=900)
    steps = (out / "steps.tsv").read_text().splitlines()[1:]
    assert [s.split("\t")[0] for s in steps] == ["env", "tests", "bench", "bench_compile",
                                                 "step_speed", "workers", "study", "compare",
                                                 "report"]
    assert all(s.split("\t")[1] == "0" for s in steps), done.stderr[-3000:]
    assert done.returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"]["torch"] and summary["best_workers"] in (1, 2)
    assert summary["speedup_vs_reference"] and summary["workers"]
    with tarfile.open(out / "gpu-results.tar.gz") as tar:
        names = set(tar.getnames())
        rows = {name: json.load(tar.extractfile(f"./{name}.json"))
                for name in ("step_speed", "workers")}
        # the hpo commands: parsed by the real command line (an unknown flag fails the step)
        shapes = {name: tar.extractfile(f"./{name}.json").read().decode()
                  for name in ("bench", "bench_compile", "study", "compare", "report")}
    for name, command in (("bench", "bench"), ("bench_compile", "bench"), ("study", "run"),
                          ("compare", "compare"), ("report", "report")):
        assert f"Usage: hpo {command} [OPTIONS]" in shapes[name], shapes[name][:300]
    assert {"./steps.tsv", "./step_speed.json", "./workers.json", "./env.json"} <= names
    # the benchmark scripts' rows (these steps are their only run in the suite)
    (speed,) = rows["step_speed"]
    assert (speed["arch"], speed["cell"]) == ("autoencoder", "convlstm")
    assert speed["device"].startswith("cpu")
    assert speed["params_equal"] and speed["ms_reference"] > 0 and speed["ms_ours"] > 0
    assert speed["speedup"] == pytest.approx(speed["ms_reference"] / speed["ms_ours"], rel=0.01)
    (workers,) = rows["workers"]
    assert workers["workers"] == 1 and workers["trials"] == 2 and workers["busy_s"] > 0
    assert workers["trials_per_hour"] > 0 and workers["speedup"] == 1.0
    assert workers["default_workers"] >= 1
    assert sorted(p.name for p in out.iterdir()) == ["gpu-results.tar.gz", "steps.tsv",
                                                     "summary.json"]  # three files to bring back
