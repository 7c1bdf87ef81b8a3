"""Training-step time of our models vs the reference (``reference.py``: one convolution per gate
and input, float32, eager), interleaved in one run, per architecture x cell at the fixed
configurations.

    python benchmarks/step_speed.py --json                          # 64x64, 10 -> 10, batch 4
    python benchmarks/step_speed.py --size 32 --n-in 5 --n-out 5 --threads 1 --steps 5
    python benchmarks/step_speed.py --device cuda --batch 16 --steps 20 --json

Both models start from the same weights (copied across) and train on the same batches; steps
alternate reference/ours (ABBA order), so machine load hits both alike. "Ours" runs as training
would on the device (:class:`hpo_vidpred.bench.Variant` ``auto``, i.e. what
``hpo_vidpred.devices.resolve_options`` turns on: float32 eager on CPU, bf16 + channels_last on
CUDA), unless ``--ours`` names another variant (``--ours bf16+cudagraphs``, say).
``ms_reference`` / ``ms_ours`` are the fastest timed step of each side (best of ``--steps``, as
``timeit`` reports: interference from other processes only ever adds time), ``speedup`` their
ratio; ``speedup_paired`` is the median of the ratios of adjacent steps, and the medians are in
``ms_*_median``. Prints a table, or with ``--json`` a list of rows
``{arch, cell, device, ms_reference, ms_ours, speedup, ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import torch
from reference import copy_weights, reference_model  # benchmarks/reference.py, beside this file

from hpo_vidpred import archs
from hpo_vidpred import data as datasets
from hpo_vidpred import devices
from hpo_vidpred.bench import (
    StepTimes,
    Variant,
    bench_step,
    drawer,
    script_main,
    switches,
    time_step,
    variants_for,
)
from hpo_vidpred.cells import CELLS
from hpo_vidpred.devices import RunOptions


def compare(arch: str, cell: str, data: Any, device: torch.device, ours: Variant, batch: int,
            steps: int) -> dict[str, Any]:
    """Time reference and ours on the same batches, interleaved; one result row. Both sides are
    the training loop's own step (:func:`hpo_vidpred.bench.bench_step`, i.e.
    :class:`hpo_vidpred.train.TrainStep` with ``TrainSpec()``); the reference runs float32,
    eager, contiguous."""
    spec = archs.fixed_spec(arch, data.spec.name, cell, channels=data.spec.channels)
    devices.seed_everything(0)
    our_model = archs.create_model(spec)
    ref_model = reference_model(spec)
    copy_weights(our_model, ref_model)
    n_in, n_out = data.spec.n_in, data.spec.n_out
    options = {"reference": RunOptions(device=device), "ours": ours.resolve(device)}
    sides = {"reference": bench_step(ref_model, options["reference"], n_in, n_out),
             "ours": bench_step(our_model, options["ours"], n_in, n_out)}
    times = {name: StepTimes([], []) for name in sides}
    draws = {name: drawer(step, data, batch, data.generator(1))  # the same batches for both
             for name, step in sides.items()}
    index = dict.fromkeys(sides, 0)  # each side's optimizer step (the schedule's step)

    def run(name: str, timed: bool) -> None:
        time_step(sides[name], draws[name], index[name], times[name] if timed else None)
        index[name] += 1

    for name in sides:  # warm-up: allocation, compilation, CUDA-graph recording
        for _ in range(3 if options[name].compile else 1):
            run(name, timed=False)
    for i in range(steps):
        order = ("reference", "ours") if i % 2 == 0 else ("ours", "reference")
        for name in order:
            run(name, timed=True)
    ref_ms, our_ms = times["reference"].step_ms, times["ours"].step_ms
    n_params = archs.count_params(our_model)
    return {
        "arch": arch, "cell": cell, "device": devices.name(device),
        "ms_reference": round(min(ref_ms), 2), "ms_ours": round(min(our_ms), 2),
        "speedup": round(min(ref_ms) / min(our_ms), 3),
        "speedup_paired": round(statistics.median(r / o for r, o in zip(ref_ms, our_ms)), 3),
        "ms_reference_median": round(statistics.median(ref_ms), 2),
        "ms_ours_median": round(statistics.median(our_ms), 2),
        "params": n_params, "params_equal": n_params == archs.count_params(ref_model),
        "ours": ours.name, **switches(options["ours"]), "data": data.spec.name, "batch": batch,
        "size": [data.spec.height, data.spec.width], "frames": [n_in, n_out],
        "steps": steps, "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=None,
                        help="frame height and width (default: the dataset's, 64 for mmnist)")
    parser.add_argument("--n-in", type=int, default=None, help="input frames (default 10)")
    parser.add_argument("--n-out", type=int, default=None, help="predicted frames (default 10)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--data", default="mmnist", help="whose fixed configuration and frames")
    parser.add_argument("--arch", default=None, help="comma list (default: all)")
    parser.add_argument("--cell", default=None, help="comma list (default: all)")
    parser.add_argument("--ours", default="auto", help="bench variant for our side")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve_device(args.device)
    ours = variants_for(device, [args.ours])[0]
    sizes = {"height": args.size, "width": args.size} if args.size else {}
    frames = {k: v for k, v in (("n_in", args.n_in), ("n_out", args.n_out)) if v}
    spec = datasets.default_spec(args.data, val_size=8, test_size=8, **sizes, **frames)
    data = datasets.load(spec, device)
    arch_names = args.arch.split(",") if args.arch else archs.ARCHS.names()
    cell_names = args.cell.split(",") if args.cell else CELLS.names()
    rows = []
    for arch in arch_names:
        for cell in cell_names:
            rows.append(compare(arch, cell, data, device, ours, args.batch, args.steps))
            r = rows[-1]
            print(f"{arch:15s} {cell:9s} reference {r['ms_reference']:9.1f} ms  ours "
                  f"{r['ms_ours']:9.1f} ms  speedup {r['speedup']:.2f}x "
                  f"(paired {r['speedup_paired']:.2f}x)", flush=True,
                  file=sys.stderr if args.json else sys.stdout)  # progress beside --json
    if args.json:
        print(json.dumps(rows, indent=1))
    elif rows:
        r = rows[0]
        print(f"device {r['device']}, batch {r['batch']}, {r['frames'][0]} -> {r['frames'][1]} "
              f"frames at {r['size'][0]}x{r['size'][1]}, ours = {r['ours']}, median of "
              f"{r['steps']} steps" + (f", {r['threads']} threads" if r["threads"] else ""))
    return rows


if __name__ == "__main__":
    script_main(main)
