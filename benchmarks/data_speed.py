"""Time spent on data per training step: ``VideoData.train_batch`` (and one validation batch) per
dataset on one device, printed as JSON.

    python benchmarks/data_speed.py               # mmnist, kth, kitti on the default device
    python benchmarks/data_speed.py --data kth --data-dir datasets --batch-size 16 --device cuda

Real data is used where the data root holds it; otherwise KTH and KITTI are written to a temporary
folder in their original formats (PyAV-written 160x120 AVIs, PredNet-style hickle files) and go
through the same loaders, so the numbers are those of the training hot path either way (the
sampler's cost does not depend on how many videos the store holds). The first load's time, which
includes decoding and caching, is reported separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from hpo_vidpred import data as datasets
from hpo_vidpred import devices
from hpo_vidpred.errors import HpoError


def _write_kth(folder: Path, videos: int = 4, frames: int = 200) -> None:
    rng = np.random.default_rng(0)
    for i in range(videos):
        person = (11, 19, 22, 12)[i % 4]  # train, val, test persons of the kth protocol
        path = folder / f"person{person:02d}_walking_d{i // 4 + 1}_uncomp.avi"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            base = rng.integers(0, 256, (120, 160), dtype=np.uint8)
            for t in range(frames):
                image = np.roll(base, t, axis=1)
                frame = av.VideoFrame.from_ndarray(np.repeat(image[..., None], 3, -1),
                                                   format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())


def _write_kitti(folder: Path, frames: int = 400) -> None:
    import hickle

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        x = rng.integers(0, 256, (frames, 128, 160, 3), dtype=np.uint8)
        hickle.dump(x, str(folder / f"X_{split}.hkl"))
        hickle.dump([f"drive_{i // 100}" for i in range(frames)],
                    str(folder / f"sources_{split}.hkl"))


SYNTHETIC = {"kth": _write_kth, "kitti": _write_kitti}


def _spec(name: str, root: str | None, scratch: Path) -> tuple[Any, str]:
    """The dataset's default spec on real data when present, else on written data."""
    if root is not None or name == "mmnist":
        spec = datasets.default_spec(name, **({"root": root} if root else {}))
        try:
            datasets.info(spec)
            return spec, "real" if name != "mmnist" else "bundled digits"
        except HpoError:
            pass
    folder = scratch / name
    folder.mkdir(parents=True, exist_ok=True)
    SYNTHETIC[name](folder)
    return datasets.default_spec(name, root=str(folder)), "synthetic (written here)"


def measure(name: str, root: str | None, device: torch.device, batch_size: int, steps: int,
            scratch: Path) -> dict[str, Any]:
    spec, source = _spec(name, root, scratch)
    t0 = time.perf_counter()
    data = datasets.load(spec, device)
    generator = data.generator(0)
    data.size("val")  # builds the fixed validation set (Moving MNIST renders it once here)
    load_s = time.perf_counter() - t0
    for _ in range(3):  # warm-up (allocator, kernels)
        data.train_batch(batch_size, generator)
    times = []
    for _ in range(steps):
        devices.sync(device)
        start = time.perf_counter()
        batch = data.train_batch(batch_size, generator)
        devices.sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    devices.sync(device)
    start = time.perf_counter()
    next(iter(data.batches("val", batch_size)))
    devices.sync(device)
    val_ms = (time.perf_counter() - start) * 1e3
    return {
        "data": name, "source": source, "batch_shape": list(batch.shape),
        "ms_per_batch_median": round(statistics.median(times), 3),
        "ms_per_batch_p90": round(sorted(times)[int(0.9 * (len(times) - 1))], 3),
        "val_batch_ms": round(val_ms, 3), "load_s": round(load_s, 2),
        "train_size": data.size("train"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="mmnist,kth,kitti")
    parser.add_argument("--data-dir", default=None, help="data root with real data (optional)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="hpo-data-speed-") as scratch:
        results = [measure(name, args.data_dir, device, args.batch_size, args.steps, Path(scratch))
                   for name in args.data.split(",")]
    print(json.dumps({
        "benchmark": "data_speed", "device": str(device),
        "device_name": devices.name(device),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "batch_size": args.batch_size, "steps": args.steps, "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
