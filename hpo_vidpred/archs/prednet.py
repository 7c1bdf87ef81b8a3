"""PredNet (Lotter et al. 2016; slide equations 30-34) with any recurrent cell.

Per layer l and time step t (layer 0 works on pixels, layer l on 1/2^l of the resolution):

- eq. 33, top-down: ``R_l^t = cell([E_l^{t-1}, Upsample(R_{l+1}^t)], R_l^{t-1})``
  (the top layer sees ``E^{t-1}`` only);
- eq. 31, bottom-up: ``A-hat_l^t = ReLU(Conv(R_l^t))``, clamped to ``pixel_max`` at layer 0
  (SatLU); ``A-hat_0^t`` is the prediction of frame t;
- eq. 32: ``E_l^t = [ReLU(A-hat_l^t - A_l^t); ReLU(A_l^t - A-hat_l^t)]``;
- eq. 30: ``A_0^t = x_t``, ``A_{l+1}^t = MaxPool(ReLU(Conv(E_l^t)))``.

Future frames are predicted in a closed loop: from step ``n_in`` on, ``A_0^t := A-hat_0^t`` (or
the true frame, with scheduled sampling). ``aux_loss`` is the error-unit loss of eq. 34 over the
observed steps: time weight 0 at t=0 and ``1/(n_in-1)`` after (Lotter et al.), layer weights
``(1, w, w, ...)`` with w = 0 (``l0``) or 0.1 (``lall``), each layer's error averaged over its
units.

Frames of any size are padded to a multiple of ``2^(depth-1)`` and the predictions cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..cells import create_cell
from ..specs import ModelSpec
from ._base import ARCHS, VideoModel, check_kernel, layer_widths, require
from ._layers import feed_back

__all__ = ["PredNet", "PredNetConfig", "LAYER_WEIGHTS"]

LAYER_WEIGHTS = {"l0": 0.0, "lall": 0.1}  # weight of each layer above the pixels (Lotter et al.)


@dataclass(frozen=True)
class PredNetConfig:
    """Settings a search space may change (``config`` of the :class:`ModelSpec`)."""

    depth: int = 4  # layers, the pixel layer included (the seed's `layer`)
    hidden: int | tuple[int, ...] = 48  # width of layer 1 (doubled per layer) or of layers 1..
    kernel: int = 3
    pixel_max: float = 1.0
    layer_weights: str = "l0"  # l0 | lall
    satlu_leak: float = 0.01  # slope of layer 0's SatLU outside [0, pixel_max]; 0: the paper's

    def __post_init__(self) -> None:
        require(self.depth >= 1, f"prednet config depth={self.depth} must be >= 1")
        require(self.pixel_max > 0, f"prednet config pixel_max={self.pixel_max} must be > 0")
        require(0 <= self.satlu_leak < 1, "prednet config satlu_leak must be in [0, 1)")
        require(
            self.layer_weights in LAYER_WEIGHTS,
            f"prednet config layer_weights={self.layer_weights!r}; choose one of: "
            f"{', '.join(LAYER_WEIGHTS)}",
        )
        check_kernel("prednet", kernel=self.kernel)


@ARCHS.register("prednet")
class PredNet(VideoModel):
    """Predictive-coding network; see the module docstring."""

    Config = PredNetConfig
    widths = {"hidden": "depth"}  # layer 1's width, doubled per layer above (depth counts layer 0)

    def __init__(self, spec: ModelSpec, config: PredNetConfig) -> None:
        super().__init__(spec, config)
        self.multiple = 2 ** (config.depth - 1)
        widths = (spec.channels, *layer_widths(config.depth - 1, config.hidden, "prednet"))
        above = (*widths[1:], 0)  # what the upsampled R of the layer above adds to the input
        k, pad = config.kernel, config.kernel // 2
        self.cells = nn.ModuleList(
            create_cell(spec.cell, 2 * w + a, w, k, spec.peephole) for w, a in zip(widths, above)
        )
        self.predict = nn.ModuleList(nn.Conv2d(w, w, k, padding=pad) for w in widths)  # eq. 31
        for conv in self.predict:
            # Zero biases (Lotter et al.'s Keras default): a random negative bias can start A-hat_0
            # below the SatLU everywhere, which leaves the whole network without gradient.
            nn.init.zeros_(conv.bias)
        self.target = nn.ModuleList(  # eq. 30
            nn.Conv2d(2 * w, a, k, padding=pad) for w, a in zip(widths[:-1], widths[1:])
        )
        upper = LAYER_WEIGHTS[config.layer_weights]
        self.layer_weights = (1.0,) + (upper,) * (config.depth - 1)
        self.widths = widths

    def rollout(
        self, frames: torch.Tensor, n_future: int, targets: torch.Tensor | None, tf_prob: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_in = frames.shape[:2]
        depth = len(self.cells)
        sizes = [(frames.shape[-2] >> i, frames.shape[-1] >> i) for i in range(depth)]  # layer i
        states = [cell.init_state(batch, h, w, device=frames.device)
                  for cell, (h, w) in zip(self.cells, sizes)]
        errors = [frames.new_zeros(batch, 2 * c, h, w) for c, (h, w) in zip(self.widths, sizes)]
        r: list[torch.Tensor] = [states[i][0] for i in range(depth)]
        memory = None  # ST-LSTM's M: top-down within a step, from layer 0 at t-1 to the top at t
        predictions, aux = [], frames.new_zeros(())
        for t in range(n_in + n_future):
            for i in reversed(range(depth)):  # eq. 33
                x = errors[i]
                if i < depth - 1:
                    up = F.interpolate(r[i + 1], scale_factor=2.0, mode="nearest")
                    x = torch.cat((x, up), dim=1)  # (B, 2*w_i + w_{i+1}, H_i, W_i)
                states[i] = self.cells[i].with_memory(states[i], memory)
                r[i], states[i] = self.cells[i](x, states[i])
                memory = self.cells[i].memory(states[i])
            for i in range(depth):
                a_hat = self.predict[i](r[i])
                if i == 0:
                    a_hat = _satlu(a_hat, self.config.pixel_max, self.config.satlu_leak)
                    if t < n_in:
                        a = frames[:, t]  # eq. 30, layer 0
                    else:
                        predictions.append(a_hat)
                        a = feed_back(a_hat, targets, t - n_in, tf_prob)
                else:
                    a_hat = F.relu(a_hat)  # eq. 31
                errors[i] = torch.cat((F.relu(a_hat - a), F.relu(a - a_hat)), dim=1)  # eq. 32
                if i < depth - 1:
                    a = F.max_pool2d(F.relu(self.target[i](errors[i])), 2)  # eq. 30, A_{i+1}
            if 1 <= t < n_in:  # eq. 34: time weight 0 at t = 0
                aux = aux + sum(w * e.mean() for w, e in zip(self.layer_weights, errors) if w)
        frames_out = torch.stack(predictions, dim=1)  # (B, n_future, C, H', W')
        return frames_out, aux / max(n_in - 1, 1)


def _satlu(x: torch.Tensor, pixel_max: float, leak: float) -> torch.Tensor:
    """Layer 0's saturating linear unit (eq. 31 with Lotter et al.'s clamp to ``[0, pixel_max]``),
    with slope ``leak`` outside the range. With a hard clamp a pixel layer whose pre-activation
    has gone below 0 everywhere passes no gradient at all and the network stops learning for good
    (the seed's "vanished" PredNet runs); the leak lets it recover."""
    clamped = x.clamp(0.0, pixel_max)
    return clamped + leak * (x - clamped) if leak else clamped
