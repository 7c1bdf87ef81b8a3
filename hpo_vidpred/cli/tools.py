"""``hpo models``, ``hpo bench`` and ``hpo data``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from . import (DATA, DATA_DIR, DATASETS, DEVICE, HEIGHT, JSON, N_IN, N_OUT, WIDTH, _choices,
               _names, _show, app, data_app)


@app.command()
def models(
    data: Optional[str] = typer.Option(None, "--data", help="datasets, comma-separated "
                                       "(default: all)"),
    as_json: bool = JSON,
) -> None:
    """Every architecture x cell with its parameter count at its fixed configuration
    (studies/fixed/<arch>.yaml) and the seed's. Example: hpo models --data kth"""
    from ..archs import format_parameter_table, parameter_table

    rows = parameter_table(_names(data))
    typer.echo(json.dumps(rows, indent=2) if as_json else format_parameter_table(rows))


@app.command()
def bench(
    arch: Optional[str] = typer.Option(None, help="architectures, comma-separated (default: all)"),
    cell: Optional[str] = typer.Option(None, help="cells, comma-separated (default: all)"),
    data: str = typer.Option("mmnist", help=f"whose fixed configurations: {_choices(DATASETS)}"),
    data_dir: Optional[str] = DATA_DIR,
    batch: int = typer.Option(4, help="batch size"),
    steps: int = typer.Option(3, help="timed steps per row (the median is reported)"),
    warmup: Optional[int] = typer.Option(None, help="untimed steps first (default 1; 3 compiled)"),
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    n_in: Optional[int] = N_IN,
    n_out: Optional[int] = N_OUT,
    variants: Optional[str] = typer.Option(None, help="auto, fp32, bf16, channels_last, compile, "
                                           "cudagraphs, ... or all (default: all on CUDA)"),
    device: str = DEVICE,
    threads: Optional[int] = typer.Option(None, help="CPU threads (torch.set_num_threads)"),
    as_json: bool = JSON,
) -> None:
    """Training-step throughput of the fixed configurations on this device (ms/step, samples/s,
    peak memory, data share; on CUDA with and without bf16 / compile / CUDA graphs /
    channels_last). Example: hpo bench --arch autoencoder --batch 8 --json"""
    from ..bench import bench as run_bench
    from ..bench import format_rows
    from ..data import default_spec
    from ..devices import torch_threads

    spec = default_spec(data, root=data_dir, height=height, width=width, n_in=n_in,
                        n_out=n_out, val_size=8, test_size=8)  # validation is not timed
    with torch_threads(threads or 0):
        rows = run_bench(spec, _names(arch), _names(cell), batch=batch, steps=steps,
                         warmup=warmup, variants=_names(variants), device=device, progress=True)
    typer.echo(json.dumps(rows, indent=1) if as_json else format_rows(rows))


@data_app.command("info")
def data_info(
    data: str = DATA,
    data_dir: Optional[str] = DATA_DIR,
    protocol: Optional[str] = typer.Option(None, help="split protocol (kth: kth | openstl)"),
    stride: Optional[int] = typer.Option(None, help="frames between training windows (1)"),
    eval_stride: Optional[int] = typer.Option(None, help="frames between val/test windows "
                                              "(default n_in + n_out)"),
    n_in: Optional[int] = N_IN,
    n_out: Optional[int] = N_OUT,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    as_json: bool = JSON,
) -> None:
    """Files found, split sizes and cache state.
    Example: hpo data info --data kth --data-dir datasets/kth"""
    from ..data import default_spec, format_info, info

    spec = default_spec(data, root=data_dir, protocol=protocol, stride=stride,
                        eval_stride=eval_stride, n_in=n_in, n_out=n_out, height=height,
                        width=width)
    _show(info(spec), as_json, format_info)


@data_app.command("prepare")
def data_prepare(
    data: str = DATA,
    data_dir: Optional[str] = DATA_DIR,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
) -> None:
    """Decode and cache a dataset. Example: hpo data prepare --data kth --data-dir datasets/kth"""
    from ..data import default_spec, format_info, prepare

    typer.echo(format_info(prepare(default_spec(data, root=data_dir, height=height,
                                                width=width))))


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help=f"dataset: {_choices(DATASETS)} (kth, kitti: prints "
                               "where to get them)"),
    data_dir: Optional[str] = DATA_DIR,
    mirror: Optional[str] = typer.Option(None, help="a folder URL holding the same file names"),
) -> None:
    """Download a dataset where a network exists. Example: hpo data download mmnist"""
    from ..data import download

    typer.echo("\n".join(download(name, data_dir, mirror)))
