"""KTH: the real clip and 00sequences.txt, PyAV-written KTH videos, splits, cache, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import REAL_SEQUENCES, coded_frames, read_codes
from PIL import Image

from hpo_vidpred.cli import main
from hpo_vidpred.data import DataWarning, clear_cache, default_spec, info, load, prepare
from hpo_vidpred.data._video import decode_video
from hpo_vidpred.data.kth import PROTOCOLS, parse_sequences, persons_of
from hpo_vidpred.errors import HpoError

RANGES = [(1, 15), (16, 25), (30, 40)]  # written to the test's 00sequences.txt
FRAMES = 40
TINY = {"height": 12, "width": 16, "n_in": 2, "n_out": 2}  # windows of 4 frames


def windows(length: int, size: int, stride: int) -> int:
    return (length - size) // stride + 1 if length >= size else 0


# ----------------------------------------------------------------------------- real data
def test_real_clip_decodes_to_360_frames_of_the_spec_size(real_kth_dir: Path) -> None:
    raw = decode_video(real_kth_dir / "person01_boxing_d1_uncomp.avi")
    assert raw.shape == (360, 120, 160)
    spec = default_spec("kth", root=str(real_kth_dir))
    report = prepare(spec, progress=False)
    cached = np.load(Path(report["cache"]["dir"]) / "person01_boxing_d1.npy")
    assert cached.shape == (360, spec.height, spec.width) == (360, 64, 80)
    # the antialiased resize keeps the brightness of every frame
    assert np.abs(cached.mean((1, 2)) - raw.mean((1, 2))).max() < 1.0


def test_sequences_parser_reads_all_599_videos_and_flags_the_missing_one() -> None:
    parsed = parse_sequences(REAL_SEQUENCES)
    assert len(parsed.ranges) == 599
    assert parsed.missing == ["person13_handclapping_d3"]
    assert parsed.irregular == []
    names = set(parsed.ranges) | set(parsed.missing)
    assert len(names) == 25 * 6 * 4  # every person x action x scenario, once
    assert parsed.ranges["person01_boxing_d1"] == [(1, 95), (96, 185), (186, 245), (246, 360)]
    # extra spaces before the tab, and a video with 3 segments
    assert parsed.ranges["person07_handclapping_d2"] == [(1, 102), (103, 248), (249, 368),
                                                         (369, 518)]
    assert parsed.ranges["person11_boxing_d4"] == [(1, 106), (107, 194), (195, 250)]
    # gaps between segments are kept as gaps
    assert parsed.ranges["person25_walking_d1"] == [(1, 100), (162, 256), (300, 400), (474, 572)]


def test_sequences_parser_tolerates_lf_spaces_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "00sequences.txt"
    path.write_text("Training:   person11, 12\n\n"
                    "person02_running_d3 \t  frames \t 3 - 9 ,12-20\n"
                    "person02_running_d4\tframes\t\n"
                    "person03_walking_d1\t*missing*\n")
    parsed = parse_sequences(path)
    assert parsed.ranges == {"person02_running_d3": [(3, 9), (12, 20)]}
    assert parsed.missing == ["person03_walking_d1"]
    assert parsed.irregular == ["person02_running_d4\tframes"]


def test_info_on_the_real_clip_reports_its_4_segments_and_windows(real_kth_dir: Path,
                                                                  capsys) -> None:
    lengths = [95, 90, 60, 115]  # from person01_boxing_d1's line
    assert main(["data", "info", "--data", "kth", "--data-dir", str(real_kth_dir),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    val = report["splits"]["val"]  # person 1 validates under the kth protocol
    assert (val["videos"], val["segments"], val["frames"]) == (1, 4, 360)
    assert val["windows"] == sum(windows(n, 20, 20) for n in lengths) == 16
    assert report["splits"]["train"]["videos"] == report["splits"]["test"]["videos"] == 0
    assert report["sequences_file"]["missing"] == ["person13_handclapping_d3"]
    assert report["cache"]["videos_cached"] == 0  # info decodes nothing
    dense = info(default_spec("kth", root=str(real_kth_dir), eval_stride=1))
    assert dense["splits"]["val"]["windows"] == sum(windows(n, 20, 1) for n in lengths) == 284
    whole = info(default_spec("kth", root=str(real_kth_dir), options={"sequences": "none"}))
    assert (whole["splits"]["val"]["segments"], whole["splits"]["val"]["windows"]) == (1, 18)


def test_protocols_are_person_disjoint_and_cover_all_25() -> None:
    for protocol in PROTOCOLS:
        splits = [set(persons_of(protocol, s)) for s in ("train", "val", "test")]
        assert sum(map(len, splits)) == 25 and set.union(*splits) == set(range(1, 26))
    assert persons_of("kth", "test") == [22, 2, 3, 5, 6, 7, 8, 9, 10]
    assert persons_of("openstl", "test") == list(range(17, 26))


# ----------------------------------------------------------------------------- written videos
VIDEOS = {  # name -> video id (coded in the frames); persons 11, 12 train, 19 val, 22 test
    "person11_boxing_d1": 1, "person11_walking_d2": 2, "person12_boxing_d1": 3,
    "person12_walking_d1": 4, "person19_boxing_d3": 5, "person19_walking_d4": 6,
    "person22_boxing_d1": 7, "person22_walking_d1": 8,
}
UNLISTED = "person12_walking_d1"  # not in 00sequences.txt: the whole video is one segment


def write_kth(folder: Path, kth_writer, layout: str = "action") -> Path:
    for name, vid in VIDEOS.items():
        kth_writer(folder, name, FRAMES, vid, layout)
    ranges = ", ".join(f"{a}-{b}" for a, b in RANGES)
    lines = ["header line\r\n", "\r\n"] + [f"{name}\t\tframes\t{ranges}\r\n"
                                           for name in VIDEOS if name != UNLISTED]
    (folder / "00sequences.txt").write_bytes("".join(lines).encode())
    return folder


def test_written_videos_give_person_disjoint_splits_and_expected_windows(tmp_path: Path,
                                                                         kth_writer) -> None:
    folder = write_kth(tmp_path / "kth", kth_writer)
    spec = default_spec("kth", root=str(tmp_path), **TINY)  # finds <root>/kth
    data = load(spec, "cpu")
    split_videos = data.info["splits"]
    persons = {s: {int(n[6:8]) for n in names} for s, names in split_videos.items()}
    assert persons == {"train": {11, 12}, "val": {19}, "test": {22}}
    listed = [b - a + 1 for a, b in RANGES]
    assert data.size("train") == 3 * sum(windows(n, 4, 1) for n in listed) + windows(FRAMES, 4, 1)
    assert data.size("val") == data.size("test") == 2 * sum(windows(n, 4, 4) for n in listed)

    segments = {vid: RANGES for name, vid in VIDEOS.items()}
    segments[VIDEOS[UNLISTED]] = [(1, FRAMES)]
    for split in ("train", "val", "test"):
        frames = np.concatenate([b.numpy() for b in data.batches(split, 64)])
        assert frames.shape[1:] == (4, 1, 12, 16)
        numbers, ids = read_codes(frames)
        assert (ids == ids[:, :1]).all()  # one video per window
        assert set(ids[:, 0]) == {VIDEOS[n] for n in split_videos[split]}
        assert (np.diff(numbers, axis=1) == 1).all()  # consecutive frames
        for first, last, vid in zip(numbers[:, 0], numbers[:, -1], ids[:, 0]):
            assert any(a <= first and last <= b for a, b in segments[vid])  # inside a segment
    assert folder.joinpath("cache").is_dir()


def test_openstl_protocol_and_a_split_without_windows(tmp_path: Path, kth_writer) -> None:
    write_kth(tmp_path, kth_writer, layout="flat")
    # openstl: 1-14 train, 15-16 val, 17-25 test -> no validation person among the videos
    spec = default_spec("kth", root=str(tmp_path), protocol="openstl", **TINY)
    # no video at all in a split: the error says so, not "shorten the task"
    with pytest.raises(HpoError, match=r"split 'val' has no video \(protocol 'openstl', persons "
                                       r"15 16\).*add those persons' videos or choose another"):
        load(spec, "cpu")
    report = info(spec)
    assert report["splits"]["train"]["videos"] == 4 and report["splits"]["test"]["videos"] == 4
    # windows longer than every segment: the error names the task
    with pytest.raises(HpoError, match=r"split 'train' has no windows of 50 frames"):
        load(default_spec("kth", root=str(tmp_path), height=12, width=16, n_in=40, n_out=10),
             "cpu")


def test_truncated_video_is_skipped_with_a_warning(tmp_path: Path, kth_writer) -> None:
    write_kth(tmp_path, kth_writer)
    broken = kth_writer(tmp_path, "person11_boxing_d3", FRAMES, 9)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    spec = default_spec("kth", root=str(tmp_path), **TINY)
    expected = r"skipped 1 of 9 KTH videos: person11_boxing_d3_uncomp.avi \((truncated|unreadable)"
    with pytest.warns(DataWarning, match=expected):
        loaded = load(spec, "cpu")
    assert "person11_boxing_d3" not in loaded.info["splits"]["train"]
    skipped = info(spec)["skipped"]
    assert [Path(s["file"]).name for s in skipped] == [broken.name]


def test_no_usable_video_is_an_error_naming_the_files(tmp_path: Path) -> None:
    for name in ("person11_boxing_d1", "person19_boxing_d1"):
        (tmp_path / f"{name}_uncomp.avi").write_bytes(b"not a video" * 50)
    with pytest.raises(HpoError, match=r"no usable KTH video: .*person11_boxing_d1_uncomp.avi "
                                       r"\(unreadable.*person19_boxing_d1_uncomp.avi"):
        load(default_spec("kth", root=str(tmp_path), **TINY), "cpu")


def test_cache_is_reused_without_decoding(tmp_path: Path, kth_writer) -> None:
    write_kth(tmp_path, kth_writer)
    spec = default_spec("kth", root=str(tmp_path), **TINY)
    first = load(spec, "cpu").split("val").clone()
    assert info(spec)["cache"]["state"] == "ready"
    # Replace every video by garbage of the same size and time stamp: only a load that decodes
    # nothing still works.
    for avi in tmp_path.rglob("*.avi"):
        st = avi.stat()
        avi.write_bytes(b"\0" * st.st_size)
        os.utime(avi, ns=(st.st_atime_ns, st.st_mtime_ns))
    clear_cache()
    assert np.array_equal(load(spec, "cpu").split("val").numpy(), first.numpy())
    # the same folder spelled another way (relative to the cwd) finds the same cache
    assert Path.cwd() == tmp_path
    again = load(default_spec("kth", root=".", **TINY), "cpu")
    assert np.array_equal(again.split("val").numpy(), first.numpy())
    # another frame size is another cache: it must decode, and now finds only garbage
    with pytest.raises(HpoError, match="no usable KTH video"):
        load(default_spec("kth", root=str(tmp_path), **{**TINY, "height": 24, "width": 32}),
             "cpu")


def test_frame_folders_in_the_openstl_layout(tmp_path: Path) -> None:
    # <action>/personXX_<action>_dY_uncomp/image_NNNN.png, with a gap in the numbering
    for name, vid in (("person11_boxing_d1", 1), ("person19_boxing_d1", 2),
                      ("person22_boxing_d1", 3)):
        folder = tmp_path / "boxing" / f"{name}_uncomp"
        folder.mkdir(parents=True)
        for k, image in enumerate(coded_frames(30, vid), start=1):
            if not 11 <= k <= 14:  # frames 11-14 were never extracted
                Image.fromarray(np.repeat(image[..., None], 3, -1)).save(
                    folder / f"image_{k:04d}.png")
    data = load(default_spec("kth", root=str(tmp_path), **TINY), "cpu")
    # runs 1-10 and 15-30 are separate segments: 7 + 13 windows at stride 1
    assert data.size("train") == windows(10, 4, 1) + windows(16, 4, 1)
    numbers, ids = read_codes(np.concatenate([b.numpy() for b in data.batches("train", 64)]))
    assert (ids == 1).all() and (np.diff(numbers, axis=1) == 1).all()
    assert not ((numbers[:, 0] <= 10) & (numbers[:, -1] >= 15)).any()


def test_missing_folder_and_empty_folder_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="KTH folder .* not found.*personXX_<action>_dY_uncomp.avi"):
        info(default_spec("kth", root=str(tmp_path / "nowhere")))
    with pytest.raises(HpoError, match=r"no KTH videos in .* \(or .*/kth\): expected"):
        info(default_spec("kth", root=str(tmp_path)))
    with pytest.raises(HpoError, match="KTH is grayscale"):
        default_spec("kth", channels=3)
