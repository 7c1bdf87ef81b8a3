"""`hpo data info | prepare | download` from the command line."""

from __future__ import annotations

from pathlib import Path

from hpo_vidpred.cli import main


def test_data_info_mmnist_works_offline_on_a_fresh_checkout(capsys) -> None:
    assert main(["data", "info", "--data", "mmnist"]) == 0
    out = capsys.readouterr().out
    assert "frame size: 1x64x64" in out and "train digits 8000" in out
    assert "val   digits 1000" in out


def test_data_prepare_kth_builds_the_cache(real_kth_dir: Path, capsys) -> None:
    assert main(["data", "prepare", "--data", "kth", "--data-dir", str(real_kth_dir)]) == 0
    out = capsys.readouterr().out
    assert "state=ready, videos_cached=1, videos=1" in out
    assert ("val   persons 19 20 21 23 24 25 1 4, videos 1, segments 4, frames 360, "
            "windows 16") in out


def test_data_commands_reject_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "info", "--data", "ucf"]) == 2
    assert main(["data", "info", "--data", "kitti", "--data-dir", str(tmp_path)]) == 2
    assert main(["data", "download", "kth"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: unknown dataset 'ucf'")
    assert "KITTI files missing" in err[1]
    assert "KTH is not downloaded automatically: get boxing.zip" in captured.out
    assert "into datasets/kth/" in captured.out
