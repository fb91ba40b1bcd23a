"""Frame sampling: 4 evenly spaced frames, first and last included, decoded with PyAV, cached as JPEG."""

import os

import pytest
from PIL import Image

from dataset_builders._video import (
    CORRUPT_VIDEO,
    MISSING_VIDEO,
    SHORT_VIDEO,
    VideoError,
    extract_frames,
    frame_indices,
    sample_frames,
)
from tests.dataset_builders.fixtures_heldout import frame_level, truncate_file, write_corrupt_file, write_video


def test_frame_indices_are_evenly_spaced_with_first_and_last():
    assert frame_indices(4) == [0, 1, 2, 3]
    assert frame_indices(7) == [0, 2, 4, 6]
    assert frame_indices(10) == [0, 3, 6, 9]
    assert frame_indices(100) == [0, 33, 66, 99]


@pytest.mark.parametrize("extension", [".avi", ".mp4", ".webm"])
def test_sample_frames_picks_first_middle_and_last(tmp_path, extension):
    video = write_video(str(tmp_path / f"clip{extension}"), num_frames=7)
    frames = sample_frames(video)
    assert [frame.size for frame in frames] == [(32, 24)] * 4
    levels = [frame.getpixel((16, 12))[0] for frame in frames]
    for level, index in zip(levels, [0, 2, 4, 6]):
        assert abs(level - frame_level(index)) <= 6  # lossy codecs


def test_extract_frames_writes_jpegs_once(tmp_path):
    video = write_video(str(tmp_path / "videos" / "clip.avi"))
    paths = extract_frames(video, str(tmp_path / "frames"))
    assert len(paths) == 4 and all(p.endswith(".jpg") and os.path.dirname(p).startswith(str(tmp_path / "frames")) for p in paths)
    with Image.open(paths[-1]) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
    mtimes = [os.stat(p).st_mtime_ns for p in paths]
    assert extract_frames(video, str(tmp_path / "frames")) == paths
    assert [os.stat(p).st_mtime_ns for p in paths] == mtimes


@pytest.mark.parametrize(
    "extension, damage, reason",
    [
        (".mp4", lambda path: os.remove(path), MISSING_VIDEO),
        (".mp4", lambda path: write_corrupt_file(path), CORRUPT_VIDEO),
        (".mp4", lambda path: write_video(path, num_frames=3), SHORT_VIDEO),
        (".mp4", lambda path: truncate_file(path, keep=0.5), CORRUPT_VIDEO),  # the index (moov) is at the end
        (".avi", lambda path: truncate_file(path, keep=0.9), SHORT_VIDEO),  # header kept, frames lost
    ],
    ids=["missing", "not-a-video", "three-frames", "truncated-mp4", "truncated-avi"],
)
def test_bad_videos_raise_a_video_error_naming_the_file(tmp_path, extension, damage, reason):
    video = write_video(str(tmp_path / f"clip{extension}"))
    damage(video)
    with pytest.raises(VideoError) as error:
        extract_frames(video, str(tmp_path / "frames"))
    assert error.value.reason == reason
    assert video in error.value.message
