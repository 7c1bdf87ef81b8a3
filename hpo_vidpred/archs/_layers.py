"""Small pieces the architectures share: a stack of recurrent cells, padding, the closed loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..cells import Cell, State, create_cell

__all__ = ["CellStack", "StackState", "check_inputs", "crop", "feed_back", "pad_to_multiple"]

StackState = tuple[list[State], torch.Tensor | None]  # per-layer states, memory in transit


class CellStack(nn.Module):
    """Recurrent layers applied one after the other at every time step: layer l+1 takes layer l's
    hidden state as input. An ST-LSTM's memory M goes up the stack within a time step and from the
    last layer at t-1 to the first layer at t (Wang et al. 2017), adapted without parameters where
    neighbouring widths differ."""

    def __init__(
        self, cell: str, in_channels: int, widths: tuple[int, ...], kernel: int, peephole: str
    ) -> None:
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.cells = nn.ModuleList(
            create_cell(cell, c_in, width, kernel, peephole) for c_in, width in zip(ins, widths)
        )

    def init_state(self, batch: int, height: int, width: int, device: torch.device) -> StackState:
        """Zero states for every layer and no memory yet."""
        cells: list[Cell] = list(self.cells)  # type: ignore[arg-type]
        return [c.init_state(batch, height, width, device=device) for c in cells], None

    def forward(self, x: torch.Tensor, state: StackState) -> tuple[torch.Tensor, StackState]:
        """``x (B, C_in, H, W)`` -> the last layer's hidden state ``(B, widths[-1], H, W)``."""
        states, memory = state
        new_states = []
        for cell, layer_state in zip(self.cells, states):
            layer_state = cell.with_memory(layer_state, memory)
            x, layer_state = cell(x, layer_state)
            memory = cell.memory(layer_state)
            new_states.append(layer_state)
        return x, (new_states, memory)


def pad_to_multiple(frames: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad ``(B, T, C, H, W)`` at the bottom and right so H, W divide by ``multiple``."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return frames
    b, t = frames.shape[:2]
    flat = frames.flatten(0, 1)  # (B*T, C, H, W)
    flat = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return flat.unflatten(0, (b, t))  # (B, T, C, H', W')


def crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: ``(..., H', W') -> (..., height, width)``."""
    return frames[..., :height, :width]


def feed_back(
    prediction: torch.Tensor, targets: torch.Tensor | None, index: int, tf_prob: float
) -> torch.Tensor:
    """The frame fed in at future step ``index`` of the closed loop: the model's own prediction, or
    with ``targets`` the true frame with probability ``tf_prob`` per sequence (scheduled sampling,
    Bengio et al. 2015; ``tf_prob=1`` is teacher forcing)."""
    if targets is None or tf_prob <= 0.0:
        return prediction
    true = targets[:, index]  # (B, C, H, W)
    if tf_prob >= 1.0:
        return true
    use_true = torch.rand(true.shape[0], 1, 1, 1, device=true.device) < tf_prob  # (B, 1, 1, 1)
    return torch.where(use_true, true, prediction)


def check_inputs(frames_in: torch.Tensor, n_future: int, targets: torch.Tensor | None) -> None:
    """Shapes every architecture expects; a mismatch is a programming error (ValueError)."""
    if frames_in.dim() != 5:
        raise ValueError(f"frames_in must be (B, T, C, H, W), got shape {tuple(frames_in.shape)}")
    if n_future < 1:
        raise ValueError(f"n_future must be >= 1, got {n_future}")
    if targets is not None and (
        targets.shape[1] < n_future - 1 or targets.shape[2:] != frames_in.shape[2:]
    ):
        raise ValueError(
            f"targets {tuple(targets.shape)} do not fit frames_in {tuple(frames_in.shape)} "
            f"and n_future={n_future}"
        )
