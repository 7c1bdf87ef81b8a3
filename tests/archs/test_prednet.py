"""PredNet's error-unit loss (slide eq. 34): time and layer weights are applied."""

from __future__ import annotations

import torch

from hpo_vidpred.archs import create_model
from hpo_vidpred.specs import ModelSpec


def _prednet(cell: str = "convlstm", **config) -> torch.nn.Module:
    torch.manual_seed(0)
    base = {"depth": 3, "hidden": 4}
    return create_model(ModelSpec(arch="prednet", cell=cell, config={**base, **config}))


def test_time_weight_is_zero_at_the_first_step() -> None:
    model = _prednet()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 1, 16, 16), 3).aux_loss == 0  # only t = 0 observed
        assert model(torch.rand(2, 2, 1, 16, 16), 3).aux_loss > 0


def test_layer_weights_are_applied() -> None:
    # The seed configures layer weights but never uses them; here L_all adds the upper layers.
    l0, lall = _prednet(layer_weights="l0"), _prednet(layer_weights="lall")
    lall.load_state_dict(l0.state_dict())
    frames = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        out_l0, out_lall = l0(frames, 2), lall(frames, 2)
    torch.testing.assert_close(out_l0.frames, out_lall.frames)  # same network, other loss
    assert out_lall.aux_loss > out_l0.aux_loss > 0


def test_l0_loss_is_the_mean_pixel_error_of_the_one_step_predictions() -> None:
    # With L_0 the loss is layer 0's error units, mean |A-hat_0 - x| / 2 per pixel, averaged over
    # t = 1 .. n_in-1. A-hat_0^t for an observed t is what the model predicts when given the
    # frames before t: check against separate runs with shorter inputs.
    model = _prednet(satlu_leak=0.0)
    frames = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        errors = [(model(frames[:, :t], 1).frames[:, 0] - frames[:, t]).abs().mean() / 2
                  for t in range(1, 4)]
        aux = model(frames, 1).aux_loss
    torch.testing.assert_close(aux, torch.stack(errors).mean())


def test_predictions_stay_in_pixel_range_without_leak() -> None:
    model = _prednet(satlu_leak=0.0, pixel_max=0.5)
    with torch.no_grad():
        frames = model(torch.rand(2, 3, 1, 16, 16) * 4 - 2, 3).frames
    assert frames.min() >= 0 and frames.max() <= 0.5
