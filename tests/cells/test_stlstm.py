"""The fused ST-LSTM equals the slide equations 35-44, gate by gate; its memory M adapts between
layers without parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpo_vidpred.cells import STLSTM, adapt_memory, create_cell

IN, HID, K = 3, 4, 3


def _conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, padding=w.shape[-1] // 2)


def _unfused(cell: STLSTM, x, h_prev, c_prev, m_prev) -> dict[str, torch.Tensor]:
    """Equations 35-44 with one convolution per term, from slices of the fused weights."""
    w_xi, w_xf, w_xg, w_xi2, w_xf2, w_xg2, w_xo = cell.conv_x.weight.split(HID)
    w_hi, w_hf, w_hg, w_ho = cell.conv_h.weight.split(HID)
    b_i, b_f, b_g, b_o = cell.conv_h.bias.view(4, HID, 1, 1)
    w_mi, w_mf, w_mg = cell.conv_m.weight.split(HID)
    b_i2, b_f2, b_g2 = cell.conv_m.bias.view(3, HID, 1, 1)
    w_co, w_mo = cell.conv_o.weight.split(HID, dim=1)
    g = torch.tanh(_conv(x, w_xg) + _conv(h_prev, w_hg) + b_g)  # eq. 35
    i = torch.sigmoid(_conv(x, w_xi) + _conv(h_prev, w_hi) + b_i)  # eq. 36
    f = torch.sigmoid(_conv(x, w_xf) + _conv(h_prev, w_hf) + b_f)  # eq. 37
    c = f * c_prev + i * g  # eq. 38
    g2 = torch.tanh(_conv(x, w_xg2) + _conv(m_prev, w_mg) + b_g2)  # eq. 39
    i2 = torch.sigmoid(_conv(x, w_xi2) + _conv(m_prev, w_mi) + b_i2)  # eq. 40
    f2 = torch.sigmoid(_conv(x, w_xf2) + _conv(m_prev, w_mf) + b_f2)  # eq. 41
    m = f2 * m_prev + i2 * g2  # eq. 42
    o = torch.sigmoid(_conv(x, w_xo) + _conv(h_prev, w_ho) + _conv(c, w_co) + _conv(m, w_mo) + b_o)
    h = o * torch.tanh(_conv(torch.cat((c, m), 1), cell.conv_1x1.weight))  # eq. 44
    return {"g": g, "i": i, "f": f, "c": c, "g'": g2, "i'": i2, "f'": f2, "m": m, "o": o, "h": h}


@pytest.mark.parametrize("peephole", ["none", "conv", "hadamard"])  # ignored by the ST-LSTM
def test_fused_equals_slide_equations(peephole: str) -> None:
    torch.manual_seed(1)
    cell = create_cell("stlstm", IN, HID, K, peephole=peephole)
    x = torch.randn(2, IN, 6, 10)
    state = tuple(torch.randn(2, HID, 6, 10) for _ in range(3))
    fused = cell.step(x, state)
    direct = _unfused(cell, x, *state)
    assert set(fused) == set(direct)
    for gate, value in direct.items():
        torch.testing.assert_close(fused[gate], value, atol=1e-5, rtol=0, msg=gate)
    h, new_state = cell(x, state)
    for got, name in zip(new_state, ("h", "c", "m")):
        torch.testing.assert_close(got, direct[name], atol=1e-5, rtol=0)


def test_parameter_count_is_the_seeds() -> None:
    # The seed: 7 input convolutions (no bias); W_hi, W_hf, W_hg, W_ho and W_mi, W_mf, W_mg with
    # bias; W_mo and W_co without; the 1x1 convolution over [C, M] without bias.
    cell = create_cell("stlstm", IN, HID, K)
    kk = K * K
    expected = (7 * IN * HID * kk + 4 * (HID * HID * kk + HID) + 3 * (HID * HID * kk + HID)
                + 2 * HID * HID * kk + 2 * HID * HID)
    assert sum(p.numel() for p in cell.parameters()) == expected


def test_memory_goes_out_and_comes_in_adapted() -> None:
    cell = create_cell("stlstm", IN, HID, K)
    state = cell.init_state(1, 8, 8)
    m_other = torch.rand(1, 2 * HID, 4, 4)  # from a coarser, wider layer
    h, c, m = cell.with_memory(state, m_other)
    assert m.shape == (1, HID, 8, 8) and h is state[0] and c is state[1]
    assert cell.memory(cell(torch.rand(1, IN, 8, 8), (h, c, m))[1]).shape == (1, HID, 8, 8)
    assert cell.with_memory(state, None) is state


def test_adapt_memory_is_parameter_free_pooling_and_copying() -> None:
    m = torch.arange(16.0).view(1, 1, 4, 4)
    up = adapt_memory(m, 1, 8, 8)  # nearest-neighbour copy where larger
    torch.testing.assert_close(up, F.interpolate(m, scale_factor=2.0, mode="nearest"))
    down = adapt_memory(m, 1, 2, 2)  # average where smaller
    torch.testing.assert_close(down, F.avg_pool2d(m, 2))
    wide = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 3.0)]).unsqueeze(0)
    torch.testing.assert_close(adapt_memory(wide, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0))
    assert adapt_memory(wide, 4, 2, 2)[0, :, 0, 0].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert adapt_memory(m, 1, 4, 4) is m
