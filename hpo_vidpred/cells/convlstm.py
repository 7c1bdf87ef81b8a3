"""Convolutional LSTM (Shi et al. 2015; slide equations 6-11) with fused gate convolutions.

One convolution over the input computes the input parts of all four gates (no bias), one over the
hidden state their recurrent parts (with the gate biases): the same parameters as the seed's eight
convolutions, in two calls. Gate order in the fused weights: i, f, g (the candidate c~ of eq. 8),
o.

Peepholes (``peephole``):
- ``none``: equations 6-11 as on the slides.
- ``conv``: the seed's own ConvLSTM: convolutions of the cell state (``W_ci * c_{t-1}``,
  ``W_cf * c_{t-1}``, ``W_co * c_t``; same kernel, no bias). The seed computes the output gate with
  ``W_hc`` by mistake; ours uses ``W_co`` (same parameter count).
- ``hadamard``: Shi et al.'s elementwise peepholes ``W_c . c``. Their weights are per channel
  ``(hidden, 1, 1)`` rather than per pixel, so one model runs at any frame size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry
from ._base import CELLS, Cell, State

__all__ = ["ConvLSTM", "PEEPHOLES"]

PEEPHOLES: Registry[type[nn.Module] | None] = Registry("peephole")
PEEPHOLES.register("none")(None)


@PEEPHOLES.register("conv")
class ConvPeephole(nn.Module):
    """Peephole convolutions of the cell state: ``W_ci, W_cf`` fused (on c_{t-1}), ``W_co`` (on
    c_t)."""

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv_if = nn.Conv2d(hidden, 2 * hidden, kernel, padding=kernel // 2, bias=False)
        self.conv_o = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, bias=False)

    def input_forget(self, c_prev: torch.Tensor) -> torch.Tensor:
        return self.conv_if(c_prev)  # (B, 2*hidden, H, W): i then f

    def output(self, c: torch.Tensor) -> torch.Tensor:
        return self.conv_o(c)


@PEEPHOLES.register("hadamard")
class HadamardPeephole(nn.Module):
    """Elementwise peepholes (Shi et al. 2015, eq. 3), one weight per channel and gate."""

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.w_if = nn.Parameter(torch.zeros(2, hidden, 1, 1))  # W_ci, W_cf
        self.w_o = nn.Parameter(torch.zeros(hidden, 1, 1))  # W_co

    def input_forget(self, c_prev: torch.Tensor) -> torch.Tensor:
        # (2, hidden, 1, 1) * (B, 1, hidden, H, W) -> (B, 2, hidden, H, W) -> (B, 2*hidden, H, W)
        return (self.w_if * c_prev.unsqueeze(1)).flatten(1, 2)

    def output(self, c: torch.Tensor) -> torch.Tensor:
        return self.w_o * c


@CELLS.register("convlstm")
class ConvLSTM(Cell):
    """ConvLSTM cell; state ``(h, c)``."""

    state_names = ("h", "c")
    forget_gates = (("conv_h", 1),)  # gate order i, f, g, o

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, peephole: str = "none"):
        super().__init__(in_channels, hidden, kernel)
        self.peephole_mode = peephole
        peep = PEEPHOLES.get(peephole)
        self.peephole = peep(hidden, kernel) if peep is not None else None
        self.conv_x = nn.Conv2d(in_channels, 4 * hidden, kernel, padding=kernel // 2, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=True)

    def step(self, x: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        h_prev, c_prev = state
        pre = self.conv_x(x) + self.conv_h(h_prev)  # (B, 4*hidden, H, W)
        pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=1)
        if self.peephole is not None:
            peep_i, peep_f = self.peephole.input_forget(c_prev).chunk(2, dim=1)
            pre_i, pre_f = pre_i + peep_i, pre_f + peep_f
        i = torch.sigmoid(pre_i)  # eq. 6
        f = torch.sigmoid(pre_f)  # eq. 7
        g = torch.tanh(pre_g)  # eq. 8
        c = g * i + c_prev * f  # eq. 9
        if self.peephole is not None:
            pre_o = pre_o + self.peephole.output(c)
        o = torch.sigmoid(pre_o)  # eq. 10
        h = o * torch.tanh(c)  # eq. 11
        return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
