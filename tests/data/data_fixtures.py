"""Helpers for the data tests: the real KTH files and writers for KTH-format AVIs (PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL_CLIP = FIXTURES / "person01_boxing_d1_uncomp.avi"
REAL_SEQUENCES = FIXTURES / "00sequences.txt"


def write_avi(path: Path, frames: np.ndarray) -> Path:
    """Write grayscale uint8 frames ``(T, H, W)`` as an MPEG-4 part 2 AVI in a color codec, like
    KTH's originals (DivX 5, yuv420p)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4_000_000
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.repeat(image[..., None], 3, -1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def coded_frames(count: int, video_id: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Frames whose left half encodes the 1-based frame number (6 * k) and whose right half the
    video (25 * id), so that a decoded window tells where it came from."""
    frames = np.zeros((count, height, width), dtype=np.uint8)
    frames[:, :, : width // 2] = (6 * np.arange(1, count + 1))[:, None, None]
    frames[:, :, width // 2:] = 25 * video_id
    return frames


def read_codes(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame numbers, video ids) of float windows ``(N, T, 1, H, W)`` made from coded frames."""
    width = windows.shape[-1]
    left = windows[..., : width // 4].mean(axis=(-3, -2, -1)) * 255  # (N, T)
    right = windows[..., -width // 4:].mean(axis=(-3, -2, -1)) * 255
    return np.rint(left / 6).astype(int), np.rint(right / 25).astype(int)
