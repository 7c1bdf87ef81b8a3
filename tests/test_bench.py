"""`hpo bench` and the benchmarks in benchmarks/: the reference computes what our models compute,
and each benchmark runs at its smallest size and prints JSON rows with the expected keys.
Timings are never asserted (the machine is shared)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo_vidpred import archs, devices
from hpo_vidpred.bench import StepTimes, recommend, variants_for
from hpo_vidpred.cells import CELLS
from hpo_vidpred.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--size", "16", "--n-in", "2", "--n-out", "2"]


def _reference() -> Any:
    spec = importlib.util.spec_from_file_location("reference", BENCHMARKS / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(name: str, *args: str, timeout: float = 300) -> Any:
    """Run a benchmark script with --json; its parsed output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), "--json", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("arch", archs.ARCHS.names())
@pytest.mark.parametrize("cell", CELLS.names())
def test_reference_computes_what_ours_computes(arch: str, cell: str) -> None:
    reference = _reference()
    spec = archs.fixed_spec(arch, "mmnist", cell)
    torch.manual_seed(0)
    ours, ref = archs.create_model(spec), reference.reference_model(spec)
    assert archs.count_params(ref) == archs.count_params(ours)
    # one convolution per gate and input: the reference has more, smaller convolutions
    n_convs = [sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
               for model in (ours, ref)]
    assert n_convs[1] > n_convs[0]
    reference.copy_weights(ours, ref)
    frames = torch.rand(2, 3, 1, 16, 16)  # (B, T, C, H, W)
    targets = torch.rand(2, 2, 1, 16, 16)
    got, want = ref(frames, 2, targets, 0.0), ours(frames, 2, targets, 0.0)
    assert want.frames.std() > 0
    torch.testing.assert_close(got.frames, want.frames, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.aux_loss, want.aux_loss, atol=1e-5, rtol=1e-5)
    # and the same gradients reach the same weights (spot check on the loss)
    (got.frames.square().mean() + got.aux_loss).backward()
    (want.frames.square().mean() + want.aux_loss).backward()
    ref_grad = sum(p.grad.abs().sum() for p in ref.parameters() if p.grad is not None)
    our_grad = sum(p.grad.abs().sum() for p in ours.parameters() if p.grad is not None)
    torch.testing.assert_close(ref_grad, our_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("peephole", ["none", "conv", "hadamard"])
def test_reference_matches_every_peephole_mode(peephole: str) -> None:
    reference = _reference()
    spec = dataclasses.replace(archs.fixed_spec("autoencoder", "kitti", "convlstm"),
                               peephole=peephole)
    ours, ref = archs.create_model(spec), reference.reference_model(spec)
    with torch.no_grad():
        for p in ours.parameters():  # the hadamard weights start at 0: make them count
            p.add_(0.05 * torch.randn_like(p))
    reference.copy_weights(ours, ref)
    assert archs.count_params(ref) == archs.count_params(ours)
    frames = torch.rand(1, 3, 3, 12, 20)
    torch.testing.assert_close(ref(frames, 2).frames, ours(frames, 2).frames, atol=1e-5, rtol=0)


def test_copy_weights_refuses_a_model_of_another_spec() -> None:
    reference = _reference()
    ours = archs.create_model(archs.fixed_spec("autoencoder", "mmnist", "convlstm"))
    other = reference.reference_model(archs.fixed_spec("spatiotemporal", "mmnist", "convlstm"))
    with pytest.raises((ValueError, RuntimeError, KeyError)):
        reference.copy_weights(ours, other)


# --------------------------------------------------------------------------- hpo bench
def test_hpo_bench_json_rows(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--arch", "autoencoder,spatiotemporal", "--cell", "convlstm",
                 "--height", "16", "--width", "16", "--n-in", "2", "--n-out", "2",
                 "--batch", "2", "--steps", "2", "--threads", "1", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["arch"], r["cell"], r["variant"]) for r in rows] == [
        ("autoencoder", "convlstm", "auto"), ("spatiotemporal", "convlstm", "auto")]
    for r in rows:
        spec = archs.fixed_spec(r["arch"], "mmnist", "convlstm")
        assert r["params"] == archs.count_params(archs.create_model(spec))
        assert r["ms_step"] > 0 and r["samples_per_s"] == pytest.approx(2000 / r["ms_step"],
                                                                       rel=0.01)
        assert 0 < r["data_share"] < 1 and r["peak_mem_mb"] >= r["mem_added_mb"] > 0
        assert r["device"].startswith("cpu") and r["threads"] == 1
        assert not r["bf16"] and not r["channels_last"] and r["compile"] == "off"  # CPU auto
        assert r["size"] == [16, 16] and r["frames"] == [2, 2]


def test_hpo_bench_table_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "autoencoder", "--cell", "stlstm", "--height", "16",
                 "--width", "16", "--n-in", "2", "--n-out", "2", "--batch", "1",
                 "--steps", "1", "--variants", "fp32,channels_last"]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "channels_last:" in out and "vs float32 eager" in out
    assert main(["bench", "--arch", "resnet"]) == 2
    assert "unknown architecture 'resnet'" in capsys.readouterr().err
    assert main(["bench", "--variants", "cudagraphs", "--device", "cpu"]) == 2
    assert "needs CUDA" in capsys.readouterr().err


def test_cpu_variants_and_recommendation() -> None:
    cpu = torch.device("cpu")
    assert [v.name for v in variants_for(cpu)] == ["auto"]
    assert "cudagraphs" not in [v.name for v in variants_for(cpu, ["all"])]
    auto = variants_for(cpu, ["auto"])[0].resolve(cpu)
    assert auto.device == cpu and not auto.bf16 and not auto.channels_last and not auto.compile
    rows = [{"arch": "a", "cell": "c", "variant": v, "ms_step": ms}
            for v, ms in (("fp32", 100.0), ("bf16", 50.0), ("channels_last", 120.0))]
    rec = recommend(rows)
    assert rec["bf16"] == {"speedup": 2.0, "turn_on": True, "pairs": 1}
    assert not rec["channels_last"]["turn_on"] and "compile" not in rec
    assert devices.name(torch.device("cpu")).startswith("cpu (")
    times = StepTimes([1.0, 3.0], [10.0, 30.0])
    assert times.data_share == pytest.approx(0.1) and times.median_ms == 20.0


# --------------------------------------------------------------------------- benchmark scripts
# step_speed.py and workers_per_device.py run in the GPU script's dry run (test_gpu_script.py),
# which checks their rows.
@pytest.mark.slow
def test_store_overhead_prints_rows() -> None:
    rows = _script("store_overhead.py", "--stores", "sqlite", "--workers", "1", "--trials", "2",
                   "--budget", "smoke", "--threads", "1", timeout=600)
    (row,) = rows
    assert row["store"] == "sqlite" and row["workers"] == 1 and row["trials"] == 2
    assert row["store_calls"] > 0 and 0 < row["store_share"] < 1
    assert row["processes"] == 1 and row["worker_s"] >= row["busy_s"] >= row["store_s"]


@pytest.mark.slow
@pytest.mark.postgres
def test_store_overhead_on_postgres(postgres_url: str) -> None:
    rows = _script("store_overhead.py", "--stores", "postgres", "--postgres-url", postgres_url,
                   "--workers", "1", "--trials", "1", "--budget", "smoke", timeout=600)
    assert rows[0]["store"] == "postgres" and rows[0]["store_calls"] > 0
    assert "***" in rows[0]["url"] or "@" not in postgres_url.split("//")[1].split("@")[0]


@pytest.mark.slow
def test_hpo_efficiency_prints_result(tmp_path: Path) -> None:
    keep = tmp_path / "eff"
    result = _script("hpo_efficiency.py", "--budget", "smoke", "--trials", "2", "--seeds", "0",
                     "--parallel", "2", "--keep", str(keep), timeout=600)
    assert set(result["methods"]) == {"ours", "plain", "random"}
    assert result["baseline"]["best_val_mse"] > 0
    assert {r["method"] for r in result["studies"]} == {"ours", "plain", "random"}
    for r in result["studies"]:
        assert r["trials"] == 2 and r["total_epochs"] >= r["epochs_to_baseline"] > 0
        assert r["best_at_budget"] is not None
    for target in ("plain_median", "baseline", "common", "plain_best"):
        assert f"epochs_ratio_vs_ours_{target}" in result["methods"]["plain"]
    # one plain study: its best is the median, which plain reached by construction
    assert result["methods"]["plain"]["reached_plain_median"] == 1
    # the stores it kept give the same figures again
    again = _script("hpo_efficiency.py", "--analyse", str(keep), timeout=120)
    assert again["studies"] == [{**r, "wall_s": None} for r in result["studies"]]
    assert again["baseline"]["best_val_mse"] == result["baseline"]["best_val_mse"]


def _efficiency() -> Any:
    spec = importlib.util.spec_from_file_location("eff", BENCHMARKS / "hpo_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(number: int, curve: list[float], state: str = "COMPLETE") -> dict[str, Any]:
    return {"number": number, "state": state, "value": None if state == "PRUNED" else curve[-1],
            "curve": curve, "epochs": len(curve), "seconds": 10.0 * len(curve),
            "stop_reason": None}


def test_hpo_efficiency_analysis_counts_compute_to_the_target() -> None:
    eff = _efficiency()
    # ours: a pruned trial (1 epoch), then reaches 0.5 in the 2nd epoch of its 2nd trial
    ours = [_trial(0, [0.9], "PRUNED"), _trial(1, [0.7, 0.5, 0.4])]
    # plain: two full 4-epoch trials above 0.5, reaches it in the 3rd epoch of the 3rd
    plain = [_trial(0, [0.9, 0.8, 0.7, 0.6]), _trial(1, [0.9, 0.8, 0.75, 0.7]),
             _trial(2, [0.8, 0.6, 0.5, 0.45])]
    reach = eff.to_reach(ours, 0.5)
    assert reach == {"reached": True, "epochs": 3, "seconds": 10.0 + 30.0 * 2 / 3, "trial": 1}
    assert eff.to_reach(plain, 0.5)["epochs"] == 11
    assert eff.to_reach(plain, 0.1) == {"reached": False, "epochs": 12, "seconds": 120.0,
                                        "trial": None}
    assert eff.best_within(plain, 5) == 0.6 and eff.best_within(ours, 2) == 0.7
    result = eff.analyse(0.5, [{"method": "ours", "seed": 0, "trials": ours, "wall_s": 1.0},
                               {"method": "plain", "seed": 0, "trials": plain, "wall_s": 1.0}])
    assert result["budget_epochs"] == 4  # the smaller study's total
    assert result["common_target"] == 0.45  # the worse of the two bests (0.4, 0.45)
    plain_m = result["methods"]["plain"]
    assert plain_m["epochs_ratio_vs_ours_baseline"] == pytest.approx(11 / 3, abs=1e-3)
    # the headline target: plain Optuna's median final best (one seed: its best, 0.45), which
    # ours reached in its 4th trial-epoch (0.4) and plain in its 12th
    assert result["plain_median_target"] == 0.45
    assert result["methods"]["ours"]["mean_epochs_to_plain_median"] == 4
    assert plain_m["epochs_ratio_vs_ours_plain_median"] == pytest.approx(12 / 4, abs=1e-3)
    assert result["methods"]["ours"]["mean_best_at_budget"] == 0.4
    assert plain_m["mean_best_at_budget"] == 0.6
    # ours never reached a target in some seed: no ratio for it
    missed = eff.analyse(0.3, [{"method": "ours", "seed": 0, "trials": ours, "wall_s": 1.0},
                               {"method": "plain", "seed": 0, "trials": plain, "wall_s": 1.0}])
    assert missed["methods"]["plain"]["epochs_ratio_vs_ours_baseline"] is None
    assert missed["methods"]["ours"]["lower_bound"]


@pytest.mark.slow
def test_warm_start_benchmark_prints_result(tmp_path: Path) -> None:
    result = _script("warm_start.py", "--budget", "smoke", "--trials", "3", "--source-trials",
                     "2", "--seeds", "0", "--keep", str(tmp_path / "ws"), timeout=600)
    assert {r["strategy"] for r in result["studies"]} == {"cold", "warm"}
    assert result["cold"]["reached"] == 1  # the cold study reaches its own median best
    warm = next(r for r in result["studies"] if r["strategy"] == "warm")
    assert warm["total_epochs"] > 0 and result["target"] > 0
    import optuna

    trials = optuna.load_study(study_name="warm-0",
                               storage=f"sqlite:///{tmp_path / 'ws' / 'warm.db'}").trials
    assert trials[0].user_attrs["warm_start"].startswith("study source trial ")
