"""``hpo store prepare`` and ``hpo store serve`` as a user meets them: the prepared study is the
one ``hpo run`` continues, and what a user can get wrong is one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpo_vidpred.cli import main
from hpo_vidpred.store import open_storage


def _run_args(tiny_space: str, url: str, *extra: str) -> list[str]:
    return ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--trials",
            "2", "--search-space", tiny_space, "--storage", url, "--workers", "1", "--quiet",
            *extra]


def test_prepare_creates_the_study_that_hpo_run_then_continues(tmp_path: Path, tiny_space: str,
                                                               capsys) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["store", "prepare", *_run_args(tiny_space, url)]) == 0
    out = capsys.readouterr().out
    assert out == (f"study autoencoder-mmnist created on {url}: 0/2 finished trials; jobs "
                   "running the same 'hpo run' command join it until 2 trials have finished\n")
    study = optuna.load_study(study_name="autoencoder-mmnist", storage=url)
    assert study.trials == [] and study.user_attrs["spec"]["study"]["budget"] == "smoke"
    # the very command line runs on the prepared study: the spec prepare recorded is run's own
    assert main(_run_args(tiny_space, url)) == 0
    assert len(optuna.load_study(study_name="autoencoder-mmnist", storage=url).trials) == 2
    capsys.readouterr()
    assert main(["store", "prepare", "--json", *_run_args(tiny_space, url)]) == 0
    assert '"finished": 2' in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--arch", "autoencoder"], "hpo store prepare takes an 'hpo run' command line"),
    (["run", "--data", "mmnist"], "Missing option '--arch'; see 'hpo run --help'"),
    (["run", "--arch", "autoencoder", "--data", "mmnist", "--bogus"], "No such option: --bogus"),
    (["run", "--arch", "autoencoder", "--data", "mmnist", "--trials", "0"],
     "--trials must be at least 1"),
])
def test_prepare_says_what_is_wrong_in_one_line(args, message, capsys) -> None:
    assert main(["store", "prepare", *args]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not Path("studies/hpo.db").exists()


def test_prepare_refuses_a_study_with_another_spec(tmp_path: Path, tiny_space: str,
                                                   capsys) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["store", "prepare", *_run_args(tiny_space, url)]) == 0
    capsys.readouterr()
    assert main(["store", "prepare", *_run_args(tiny_space, url, "--budget", "small")]) == 2
    err = capsys.readouterr().err
    assert "exists with a different spec (study.budget: smoke -> small" in err
    assert err.count("\n") == 1


def test_serve_says_what_is_wrong_in_one_line(tmp_path: Path, capsys) -> None:
    pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["store", "serve", "--storage", url, "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["store", "serve", "--storage", "grpc://127.0.0.1:13000"]) == 2
    assert "needs the database's URL" in capsys.readouterr().err
    assert main(["store", "serve", "--storage", url, "--port", "70000"]) == 2
    assert "--port 70000 is not a port number" in capsys.readouterr().err


def test_a_second_server_on_a_port_in_use_exits_with_one_line(tmp_path: Path) -> None:
    """gRPC binds with SO_REUSEPORT by default: the second server listened beside the first and
    the kernel shared the clients out between the two stores. Now it is refused (and gRPC's own
    log line does not precede ours)."""
    pytest.importorskip("grpc", reason="the grpc extra (grpcio, protobuf) is not installed")
    from clusters import StoreProxy

    first = StoreProxy(f"sqlite:///{tmp_path / 'first.db'}")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "hpo_vidpred.cli", "store", "serve", "--storage",
             f"sqlite:///{tmp_path / 'second.db'}", "--port", str(first.port)],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr == (f"error: cannot listen on 127.0.0.1:{first.port} (in use, or not "
                                 "an address of this machine); pass another --port or --host\n")
        for i in range(4):  # every client reaches the first server's store
            optuna.create_study(study_name=f"s{i}", storage=open_storage(first.url))
    finally:
        first.stop()
    assert len(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'first.db'}")) == 4
    assert not (tmp_path / "second.db").exists()
