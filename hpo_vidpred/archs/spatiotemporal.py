"""Spatio-temporal video autoencoder with differentiable memory (Patraucean et al. 2015).

Per time step: a spatial encoder (conv ``enc_kernel`` + tanh + 2x2 max-pool) encodes the frame;
the recurrent cell(s) update the temporal memory; a flow head (two ``flow_kernel`` convolutions and
a 1x1 convolution, linear as in the seed) turns the hidden state into an optical-flow map,
converted to normalised grid units and clamped to ``+-clamp``; the last encoded frame is warped by
that flow (``grid_sample`` on identity + flow) and a decoder (nearest 2x upsampling + conv
``dec_kernel``) turns it into the next frame. Each predicted frame is encoded and fed to the cell
in turn (closed loop), so the recurrent state simply continues.

``aux_loss`` is the smoothness penalty on the flow: ``huber_weight`` times the mean Huber loss
(threshold ``huber_mu``) of its spatial gradients, taken with the fixed central-difference stencil
(+-1/2) of the paper, averaged over the predicted steps.

Frames of any size are padded to even height and width and the predictions cropped back; the flow
grid follows the actual feature size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..specs import ModelSpec
from ._base import ARCHS, VideoModel, check_kernel, layer_widths, require
from ._layers import CellStack, feed_back

__all__ = ["Spatiotemporal", "SpatiotemporalConfig", "flow_smoothness"]


@dataclass(frozen=True)
class SpatiotemporalConfig:
    """Settings a search space may change (``config`` of the :class:`ModelSpec`)."""

    enc_channels: int = 32  # channels of the encoded frame (also what the decoder reads)
    enc_kernel: int = 7
    depth: int = 1  # recurrent layers
    hidden: int | tuple[int, ...] = 45  # first width (doubled per layer) or one width per layer
    kernel: int = 7  # recurrent kernel
    flow_kernel: int = 15
    clamp: float = 0.5  # max |flow| in normalised grid units ([-1, 1] spans the frame)
    huber_mu: float = 0.001
    huber_weight: float = 0.01
    dec_kernel: int = 7

    def __post_init__(self) -> None:
        require(self.depth >= 1, f"spatiotemporal config depth={self.depth} must be >= 1")
        require(self.enc_channels >= 1, "spatiotemporal config enc_channels must be >= 1")
        require(self.clamp > 0, f"spatiotemporal config clamp={self.clamp} must be > 0")
        require(self.huber_mu > 0, f"spatiotemporal config huber_mu={self.huber_mu} must be > 0")
        require(self.huber_weight >= 0, "spatiotemporal config huber_weight must be >= 0")
        check_kernel("spatiotemporal", enc_kernel=self.enc_kernel, kernel=self.kernel,
                     flow_kernel=self.flow_kernel, dec_kernel=self.dec_kernel)


@ARCHS.register("spatiotemporal")
class Spatiotemporal(VideoModel):
    """Encoder, recurrent cell, flow head, warp, decoder; see the module docstring."""

    Config = SpatiotemporalConfig
    multiple = 2  # the encoder's max-pool
    widths = {"enc_channels": "", "hidden": "depth"}  # the encoder's; the recurrent stack's

    def __init__(self, spec: ModelSpec, config: SpatiotemporalConfig) -> None:
        super().__init__(spec, config)
        enc, c = config.enc_channels, spec.channels
        widths = layer_widths(config.depth, config.hidden, "spatiotemporal")
        self.encoder = nn.Sequential(
            nn.Conv2d(c, enc, config.enc_kernel, padding=config.enc_kernel // 2),
            nn.Tanh(),
            nn.MaxPool2d(2),
        )
        self.stack = CellStack(spec.cell, enc, widths, config.kernel, spec.peephole)
        fk = config.flow_kernel
        self.flow = nn.Sequential(
            nn.Conv2d(widths[-1], 2, fk, padding=fk // 2),
            nn.Conv2d(2, 2, fk, padding=fk // 2),
            nn.Conv2d(2, 2, 1),
        )
        # Start close to the identity warp (the seed starts exactly at it with a zero 1x1 layer,
        # which leaves the two flow convolutions without gradient at the first step).
        nn.init.normal_(self.flow[-1].weight, std=1e-3)
        nn.init.zeros_(self.flow[-1].bias)
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(enc, c, config.dec_kernel, padding=config.dec_kernel // 2),
        )

    def rollout(
        self, frames: torch.Tensor, n_future: int, targets: torch.Tensor | None, tf_prob: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_in = frames.shape[:2]
        fh, fw = frames.shape[-2] // 2, frames.shape[-1] // 2  # feature size
        state = self.stack.init_state(batch, fh, fw, frames.device)
        identity = torch.eye(2, 3, device=frames.device, dtype=frames.dtype).expand(batch, 2, 3)
        base_grid = F.affine_grid(identity, [batch, 1, fh, fw], align_corners=False)  # (B,h,w,2)
        to_grid = frames.new_tensor([2.0 / fw, 2.0 / fh]).view(1, 2, 1, 1)  # pixels -> grid units
        predictions, aux = [], frames.new_zeros(())
        for t in range(n_in + n_future - 1):
            x = (frames[:, t] if t < n_in
                 else feed_back(predictions[-1], targets, t - n_in, tf_prob))
            encoded = self.encoder(x)  # (B, enc, h, w)
            hidden, state = self.stack(encoded, state)
            if t < n_in - 1:
                continue
            flow = (self.flow(hidden) * to_grid).clamp(-self.config.clamp, self.config.clamp)
            aux = aux + flow_smoothness(flow, self.config.huber_mu)
            grid = base_grid + flow.permute(0, 2, 3, 1)  # (B, 2, h, w) -> (B, h, w, 2): x, y
            warped = F.grid_sample(encoded, grid, mode="bilinear", align_corners=False)
            predictions.append(self.decoder(warped))  # (B, C, H', W')
        aux = aux * (self.config.huber_weight / n_future)
        return torch.stack(predictions, dim=1), aux  # (B, n_future, C, H', W')


def flow_smoothness(flow: torch.Tensor, mu: float) -> torch.Tensor:
    """Mean Huber loss (threshold ``mu``) of the flow's spatial gradients, each taken with the
    central-difference stencil (-1/2, 0, 1/2) on ``(B, 2, h, w)`` (edges replicated); no
    parameters (the seed's two frozen 3x3 convolutions do the same)."""
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")  # (B, 2, h+2, w+2)
    d_x = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    d_y = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    grads = torch.cat((d_x, d_y), dim=1)  # (B, 4, h, w)
    return F.huber_loss(grads, torch.zeros_like(grads), delta=mu)
