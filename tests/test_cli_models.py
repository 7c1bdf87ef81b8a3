"""`hpo models`: every architecture x cell per dataset with our and the seed's parameter counts."""

from __future__ import annotations

import json

import pytest

from hpo_vidpred.cli import main


def test_json_has_six_rows_per_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 18
    for data in ("mmnist", "kth", "kitti"):
        mine = [r for r in rows if r["data"] == data]
        assert {(r["arch"], r["cell"]) for r in mine} == {
            (a, c) for a in ("autoencoder", "prednet", "spatiotemporal")
            for c in ("convlstm", "stlstm")
        }
    assert all(r["seed_match"] for r in rows)
    first = rows[0]
    assert (first["data"], first["arch"], first["cell"], first["params"], first["seed_params"]) \
        == ("mmnist", "autoencoder", "convlstm", 537_411, 537_411)


def test_one_dataset_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--data", "kth"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["data", "arch", "cell", "params"]
    assert sum(line.startswith("kth ") for line in lines) == 6
    assert any("1,001,324*" in line and "1,007,598" in line for line in lines)  # 1 vs 3 channels


def test_unknown_dataset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--data", "ucf101"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown dataset 'ucf101'; choose one of: mmnist, kth, kitti\n"
