"""Every flag of every command with a bad value: exit code 2, one line on stderr that starts with
``error:``, and nothing created or written (docs/design.md section 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo_vidpred.cli import main

RUN = ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke"]
FIXED = ["fixed", "--arch", "autoencoder", "--data", "mmnist", "--cell", "convlstm",
         "--budget", "smoke"]
COMPARE = ["compare", "--arch", "autoencoder", "--data", "mmnist"]
MATRIX = ["matrix", "--data", "mmnist", "--trials", "1", "--budget", "smoke"]
BENCH = ["bench", "--arch", "autoencoder", "--cell", "convlstm", "--height", "16", "--width",
         "16", "--n-in", "2", "--n-out", "2", "--steps", "1"]

CASES = {  # id: (argv, a fragment of the one line)
    "run --arch": (["run", "--arch", "gru", "--data", "mmnist"], "unknown architecture 'gru'"),
    "run --data": (["run", "--arch", "autoencoder", "--data", "ucf"], "unknown dataset 'ucf'"),
    "run --cell": ([*RUN, "--cell", "gru"], "unknown cell 'gru'"),
    "run --budget": ([*RUN[:-1], "huge"], "unknown budget 'huge'"),
    "run --sampler": ([*RUN, "--sampler", "grid"], "unknown sampler 'grid'"),
    "run --pruner": ([*RUN, "--pruner", "always"], "unknown pruner 'always'"),
    "run --trials 0": ([*RUN, "--trials", "0"], "--trials must be at least 1"),
    "run --trials abc": ([*RUN, "--trials", "abc"], "Invalid value for '--trials'"),
    "run --timeout nan": ([*RUN, "--timeout", "nan"], "--timeout must be a positive number"),
    "run --timeout -1": ([*RUN, "--timeout", "-1"], "--timeout must be a positive number"),
    "run --workers -1": ([*RUN, "--workers", "-1"], "--workers must be at least 1"),
    "run --devices tpu": ([*RUN, "--devices", "tpu"], "unknown device 'tpu'"),
    "run --devices cuda:7": ([*RUN, "--devices", "cuda:7"], "CUDA is not available on this "
                             "machine; use cpu (or auto)"),  # no hint of a flag run lacks
    "run --heartbeat -5": ([*RUN, "--heartbeat", "-5"], "--heartbeat"),
    "run --threads -3": ([*RUN, "--threads", "-3", "--workers", "1"], "--threads must be"),
    "run --search-space": ([*RUN, "--search-space", "missing.yaml"], "missing.yaml"),
    "run --storage": ([*RUN, "--storage", "no url"], "is not a storage URL"),
    "run --data-dir": (["run", "--arch", "autoencoder", "--data", "kth", "--budget", "smoke",
                        "--data-dir", "nowhere"], "KTH folder"),
    "run --bogus": ([*RUN, "--bogus", "1"], "No such option: --bogus"),
    "fixed --cell": ([*FIXED[:5], "--cell", "gru", *FIXED[7:]], "unknown cell 'gru'"),
    "fixed --device": ([*FIXED, "--device", "tpu"], "unknown device 'tpu'"),
    "fixed --config": ([*FIXED, "--config", "missing.yaml"], "file not found: missing.yaml"),
    "fixed --budget": ([*FIXED[:-1], "huge"], "unknown budget 'huge'"),
    "compare --seeds 0": ([*COMPARE, "--seeds", "0"], "--seeds must be at least 1"),
    "compare --cells": ([*COMPARE, "--cells", "gru"], "unknown cell 'gru'"),
    "compare (nothing to compare)": (COMPARE, "no optimized configuration"),
    "compare --config": ([*COMPARE, "--config", "missing.yaml"], "file not found"),
    "matrix --trials 0": ([*MATRIX[:3], "--trials", "0", *MATRIX[5:]], "must be at least 1"),
    "matrix --seeds 0": ([*MATRIX, "--seeds", "0"], "must be at least 1"),
    "matrix --workers 0": ([*MATRIX, "--workers", "0"], "must be at least 1"),
    "matrix --archs": ([*MATRIX, "--archs", "rnn"], "unknown architecture 'rnn'"),
    "matrix --data": (["matrix", "--data", "ucf", "--trials", "1"], "unknown dataset 'ucf'"),
    "report --storage": (["report", "--storage", "sqlite:///nothing.db"], "no study store"),
    "export --study": (["export", "--study", "x", "--storage", "sqlite:///nothing.db"],
                       "no study store"),
    "dashboard --port": (["dashboard", "--port", "-5"], "is not a port number"),
    "models --data": (["models", "--data", "ucf"], "unknown dataset 'ucf'"),
    "bench --batch 0": ([*BENCH, "--batch", "0"], "--batch and --steps must be at least 1"),
    "bench --arch": (["bench", "--arch", "rnn"], "unknown architecture 'rnn'"),
    "bench --variants": ([*BENCH, "--variants", "turbo"], "unknown bench variant 'turbo'"),
    "bench --device": ([*BENCH, "--device", "tpu"], "unknown device 'tpu'"),
    "data info --data": (["data", "info", "--data", "ucf"], "unknown dataset 'ucf'"),
    "data info --n-in": (["data", "info", "--data", "mmnist", "--n-in", "0"], "n_in and n_out"),
    "data info --height": (["data", "info", "--data", "mmnist", "--height", "-1"],
                           "frame size must be positive"),
    "data prepare --data-dir": (["data", "prepare", "--data", "kth", "--data-dir", "nowhere"],
                                "KTH folder"),
    "unknown command": (["train"], "No such command 'train'"),
}


@pytest.mark.parametrize("argv,fragment", CASES.values(), ids=CASES.keys())
def test_bad_flags_are_one_line_and_create_nothing(argv, fragment, tmp_path: Path,
                                                   capsys) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no folder, no file


LATIN1 = "latin1.yaml is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"
FILES = {  # a file the user passes that is no YAML text (it was a UnicodeDecodeError traceback)
    "run --search-space latin-1": ([*RUN, "--search-space", "latin1.yaml"], LATIN1),
    "fixed --config latin-1": ([*FIXED, "--config", "latin1.yaml"], LATIN1),
    "compare --config latin-1": ([*COMPARE, "--config", "latin1.yaml"], LATIN1),
    "run --search-space folder": ([*RUN, "--search-space", "spaces"],
                                  "spaces is a folder; pass a YAML file"),  # not "not found"
}


@pytest.mark.parametrize("argv,fragment", FILES.values(), ids=FILES.keys())
def test_a_file_that_is_no_yaml_text_is_one_line_naming_it(argv, fragment, tmp_path: Path,
                                                            capsys) -> None:
    (tmp_path / "latin1.yaml").write_bytes("params:\n  lr: {type: float, low: 1.0e-3, high: "
                                           "1.0e-2}  # réglage\n".encode("latin-1"))
    (tmp_path / "spaces").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {fragment}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.yaml", "spaces"]


SPACES = {  # a search-space value no trial could train: found before anything runs
    "even kernel": ("kernel: {type: int, low: 2, high: 6, step: 2}", "kernel=2 must be a positive "
                    "odd int"),
    "depth 0": ("depth: {type: int, low: 0, high: 2}", "depth=0 must be >= 1"),
    "batch 0": ("batch_size: {type: categorical, choices: [0, 8]}", "batch_size=0 (must be an "
                "integer >= 1)"),
    "nan low": ("lr: {type: float, low: .nan, high: 1.0}", "low must be a finite number"),
    "lr 0": ("lr: {type: float, low: 0.0, high: 0.1}", "lr=0.0 (must be a positive number)"),
}


@pytest.mark.parametrize("param,fragment", SPACES.values(), ids=SPACES.keys())
def test_search_space_values_no_trial_could_train_are_refused_up_front(param, fragment,
                                                                       tmp_path: Path,
                                                                       capsys) -> None:
    (tmp_path / "space.yaml").write_text(f"params:\n  {param}\n")
    assert main([*RUN, "--search-space", "space.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: search space space.yaml: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


def test_a_run_that_cannot_start_leaves_no_study_behind(tmp_path: Path, capsys) -> None:
    """Workers that cannot load the data (found only when they load it) end the run; the study
    it created is removed, so the next run with other settings is not refused."""
    from hpo_vidpred.store import open_storage

    import numpy as np
    import optuna
    from PIL import Image

    # KTH frame folders (one per train, validation and test person) of 3 frames: fewer than
    # one window of 2 + 2 frames, which only loading the data finds out
    for person in (11, 19, 22):
        folder = tmp_path / "kth" / f"person{person:02d}_boxing_d1"
        folder.mkdir(parents=True)
        for i in range(1, 4):
            Image.fromarray(np.full((24, 32), 40 * i, np.uint8)).save(folder / f"image_{i:04d}.png")
    argv = ["run", "--arch", "autoencoder", "--data", "kth", "--data-dir", str(tmp_path / "kth"),
            "--budget", "smoke", "--trials", "1", "--workers", "2"]
    assert main(argv) == 2
    assert "has no windows" in capsys.readouterr().err
    assert optuna.get_all_study_names(open_storage("sqlite:///studies/hpo.db")) == []
