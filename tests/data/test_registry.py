"""The dataset registry, default specs and the per-process load cache."""

from __future__ import annotations

import pytest

from hpo_vidpred.data import DATASETS, default_spec, load
from hpo_vidpred.errors import HpoError


def test_default_specs_follow_the_design_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(DATASETS.names()) == ["kitti", "kth", "mmnist"]
    shapes = {name: (s.channels, s.height, s.width, s.n_in, s.n_out, s.protocol)
              for name in DATASETS.names() for s in [default_spec(name)]}
    assert shapes == {"mmnist": (1, 64, 64, 10, 10, "default"),
                      "kth": (1, 64, 80, 10, 10, "kth"),
                      "kitti": (3, 128, 160, 10, 1, "default")}
    assert default_spec("kth", height=32, width=40).height == 32
    monkeypatch.setenv("HPO_DATA_DIR", "/data/videos")
    assert default_spec("mmnist").root == "/data/videos"


def test_bad_specs_are_one_line_errors() -> None:
    with pytest.raises(HpoError, match="unknown dataset 'ucf'; choose one of: "):
        default_spec("ucf")
    with pytest.raises(HpoError, match="unknown DataSpec key.*frames"):
        default_spec("kth", frames=3)
    with pytest.raises(HpoError, match="unknown split protocol 'random' for kth"):
        default_spec("kth", protocol="random")
    with pytest.raises(HpoError, match="stride must be >= 1"):
        default_spec("kitti", stride=0)


def test_load_is_cached_per_process_and_device() -> None:
    spec = default_spec("mmnist", height=16, width=16, n_in=2, n_out=2, val_size=8)
    data = load(spec, "cpu")
    assert load(spec, "cpu") is data
    assert load(default_spec("mmnist", height=16, width=16, n_in=2, n_out=3), "cpu") is not data
    assert data.device.type == "cpu" and data.shape == (1, 16, 16)
