"""Frame metrics against scikit-image on real Moving MNIST frames (docs/design.md
section 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hpo_vidpred import data as datasets
from hpo_vidpred.metrics import MetricSums, frame_metrics, mae, mse, mse_frame, psnr, ssim


@pytest.fixture(scope="module")
def mmnist_frames() -> torch.Tensor:
    """Real Moving MNIST validation sequences (bundled digits), float (4, 6, 1, 64, 64)."""
    spec = datasets.default_spec("mmnist", n_in=3, n_out=3, val_size=4)
    return next(datasets.load(spec, "cpu").batches("val", 4))


def _noisy(frames: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(seed))
    return (frames + sigma * noise).clamp(0.0, 1.0)


def _reference(pred: torch.Tensor, true: torch.Tensor, fn) -> np.ndarray:
    """scikit-image per frame: ``(B, T)``; colour SSIM with ``channel_axis`` (PSNR takes all
    pixels of a frame at once anyway)."""
    b, t, c = pred.shape[:3]
    colour = {"channel_axis": 2} if c > 1 and fn is structural_similarity else {}
    out = np.zeros((b, t))
    for i in range(b):
        for j in range(t):
            p = pred[i, j].permute(1, 2, 0).double().numpy()  # (H, W, C)
            g = true[i, j].permute(1, 2, 0).double().numpy()
            if c == 1:
                p, g = p[..., 0], g[..., 0]  # (H, W)
            out[i, j] = fn(g, p, data_range=1.0, **colour)
    return out


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
def test_ssim_and_psnr_agree_with_scikit_image_on_moving_mnist(mmnist_frames, sigma) -> None:
    true = mmnist_frames
    assert true.max() == 1.0 and (true == 0).float().mean() > 0.5  # digits on black, really
    pred = _noisy(true, sigma, seed=int(sigma * 100))
    ours_ssim, ours_psnr = ssim(pred, true).numpy(), psnr(pred, true).numpy()
    assert ours_ssim.shape == (4, 6)
    np.testing.assert_allclose(ours_ssim, _reference(pred, true, structural_similarity),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours_psnr, _reference(pred, true, peak_signal_noise_ratio),
                               rtol=0, atol=1e-4)


def test_ssim_between_two_different_real_sequences(mmnist_frames) -> None:
    pred, true = mmnist_frames.flip(0), mmnist_frames  # other digits, other places
    np.testing.assert_allclose(ssim(pred, true).numpy(),
                               _reference(pred, true, structural_similarity), rtol=0, atol=1e-4)


def test_colour_frames_average_ssim_over_channels() -> None:
    g = torch.Generator().manual_seed(3)
    true = torch.rand(2, 2, 3, 20, 24, generator=g)
    pred = _noisy(true, 0.2, seed=4)
    np.testing.assert_allclose(ssim(pred, true).numpy(),
                               _reference(pred, true, structural_similarity), rtol=0, atol=1e-4)
    np.testing.assert_allclose(psnr(pred, true).numpy(),
                               _reference(pred, true, peak_signal_noise_ratio), rtol=0, atol=1e-4)


def test_pixel_errors_and_their_units(mmnist_frames) -> None:
    true = mmnist_frames
    pred = _noisy(true, 0.1, seed=5)
    diff = (pred - true).double()
    per_frame = diff.pow(2).mean(dim=(2, 3, 4))
    torch.testing.assert_close(mse(pred, true).double(), per_frame)
    torch.testing.assert_close(mse_frame(pred, true).double(), per_frame * 64 * 64,
                               rtol=1e-6, atol=0)
    torch.testing.assert_close(mae(pred, true).double(), diff.abs().mean(dim=(2, 3, 4)))


def test_perfect_prediction() -> None:
    frames = torch.rand(1, 2, 1, 8, 8)
    metrics = frame_metrics(frames, frames.clone())
    assert metrics["mse"].max() == 0 and metrics["psnr"].min() == pytest.approx(100.0)
    torch.testing.assert_close(metrics["ssim"], torch.ones(1, 2))


def test_sums_over_batches_equal_the_mean_over_all_frames(mmnist_frames) -> None:
    true = mmnist_frames
    pred = _noisy(true, 0.1, seed=6)
    sums = MetricSums()
    for start in (0, 3):  # uneven batches: 3 + 1 sequences
        sums.add(pred[start:start + 3], true[start:start + 3])
    result = sums.result()
    everything = frame_metrics(pred, true)
    for name, values in everything.items():
        assert result[name] == pytest.approx(values.double().mean().item(), rel=1e-6)
        assert result[f"{name}_per_step"] == pytest.approx(values.double().mean(0).tolist(),
                                                           rel=1e-6)
    # PSNR is the mean of per-frame PSNRs (OpenSTL), not the PSNR of the mean MSE.
    assert result["psnr"] != pytest.approx(-10 * np.log10(result["mse"]), rel=1e-6)


def test_mismatched_shapes_and_tiny_frames_are_rejected() -> None:
    with pytest.raises(ValueError, match="one shape"):
        mse(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.zeros(1, 1, 1, 6, 8), torch.zeros(1, 1, 1, 6, 8))


def test_trivial_baselines_give_exact_numbers_on_hand_made_frames() -> None:
    from hpo_vidpred.metrics import trivial_baselines

    # one sequence, 1x8x8 frames: inputs 0.2 then 0.6 everywhere, futures 0.5 then 1.0
    frames = torch.tensor([0.2, 0.6, 0.5, 1.0]).view(1, 4, 1, 1, 1).expand(1, 4, 1, 8, 8)
    out = trivial_baselines([frames], n_in=2, n_out=2)
    assert out["black"]["mse_per_step"] == pytest.approx([0.25, 1.0])
    assert out["black"]["mse"] == pytest.approx(0.625)
    assert out["copy_last"]["mse_per_step"] == pytest.approx([0.01, 0.16])  # 0.6 forward
    assert out["mean_input"]["mse_per_step"] == pytest.approx([0.01, 0.36])  # 0.4 forward
    assert out["copy_last"]["mae"] == pytest.approx(0.25)
    assert out["black"]["mse_frame"] == pytest.approx(0.625 * 64)
    # batches are averaged over every sequence, whatever the batch size
    two = torch.cat([frames, torch.zeros_like(frames)])
    split = trivial_baselines([two[:1], two[1:]], 2, 2)
    whole = trivial_baselines([two], 2, 2)
    assert split["black"]["mse"] == pytest.approx(whole["black"]["mse"]) == pytest.approx(0.3125)
