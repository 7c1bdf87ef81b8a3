"""The autoencoder's layer layout (the seed's widths, mirrored) and its patch option."""

from __future__ import annotations

import torch

from hpo_vidpred.archs import count_params, create_model
from hpo_vidpred.specs import ModelSpec


def _ae(channels: int = 1, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(ModelSpec(arch="autoencoder", channels=channels, config=config))


def test_encoder_widths_then_mirrored_decoder() -> None:
    model = _ae(channels=2, depth=3, hidden=4)
    widths = [(c.in_channels, c.hidden) for c in model.stack.cells]
    assert widths == [(2, 4), (4, 8), (8, 16), (16, 8), (8, 4), (4, 2)]
    assert [c.hidden for c in _ae(depth=1, hidden=[5]).stack.cells] == [5, 1]


def test_every_layer_runs_at_every_time_step() -> None:
    # The seed's stacked modules hand on only their last hidden state, so its later layers run
    # once per sequence. Here every layer runs once per input frame and per fed-back prediction.
    model = _ae(depth=2, hidden=4)
    calls = [0] * len(model.stack.cells)
    for index, cell in enumerate(model.stack.cells):
        cell.register_forward_hook(lambda *_, i=index: calls.__setitem__(i, calls[i] + 1))
    with torch.no_grad():
        model(torch.rand(1, 5, 1, 8, 8), 3)
    assert calls == [5 + 3 - 1] * 4


def test_patch_folds_pixels_into_channels() -> None:
    plain, patched = _ae(hidden=4, kernel=3), _ae(hidden=4, kernel=3, patch=2)
    assert patched.stack.cells[0].in_channels == 4 and patched.stack.cells[-1].hidden == 4
    assert count_params(patched) > count_params(plain)
    with torch.no_grad():
        out = patched(torch.rand(2, 3, 1, 30, 45), 2)  # padded to 30x46 inside, cropped back
    assert out.frames.shape == (2, 2, 1, 30, 45)
