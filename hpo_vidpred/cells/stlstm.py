"""Spatiotemporal LSTM of PredRNN (Wang et al. 2017; slide equations 35-44), fused.

Besides the temporal memory C (eqs. 35-38) each layer updates the spatiotemporal memory M (eqs.
39-42), which the architecture passes from layer to layer within a time step and from the last
layer computed at t-1 to the first at t (:meth:`Cell.memory` / :meth:`Cell.with_memory`).

Fused convolutions with the seed's parameters, layout and biases:
- ``conv_x``: the input, for all seven input terms (no bias), in the order
  i, f, g (eqs. 35-37), i', f', g' (eqs. 39-41), o (eq. 43);
- ``conv_h``: the hidden state, for i, f, g, o (biases b_i, b_f, b_g, b_o);
- ``conv_m``: the incoming memory M^{l-1}, for i', f', g' (biases b_i', b_f', b_g');
- ``conv_o``: ``W_co * C_t + W_mo * M_t`` (eq. 43), one convolution over ``[C_t, M_t]`` (no bias);
- ``conv_1x1``: ``W_1x1 * [C_t, M_t]`` (eq. 44, no bias).
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import CELLS, Cell, State, adapt_memory

__all__ = ["STLSTM"]


@CELLS.register("stlstm")
class STLSTM(Cell):
    """ST-LSTM cell; state ``(h, c, m)``. ``peephole`` is accepted for a uniform signature and
    ignored: the cell's output gate already sees C and M (eq. 43)."""

    state_names = ("h", "c", "m")
    forget_gates = (("conv_h", 1), ("conv_m", 1))  # i, f, g, o and i', f', g'

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, peephole: str = "none"):
        super().__init__(in_channels, hidden, kernel)
        pad = kernel // 2
        self.conv_x = nn.Conv2d(in_channels, 7 * hidden, kernel, padding=pad, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel, padding=pad, bias=True)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, kernel, padding=pad, bias=True)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel, padding=pad, bias=False)
        self.conv_1x1 = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def step(self, x: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        h_prev, c_prev, m_prev = state  # m_prev: M_t^{l-1}, the memory coming from below
        x_i, x_f, x_g, x_i2, x_f2, x_g2, x_o = self.conv_x(x).chunk(7, dim=1)  # 7 x (B, hid, H, W)
        h_i, h_f, h_g, h_o = self.conv_h(h_prev).chunk(4, dim=1)
        m_i, m_f, m_g = self.conv_m(m_prev).chunk(3, dim=1)
        g = torch.tanh(x_g + h_g)  # eq. 35
        i = torch.sigmoid(x_i + h_i)  # eq. 36
        f = torch.sigmoid(x_f + h_f)  # eq. 37
        c = f * c_prev + i * g  # eq. 38
        g2 = torch.tanh(x_g2 + m_g)  # eq. 39
        i2 = torch.sigmoid(x_i2 + m_i)  # eq. 40
        f2 = torch.sigmoid(x_f2 + m_f)  # eq. 41
        m = f2 * m_prev + i2 * g2  # eq. 42
        cm = torch.cat((c, m), dim=1)  # (B, 2*hidden, H, W)
        o = torch.sigmoid(x_o + h_o + self.conv_o(cm))  # eq. 43
        h = o * torch.tanh(self.conv_1x1(cm))  # eq. 44
        return {"g": g, "i": i, "f": f, "c": c, "g'": g2, "i'": i2, "f'": f2, "m": m, "o": o,
                "h": h}

    def memory(self, state: State) -> torch.Tensor:
        return state[2]

    def with_memory(self, state: State, memory: torch.Tensor | None) -> State:
        if memory is None:
            return state
        h, c, _ = state
        return h, c, adapt_memory(memory, self.hidden, h.shape[-2], h.shape[-1])
