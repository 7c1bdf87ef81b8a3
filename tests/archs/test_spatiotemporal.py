"""The spatio-temporal autoencoder's warp, flow clamp and Huber smoothness penalty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo_vidpred.archs import create_model
from hpo_vidpred.archs.spatiotemporal import flow_smoothness
from hpo_vidpred.specs import ModelSpec


def _model(identity_decoder: bool = True, **config) -> nn.Module:
    torch.manual_seed(0)
    base = {"enc_channels": 3, "enc_kernel": 3, "hidden": 4, "kernel": 3, "flow_kernel": 3}
    model = create_model(ModelSpec(arch="spatiotemporal", config={**base, **config}))
    if identity_decoder:
        model.decoder = nn.Identity()  # look at the warped encoding itself
    return model


def _set_flow(model: nn.Module, dx_pixels: float) -> None:
    """Make the flow head output a constant horizontal flow of ``dx_pixels`` feature pixels."""
    last = model.flow[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([dx_pixels, 0.0]))


@pytest.mark.parametrize(("dx", "shift"), [(0.0, 0), (1.0, 1), (100.0, 2)])
def test_warp_moves_the_last_encoded_frame_by_the_clamped_flow(dx: float, shift: int) -> None:
    model = _model(clamp=0.5)  # 0.5 grid units = a quarter of the 8 feature columns = 2 pixels
    _set_flow(model, dx)
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        warped = model(frames, 1).frames[:, 0]  # (B, enc, 8, 8): decoder replaced by identity
        encoded = model.encoder(frames[:, -1])
    width = encoded.shape[-1]
    torch.testing.assert_close(warped[..., : width - shift], encoded[..., shift:])


def test_smoothness_penalty_is_zero_for_constant_flow() -> None:
    assert flow_smoothness(torch.full((2, 2, 5, 6), 0.3), mu=0.01) == 0


def test_smoothness_penalty_is_huber_of_central_differences() -> None:
    mu = 0.01
    ramp = (torch.arange(4.0) * 2 * mu).expand(1, 2, 1, 4)  # slope 2*mu per pixel along x
    # d/dx with the (-1/2, 0, 1/2) stencil and replicated edges: mu, 2mu, 2mu, mu; d/dy: 0.
    # Huber(mu) = mu^2/2 (quadratic part), Huber(2mu) = 2mu^2 - mu^2/2 (linear part);
    # mean over 2 flow channels x 2 directions x 4 pixels:
    expected = 2 * (2 * 0.5 * mu**2 + 2 * 1.5 * mu**2) / 16
    assert flow_smoothness(ramp, mu) == pytest.approx(expected)


def test_aux_loss_is_the_weighted_penalty() -> None:
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        light, heavy, off = (_model(False, huber_weight=w)(frames, 2).aux_loss
                             for w in (0.01, 1.0, 0.0))
    assert off == 0 and light > 0
    torch.testing.assert_close(heavy, light * 100)
