"""The one interface every recurrent cell has (docs/design.md section 4) and the cell registry.

A cell maps one input frame ``x_t (B, C_in, H, W)`` and its state to a hidden state
``h_t (B, hidden, H, W)`` and the next state. ``step`` returns every gate by name (the tests
compare them one by one with the slide equations); ``forward`` keeps only what the next step needs.

Cells that pass a memory between layers (the ST-LSTM's spatiotemporal memory M, Wang et al. 2017)
expose it through :meth:`Cell.memory` and take it in through :meth:`Cell.with_memory`; for the
others both are no-ops, so an architecture runs the same loop for every cell:

    state = cell.with_memory(state, m)   # M of the layer computed just before (the top at t-1)
    h, state = cell(x, state)
    m = cell.memory(state)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

__all__ = ["CELLS", "Cell", "State", "adapt_memory"]

CELLS: Registry[type[Cell]] = Registry("cell")

State = tuple[torch.Tensor, ...]


class Cell(nn.Module):
    """Base of the recurrent cells: a state of ``len(state_names)`` tensors of shape
    ``(B, hidden, H, W)``, the first of which is the hidden state ``h``."""

    state_names: tuple[str, ...] = ("h",)

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(
                f"cell needs in_channels, hidden >= 1 and an odd kernel, got "
                f"{in_channels}, {hidden}, {kernel}"
            )
        self.in_channels = in_channels
        self.hidden = hidden
        self.kernel = kernel

    def init_state(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """Zeros for every state tensor, on the parameters' device and dtype unless given."""
        ref = next(self.parameters())
        shape = (batch, self.hidden, height, width)
        return tuple(
            torch.zeros(shape, device=device or ref.device, dtype=dtype or ref.dtype)
            for _ in self.state_names
        )

    def step(self, x: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        """One time step, returning every gate and every new state tensor by name."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``(h_t, state_t)`` from ``x_t (B, C_in, H, W)`` and ``state_{t-1}`` (None: zeros)."""
        if state is None:
            state = self.init_state(
                x.shape[0], x.shape[-2], x.shape[-1], device=x.device, dtype=x.dtype
            )
        out = self.step(x, state)
        new = tuple(out[name] for name in self.state_names)
        return new[0], new

    # (bias parameter, gate index in it) of every forget gate: ConvLSTM's f, ST-LSTM's f and f'.
    # Their initial bias is ModelSpec.forget_bias (see :meth:`init_forget_bias`).
    forget_gates: tuple[tuple[str, int], ...] = ()

    @torch.no_grad()
    def init_forget_bias(self, value: float) -> None:
        """Start every forget gate's bias at ``value`` (Jozefowicz et al. 2015 recommend 1;
        0 is the seed's, and PyTorch's convolutions start biases near 0)."""
        for name, index in self.forget_gates:
            bias = getattr(self, name).bias  # (gates * hidden,)
            bias[index * self.hidden:(index + 1) * self.hidden] = value

    def memory(self, state: State) -> torch.Tensor | None:
        """The memory this cell hands to the next layer computed (None: it has none)."""
        return None

    def with_memory(self, state: State, memory: torch.Tensor | None) -> State:
        """``state`` with the incoming memory of another layer put in (a no-op without one)."""
        return state


def adapt_memory(memory: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Bring a memory tensor ``(B, C, H', W')`` to ``(B, channels, height, width)`` without
    parameters, so that M can zigzag through layers of different widths and resolutions while the
    parameter count stays the seed's: adaptive average pooling over (channel, height, width) -- an
    average where the target is smaller, a (nearest-neighbour) copy where it is larger."""
    if memory.shape[1:] == (channels, height, width):
        return memory
    # (B, C, H', W') -> (B, 1, C, H', W'): channels become a pooling axis like height and width
    pooled = F.adaptive_avg_pool3d(memory.unsqueeze(1), (channels, height, width))
    return pooled.squeeze(1)  # (B, channels, height, width)
