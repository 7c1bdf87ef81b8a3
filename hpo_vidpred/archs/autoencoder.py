"""The seed's recurrent autoencoder (Srivastava et al. 2015; Shi et al. 2015).

A stack of recurrent layers with hidden channels ``h1 .. hd`` (the encoder) followed by the
mirrored ``h(d-1) .. h1, C`` (the decoder); the last layer's hidden state, ``C`` channels wide, is
the next frame (the seed has no output head, and neither do we, so the parameter counts stay the
seed's).
Every layer runs over the whole sequence, one time step at a time (the seed's stacked modules hand
only their last hidden state on, so its later layers see a sequence of length one). After the
``n_in`` inputs each prediction is fed back as the next input (closed loop).

``patch > 1`` folds ``patch x patch`` pixel blocks into channels before the stack (space-to-depth)
and unfolds them after: the recurrent convolutions then run at 1/patch the resolution, which is
faster but changes the parameter count, so the fixed configurations keep ``patch: 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..specs import ModelSpec
from ._base import ARCHS, VideoModel, check_kernel, layer_widths, require
from ._layers import CellStack, feed_back

__all__ = ["Autoencoder", "AutoencoderConfig"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Settings a search space may change (``config`` of the :class:`ModelSpec`)."""

    depth: int = 2  # encoder layers; the decoder mirrors them
    hidden: int | tuple[int, ...] = 32  # first width (doubled per layer) or one width per layer
    kernel: int = 3
    patch: int = 1  # space-to-depth factor (1: off)

    def __post_init__(self) -> None:
        require(self.depth >= 1, f"autoencoder config depth={self.depth} must be >= 1")
        require(self.patch >= 1, f"autoencoder config patch={self.patch} must be >= 1")
        check_kernel("autoencoder", kernel=self.kernel)


@ARCHS.register("autoencoder")
class Autoencoder(VideoModel):
    """Recurrent encoder-decoder stack predicting one frame per step; see the module docstring."""

    Config = AutoencoderConfig
    widths = {"hidden": "depth"}  # the first width, doubled per layer of the encoder

    def __init__(self, spec: ModelSpec, config: AutoencoderConfig) -> None:
        super().__init__(spec, config)
        self.multiple = config.patch
        widths = layer_widths(config.depth, config.hidden, "autoencoder")
        io_channels = spec.channels * config.patch**2
        decoder = (*widths[-2::-1], io_channels)  # h(d-1) .. h1, then the frame's channels
        self.stack = CellStack(spec.cell, io_channels, (*widths, *decoder), config.kernel,
                               spec.peephole)

    def rollout(
        self, frames: torch.Tensor, n_future: int, targets: torch.Tensor | None, tf_prob: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_in = frames.shape[:2]
        patch = self.config.patch
        inputs = _fold(frames, patch)  # (B, T, C*p*p, H/p, W/p)
        if targets is not None:
            targets = _fold(targets, patch)
        state = self.stack.init_state(batch, inputs.shape[-2], inputs.shape[-1], frames.device)
        predictions: list[torch.Tensor] = []
        x = inputs[:, 0]
        for t in range(n_in + n_future - 1):
            prediction, state = self.stack(x, state)  # frame t+1, (B, C*p*p, H/p, W/p)
            k = t + 1 - n_in  # its index among the future frames
            if k < 0:
                x = inputs[:, t + 1]
                continue
            predictions.append(prediction)
            if k + 1 < n_future:
                x = feed_back(prediction, targets, k, tf_prob)
        frames_out = _unfold(torch.stack(predictions, dim=1), patch)  # (B, n_future, C, H', W')
        return frames_out, frames.new_zeros(())


def _fold(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """Space-to-depth: ``(B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p)``."""
    if patch == 1:
        return frames
    return F.pixel_unshuffle(frames.flatten(0, 1), patch).unflatten(0, frames.shape[:2])


def _unfold(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """Depth-to-space: ``(B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)``."""
    if patch == 1:
        return frames
    return F.pixel_shuffle(frames.flatten(0, 1), patch).unflatten(0, frames.shape[:2])
