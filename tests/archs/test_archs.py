"""Every architecture x cell: shapes, finiteness, gradients, closed loop, odd sizes, overfit."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from hpo_vidpred.archs import ARCHS, Prediction, config_keys, count_params, create_model
from hpo_vidpred.cells import CELLS
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import ModelSpec

# Small widths and kernels so that the whole file stays fast on one core.
TINY: dict[str, dict[str, Any]] = {
    "autoencoder": {"depth": 2, "hidden": 4, "kernel": 3},
    "prednet": {"depth": 3, "hidden": 4, "kernel": 3},
    "spatiotemporal": {"enc_channels": 4, "enc_kernel": 3, "hidden": 6, "kernel": 3,
                       "flow_kernel": 5, "dec_kernel": 3},
}
OVERFIT: dict[str, dict[str, Any]] = {  # a little wider, so that 300 steps are plenty
    "autoencoder": {"depth": 1, "hidden": 8},
    "prednet": {"depth": 2, "hidden": 8},
    "spatiotemporal": {"enc_channels": 8, "hidden": 8},
}
COMBOS = list(itertools.product(ARCHS.names(), CELLS.names()))


def make(arch: str, cell: str, channels: int = 1, seed: int = 0, **config: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(arch=arch, cell=cell, channels=channels, peephole="conv",
                     config={**TINY[arch], **config})
    return create_model(spec)


def moving_squares(batch: int = 2, steps: int = 6, size: int = 16) -> torch.Tensor:
    """Bright 4x4 squares moving diagonally on black, one direction per sequence."""
    frames = torch.zeros(batch, steps, 1, size, size)
    for b in range(batch):
        row, col, d_row, d_col = [(2, 3, 1, 2), (9, 10, -1, -1)][b % 2]
        for t in range(steps):
            r, c = row + d_row * t, col + d_col * t
            frames[b, t, 0, r:r + 4, c:c + 4] = 1.0
    return frames


def test_registered_architectures_and_their_keys() -> None:
    assert ARCHS.names() == ["autoencoder", "prednet", "spatiotemporal"]
    assert config_keys("autoencoder") == {"depth", "hidden", "kernel", "patch"}
    assert config_keys("prednet") == {"depth", "hidden", "kernel", "pixel_max", "layer_weights",
                                      "satlu_leak"}
    assert config_keys("spatiotemporal") == {
        "enc_channels", "enc_kernel", "depth", "hidden", "kernel", "flow_kernel", "clamp",
        "huber_mu", "huber_weight", "dec_kernel",
    }


@pytest.mark.parametrize(("arch", "cell"), COMBOS)
def test_shape_finiteness_and_gradients(arch: str, cell: str) -> None:
    model = make(arch, cell)
    frames = torch.rand(2, 5, 1, 16, 16)
    out = model(frames[:, :3], 2)
    assert isinstance(out, Prediction)
    assert out.frames.shape == (2, 2, 1, 16, 16)
    assert torch.isfinite(out.frames).all()
    assert out.aux_loss.shape == () and torch.isfinite(out.aux_loss) and out.aux_loss >= 0
    loss = (out.frames - frames[:, 3:]).square().mean() + out.aux_loss
    loss.backward()
    silent = [name for name, p in model.named_parameters()
              if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert silent == []


@pytest.mark.parametrize(("arch", "cell"), COMBOS)
def test_closed_loop_predicts_longer_than_its_input(arch: str, cell: str) -> None:
    model = make(arch, cell)
    torch.manual_seed(1)
    frames_in, targets = torch.rand(2, 2, 1, 16, 16), torch.rand(2, 6, 1, 16, 16)
    with torch.no_grad():
        closed = model(frames_in, 6).frames
        ignored = model(frames_in, 6, targets=targets, tf_prob=0.0).frames
        forced = model(frames_in, 6, targets=targets, tf_prob=1.0).frames
    assert closed.shape == (2, 6, 1, 16, 16) and torch.isfinite(closed).all()
    torch.testing.assert_close(ignored, closed)  # tf_prob 0: targets never seen
    torch.testing.assert_close(forced[:, 0], closed[:, 0])  # the first step only sees inputs
    assert not torch.allclose(forced[:, 1:], closed[:, 1:])  # later steps are fed predictions


@pytest.mark.parametrize(("arch", "cell"), COMBOS)
@pytest.mark.parametrize("size", [(60, 80), (30, 30), (7, 5)])
def test_odd_frame_sizes_and_channels(arch: str, cell: str, size: tuple[int, int]) -> None:
    model = make(arch, cell, channels=3)
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, *size), 2)
    assert out.frames.shape == (1, 2, 3, *size)
    assert torch.isfinite(out.frames).all() and torch.isfinite(out.aux_loss)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "cell"), COMBOS)
def test_overfits_a_tiny_batch(arch: str, cell: str) -> None:
    """Loss (frame MSE + aux_loss) falls at least 10x within 300 Adam steps."""
    model = make(arch, cell, **OVERFIT[arch])
    frames = moving_squares()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = last = None
    for _ in range(300):
        out = model(frames[:, :3], 3)
        loss = (out.frames - frames[:, 3:]).square().mean() + out.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last = loss.item()
        first = first if first is not None else last
        if last <= first / 10:
            break
    assert last <= first / 10, f"loss {first:.4f} -> {last:.4f}"


@pytest.mark.parametrize(
    ("arch", "config", "message"),
    [
        ("autoencoder", {"width": 3}, "unknown autoencoder config key(s) width; valid keys:"),
        ("autoencoder", {"kernel": 4}, "kernel=4 must be a positive odd int"),
        ("autoencoder", {"depth": 3, "hidden": [8, 16]}, "gives 2 widths; this depth needs 3"),
        ("autoencoder", {"hidden": "wide"}, "hidden='wide' should be an int or a list of ints"),
        ("prednet", {"layer_weights": "l1"}, "layer_weights='l1'; choose one of: l0, lall"),
        ("prednet", {"depth": True}, "depth=True should be an int"),
        ("spatiotemporal", {"clamp": -1}, "clamp=-1.0 must be > 0"),
    ],
)
def test_bad_configs_are_one_line_errors(arch: str, config: dict, message: str) -> None:
    with pytest.raises(HpoError) as info:
        create_model(ModelSpec(arch=arch, config=config))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_names_list_the_valid_ones() -> None:
    with pytest.raises(HpoError, match="unknown architecture 'unet'; choose one of: autoencoder"):
        create_model(ModelSpec(arch="unet"))
    with pytest.raises(HpoError, match="unknown cell 'gru'"):
        create_model(ModelSpec(cell="gru"))
    with pytest.raises(HpoError, match="unknown peephole 'yes'"):
        create_model(ModelSpec(cell="stlstm", peephole="yes"))


def test_explicit_widths_equal_doubling_and_ints_accepted_as_floats() -> None:
    doubled = make("prednet", "convlstm", hidden=4)
    listed = make("prednet", "convlstm", hidden=[4, 8])
    assert count_params(doubled) == count_params(listed)
    assert make("prednet", "convlstm", pixel_max=1).config.pixel_max == 1.0


def test_an_architecture_declares_its_widths_and_may_name_them_freely(monkeypatch) -> None:
    """A doubling width of another name takes a list too; a declaration naming a key the
    architecture's Config lacks is refused when the class registers."""
    from dataclasses import dataclass

    from hpo_vidpred import budgets
    from hpo_vidpred.archs._base import VideoModel, check_spec

    for registry in (ARCHS, budgets.WIDTHS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))

    @dataclass(frozen=True)
    class StackConfig:
        layers: int = 2
        channels: int | tuple[int, ...] = 8

    @ARCHS.register("stack")
    class Stack(VideoModel):
        Config = StackConfig
        widths = {"channels": "layers"}

    assert budgets.WIDTHS.get("stack") == {"channels": "layers"}
    assert check_spec(ModelSpec(arch="stack", config={"channels": [4, 8]})).channels == (4, 8)
    with pytest.raises(HpoError, match="channels='x' should be an int or a list of ints"):
        check_spec(ModelSpec(arch="stack", config={"channels": "x"}))

    class Bad(VideoModel):
        Config = StackConfig
        widths = {"hidden": "depth"}

    with pytest.raises(ValueError, match="declares widths over depth, hidden, which its Config"):
        ARCHS.register("bad")(Bad)
    assert "bad" not in ARCHS and "bad" not in budgets.WIDTHS
