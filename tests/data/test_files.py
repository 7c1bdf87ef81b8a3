"""Checked downloads (urllib on local files), the offline path, and the cache folders."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from hpo_vidpred.cli import main
from hpo_vidpred.data import download
from hpo_vidpred.data._files import cache_dir, fetch
from hpo_vidpred.errors import HpoError

UNREACHABLE = "http://127.0.0.1:9/mnist"  # the discard port: connection refused at once


def test_fetch_keeps_only_a_verified_file(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"moving mnist" * 1000)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    fetch(source.as_uri(), tmp_path / "out" / "good.bin", md5)
    assert (tmp_path / "out" / "good.bin").read_bytes() == source.read_bytes()
    with pytest.raises(HpoError, match="checksum mismatch .* expected 0+; the download was "
                                       "discarded"):
        fetch(source.as_uri(), tmp_path / "out" / "bad.bin", "0" * 32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.bin"]  # no partials


def test_download_without_network_says_which_file_goes_where(tmp_path: Path, capsys) -> None:
    with pytest.raises(HpoError) as err:
        download("mmnist", tmp_path, base_url=UNREACHABLE)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz (MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873)" in message
    assert "mnist_test_seq.npy (MD5 be083ec986bfe91a449d63653c411eb2)" in message
    assert f"into {tmp_path / 'mnist'}/" in message and "\n" not in message
    assert main(["data", "download", "mmnist", "--data-dir", str(tmp_path),
                 "--mirror", UNREACHABLE]) == 2
    assert capsys.readouterr().err.startswith("error: cannot download")
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_download_rejects_a_mirror_file_with_the_wrong_checksum(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not the MNIST file"))
    with pytest.raises(HpoError, match="checksum mismatch for file:.*train-images-idx3-ubyte.gz"):
        download("mmnist", tmp_path / "data", base_url=mirror.as_uri())
    assert not (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_download_keeps_complete_files_and_needs_no_network(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">IIII", 0x803, 60000, 28, 28) + bytes(60000 * 784))
    np.save(folder / "mnist_test_seq.npy", np.zeros((20, 2, 64, 64), dtype=np.uint8))
    lines = download("mmnist", tmp_path, base_url=UNREACHABLE)
    assert lines == [f"present: {folder / 'train-images-idx3-ubyte.gz'}",
                     f"present: {folder / 'mnist_test_seq.npy'}"]


def test_cache_falls_back_when_the_data_folder_cannot_hold_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert cache_dir(data, "kth", {"a": 1}, create=True).parent == data / "cache"
    assert cache_dir(data, "kth", {"a": 1}) != cache_dir(data, "kth", {"a": 2})
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "cache").write_text("a file where the cache folder would go")  # even root fails
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "elsewhere"))
    where = cache_dir(blocked, "kth", {"a": 1}, create=True)
    assert where.is_dir() and where.is_relative_to(tmp_path / "elsewhere")
    assert cache_dir(blocked, "kth", {"a": 1}) == where  # found again without creating
