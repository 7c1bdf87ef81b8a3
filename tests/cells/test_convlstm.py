"""The fused ConvLSTM equals the slide equations 6-11 (plus each peephole mode), gate by gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpo_vidpred.cells import ConvLSTM, create_cell
from hpo_vidpred.errors import HpoError

IN, HID, K = 3, 4, 3


def _conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, padding=w.shape[-1] // 2)


def _unfused(cell: ConvLSTM, x, h_prev, c_prev) -> dict[str, torch.Tensor]:
    """Equations 6-11 written out with one convolution per gate and input, using the slices of
    the fused weights (gate order i, f, g, o)."""
    w_x = cell.conv_x.weight.split(HID)  # W_xi, W_xf, W_xc~, W_xo
    w_h = cell.conv_h.weight.split(HID)
    b = cell.conv_h.bias.view(4, HID, 1, 1)
    peep_i = peep_f = 0.0
    peep_o = None
    if cell.peephole_mode == "conv":
        w_ci, w_cf = cell.peephole.conv_if.weight.split(HID)
        peep_i, peep_f = _conv(c_prev, w_ci), _conv(c_prev, w_cf)
        peep_o = lambda c: _conv(c, cell.peephole.conv_o.weight)  # noqa: E731
    elif cell.peephole_mode == "hadamard":
        w_ci, w_cf = cell.peephole.w_if
        peep_i, peep_f = w_ci * c_prev, w_cf * c_prev
        peep_o = lambda c: cell.peephole.w_o * c  # noqa: E731
    i = torch.sigmoid(_conv(x, w_x[0]) + _conv(h_prev, w_h[0]) + b[0] + peep_i)  # eq. 6
    f = torch.sigmoid(_conv(x, w_x[1]) + _conv(h_prev, w_h[1]) + b[1] + peep_f)  # eq. 7
    g = torch.tanh(_conv(x, w_x[2]) + _conv(h_prev, w_h[2]) + b[2])  # eq. 8
    c = g * i + c_prev * f  # eq. 9
    pre_o = _conv(x, w_x[3]) + _conv(h_prev, w_h[3]) + b[3]
    o = torch.sigmoid(pre_o + (peep_o(c) if peep_o else 0.0))  # eq. 10
    h = o * torch.tanh(c)  # eq. 11
    return {"i": i, "f": f, "g": g, "c": c, "o": o, "h": h}


@pytest.mark.parametrize("peephole", ["none", "conv", "hadamard"])
def test_fused_equals_slide_equations(peephole: str) -> None:
    torch.manual_seed(0)
    cell = create_cell("convlstm", IN, HID, K, peephole=peephole)
    with torch.no_grad():
        for p in cell.parameters():  # nonzero everywhere (the hadamard weights start at 0)
            p.uniform_(-0.5, 0.5)
    x = torch.randn(2, IN, 7, 9)
    h_prev, c_prev = torch.randn(2, HID, 7, 9), torch.randn(2, HID, 7, 9)
    fused = cell.step(x, (h_prev, c_prev))
    direct = _unfused(cell, x, h_prev, c_prev)
    for gate, value in direct.items():
        torch.testing.assert_close(fused[gate], value, atol=1e-5, rtol=0, msg=gate)
    h, state = cell(x, (h_prev, c_prev))
    torch.testing.assert_close(h, direct["h"], atol=1e-5, rtol=0)
    torch.testing.assert_close(state[1], direct["c"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("peephole", "extra"),
    [("none", 0), ("conv", 3 * HID * HID * K * K), ("hadamard", 3 * HID)],
)
def test_parameter_count_is_the_seeds(peephole: str, extra: int) -> None:
    # The seed: 4 input convolutions without bias, 4 hidden convolutions with bias (+ peepholes).
    cell = create_cell("convlstm", IN, HID, K, peephole=peephole)
    expected = 4 * IN * HID * K * K + 4 * (HID * HID * K * K + HID) + extra
    assert sum(p.numel() for p in cell.parameters()) == expected


def test_state_defaults_to_zeros_and_runs_at_any_size() -> None:
    cell = create_cell("convlstm", IN, HID, 5, peephole="hadamard")
    x = torch.rand(3, IN, 5, 11)
    h, state = cell(x)
    assert h.shape == (3, HID, 5, 11) and len(state) == 2
    torch.testing.assert_close(cell(x, cell.init_state(3, 5, 11))[0], h)


def test_unknown_peephole_is_a_clear_error() -> None:
    message = "unknown peephole 'diag'; choose one of: none, conv, hadamard"
    with pytest.raises(HpoError, match=message):
        create_cell("convlstm", IN, HID, K, peephole="diag")
