"""Frame metrics on [0, 1], batched torch on whatever device the frames are on (docs/design.md
section 7).

Every metric is first computed per frame, i.e. per ``(sample, future step)`` pair of a
``(B, T, C, H, W)`` prediction, and then averaged:

- ``mse``: mean squared error per pixel (the seed's unit and the study's objective);
- ``mse_frame``: squared error summed over one frame's pixels (OpenSTL's "MSE");
- ``mae``: mean absolute error per pixel;
- ``psnr``: ``10 log10(1 / mse)`` of each frame (data range 1), then the mean over frames, as
  OpenSTL does (not the PSNR of the mean MSE). A perfect frame would give infinity; its MSE is
  clamped at 1e-10, i.e. PSNR at most 100 dB, so that means stay finite;
- ``ssim``: structural similarity (Wang et al. 2004) with scikit-image's defaults
  (``structural_similarity(..., data_range=1.0)``): a 7x7 uniform window, the sample covariance
  (N / (N - 1)), K1 = 0.01, K2 = 0.03, the mean over the valid window positions (scikit-image crops
  the 3-pixel border its filter pads); colour frames: the mean over channels (``channel_axis``).

:class:`MetricSums` accumulates per-step sums over batches, so a whole split is averaged over
all of its frames whatever the batch size. :func:`trivial_baselines` scores the predictors every
model must beat (docs/design.md section 7): all-black frames, the last input frame copied forward
and the mean of the input frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .specs import METRICS

__all__ = [
    "METRICS",
    "TRIVIAL_PREDICTORS",
    "frame_metrics",
    "mse",
    "mse_frame",
    "mae",
    "psnr",
    "ssim",
    "MetricSums",
    "trivial_baselines",
    "split_baselines",
]

SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
MIN_MSE = 1e-10  # PSNR cap: 100 dB


def _check(pred: torch.Tensor, true: torch.Tensor) -> None:
    if pred.shape != true.shape or pred.dim() != 5:
        raise ValueError(f"expected two (B, T, C, H, W) tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(true.shape)}")


def mse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-frame mean squared error per pixel: ``(B, T, C, H, W) -> (B, T)``."""
    _check(pred, true)
    return (pred.float() - true.float()).pow(2).mean(dim=(2, 3, 4))


def mse_frame(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-frame squared error summed over the frame (OpenSTL's MSE): ``-> (B, T)``."""
    _check(pred, true)
    return (pred.float() - true.float()).pow(2).sum(dim=(2, 3, 4))


def mae(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-frame mean absolute error per pixel: ``-> (B, T)``."""
    _check(pred, true)
    return (pred.float() - true.float()).abs().mean(dim=(2, 3, 4))


def psnr(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-frame peak signal-to-noise ratio in dB for data range 1: ``-> (B, T)``."""
    return _psnr(mse(pred, true))


def _psnr(frame_mse: torch.Tensor) -> torch.Tensor:
    return -10.0 * torch.log10(frame_mse.clamp_min(MIN_MSE))


def ssim(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM as scikit-image computes it with ``data_range=1.0``: ``-> (B, T)``.

    Computed in float64 (scikit-image's precision); frames must be at least 7x7.
    """
    _check(pred, true)
    b, t, c, h, w = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x = pred.double().reshape(b * t * c, 1, h, w)  # (B*T*C, 1, H, W): channels are separate images
    y = true.double().reshape(b * t * c, 1, h, w)
    # A uniform 7x7 mean over valid positions only = scikit-image's uniform_filter + border crop.
    stats = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), SSIM_WINDOW, stride=1)
    ux, uy, uxx, uyy, uxy = stats.unbind(dim=1)  # each (B*T*C, H-6, W-6)
    n = SSIM_WINDOW * SSIM_WINDOW
    cov_norm = n / (n - 1)  # sample covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K * data_range)^2 with data_range = 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2)).reshape(b, t, c).mean(dim=2).float()  # (B, T)


def frame_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` per frame: name -> ``(B, T)`` float tensor (the error is
    computed once)."""
    _check(pred, true)
    pred, true = pred.detach(), true.detach()
    error = pred.float() - true.float()  # (B, T, C, H, W)
    squared = error.pow(2)
    frame_mse = squared.mean(dim=(2, 3, 4))
    out = {"mse": frame_mse, "mse_frame": squared.sum(dim=(2, 3, 4)),
           "mae": error.abs().mean(dim=(2, 3, 4)), "psnr": _psnr(frame_mse),
           "ssim": ssim(pred, true)}
    return {name: out[name] for name in METRICS}


# The trivial predictors: (B, n_in, C, H, W) inputs -> (B, n_out, C, H, W) "predictions".
TRIVIAL_PREDICTORS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "black": lambda x, n: x.new_zeros((x.shape[0], n, *x.shape[2:])),
    "copy_last": lambda x, n: x[:, -1:].expand(-1, n, -1, -1, -1),
    "mean_input": lambda x, n: x.mean(dim=1, keepdim=True).expand(-1, n, -1, -1, -1),
}


@torch.no_grad()
def trivial_baselines(batches: Iterable[torch.Tensor], n_in: int, n_out: int
                      ) -> dict[str, dict[str, float | list[float]]]:
    """Every metric (:meth:`MetricSums.result`) of each trivial predictor over ``batches`` of
    float frames ``(B, n_in + n_out, C, H, W)``: ``{"black": {...}, "copy_last": {...},
    "mean_input": {...}}``."""
    sums = {name: MetricSums() for name in TRIVIAL_PREDICTORS}
    for frames in batches:
        frames_in, future = frames[:, :n_in], frames[:, n_in:n_in + n_out]
        for name, predict in TRIVIAL_PREDICTORS.items():
            sums[name].add(predict(frames_in, n_out), future)
    return {name: s.result() for name, s in sums.items()}


@dataclass
class MetricSums:
    """Per-future-step sums of the per-frame metrics over every batch seen.

    ``add(pred, true)`` for each batch, then ``result()`` gives the means: for each metric name the
    overall mean (over all frames) and ``<name>_per_step``, the mean at each future step.
    """

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0

    def add(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        """Add one batch of predicted and true frames ``(B, T, C, H, W)``."""
        for name, values in frame_metrics(pred, true).items():
            step_sum = values.double().sum(dim=0)  # (T,)
            self.sums[name] = self.sums[name] + step_sum if name in self.sums else step_sum
        self.count += pred.shape[0]

    def result(self) -> dict[str, float | list[float]]:
        """Means over every frame added: ``{"mse": .., "mse_per_step": [..], ...}`` (floats)."""
        if self.count == 0:
            raise ValueError("no frames were added")
        out: dict[str, float | list[float]] = {}
        for name in METRICS:
            per_step = (self.sums[name] / self.count).tolist()
            out[name] = sum(per_step) / len(per_step)
            out[f"{name}_per_step"] = per_step
        return out


def split_baselines(data, split: str = "val", batch_size: int = 64) -> dict:  # noqa: ANN001
    """:func:`trivial_baselines` of a whole split of a :class:`~hpo_vidpred.data.VideoData`
    (its spec gives n_in and n_out), JSON-safe, with the split's name: what studies record."""
    spec = data.spec
    return {"split": split, **trivial_baselines(data.batches(split, batch_size), spec.n_in,
                                                spec.n_out)}
