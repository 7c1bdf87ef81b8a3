"""Reading videos: AVI files with PyAV and folders of frame images, as grayscale uint8 arrays."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["VideoError", "decode_video", "header_frames", "frame_files", "read_frame_folder",
           "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in a file name: image_0042.png -> 42


class VideoError(Exception):
    """A video that cannot be used; the message is the reason shown to the user."""


def decode_video(path: Path) -> np.ndarray:
    """All frames of a video file as grayscale uint8 ``(T, H, W)`` (full-range luma).

    Raises :class:`VideoError` when the file cannot be opened or decoded, holds no frames, or
    yields fewer frames than its header announces (a truncated file).
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            expected = stream.frames  # from the container header; 0 when unknown
            frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    except (av.error.FFmpegError, OSError, EOFError, ValueError) as exc:
        raise VideoError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise VideoError("no frames")
    if expected and len(frames) < expected:
        raise VideoError(f"truncated: decoded {len(frames)} of {expected} frames")
    return np.stack(frames)  # (T, H, W)


def header_frames(path: Path) -> Optional[int]:
    """Frame count from the container header without decoding (None when unknown/unreadable)."""
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, OSError, EOFError, ValueError, IndexError):
        return None


def frame_files(folder: Path) -> list[tuple[int, Path]]:
    """(frame number, file) of the numbered images in ``folder``, by number."""
    found = []
    for path in folder.iterdir():
        match = _NUMBER.search(path.stem)
        if path.suffix.lower() in IMAGE_SUFFIXES and match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_frame_folder(folder: Path) -> tuple[np.ndarray, list[int]]:
    """A folder of numbered frame images (``image_0001.png``...) as grayscale uint8 ``(T, H, W)``
    plus each frame's number. Raises :class:`VideoError` for an empty folder or a bad image."""
    files = frame_files(folder)
    if not files:
        raise VideoError("no numbered frame images")
    frames = []
    for _, path in files:
        try:
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("L")))
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoError(f"unreadable frame {path.name} ({exc})") from None
    if len({f.shape for f in frames}) > 1:
        raise VideoError("frames of different sizes")
    return np.stack(frames), [number for number, _ in files]  # (T, H, W)
