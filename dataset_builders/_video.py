"""Frame sampling shared by the video QA builders (MSVD-QA, MSRVTT-QA, iVQA).

InstructBLIP evaluates video zero-shot by sampling T=4 evenly spaced frames, the first and the
last included, and feeding each through the image pipeline. The sampler itself ships with the
processor (``modeling_instructblip/processing_instructblip.py``, next to its ``videos=`` input);
this module runs it once per video, at build time, and writes those frames as JPEG files.

Storage choice: frames are JPEG files in a cache folder (``<cache dir>/<builder>_frames``) and
the records reference them by path, like every other image in these builders. One video is
asked about many times (MSRVTT-QA test: ~73k questions on ~3k videos), so embedding the bytes
in Arrow would store each video's frames once per question; files are written once per video
and shared. A frame folder is keyed by the video's path, size and modification time, so a
rebuild reuses it and a replaced video is decoded again.

A bad video raises ``VideoError``, a ``RecordError`` whose reason is one of MISSING_VIDEO,
CORRUPT_VIDEO, SHORT_VIDEO and whose message names the file, so the base builder's error policy
(fail, or skip and count) applies to it like to a bad image. ``VideoQABuilder`` gives the video
builders their frames folder option and the ``frames`` helper.
"""

import hashlib
import os
from dataclasses import dataclass

from modeling_instructblip import processing_instructblip as processing
from modeling_instructblip.processing_instructblip import NUM_FRAMES, frame_indices  # noqa: F401 (re-exported)

from ._base import InstructBuilder, InstructConfig, RecordError

JPEG_QUALITY = 95

# Reasons a video is rejected (keys of the error report's counts, next to the image ones).
MISSING_VIDEO = "missing_video"
CORRUPT_VIDEO = "corrupt_video"
SHORT_VIDEO = "short_video"


class VideoError(RecordError):
    """A video that cannot give ``NUM_FRAMES`` frames: missing, unreadable, broken or too short."""

    def __init__(self, reason, path, detail):
        super().__init__(reason, f"{reason.replace('_', ' ')}: {path} ({detail})")
        self.path = str(path)


def sample_frames(path, num_frames=NUM_FRAMES):
    """The processor's frame sampler (``processing_instructblip.sample_frames``: ``num_frames`` evenly spaced
    frames as RGB PIL images), its errors as ``VideoError`` so that the builders' error policy applies."""
    try:
        return processing.sample_frames(path, num_frames)
    except processing.VideoError as error:
        raise VideoError(error.reason, error.path, error.detail) from None


def _frame_folder(path, cache_dir, num_frames):
    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{num_frames}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_dir, f"{stem}-{digest}")


def extract_frames(path, cache_dir, num_frames=NUM_FRAMES):
    """Paths of ``num_frames`` JPEG frames of the video at ``path``, written under ``cache_dir``.

    Already extracted frames are reused. Raises ``VideoError`` for a bad video.
    """
    if not os.path.isfile(path):
        raise VideoError(MISSING_VIDEO, path, "file not found")
    folder = _frame_folder(path, cache_dir, num_frames)
    paths = [os.path.join(folder, f"frame_{i}.jpg") for i in range(num_frames)]
    if all(os.path.isfile(p) for p in paths):
        return paths
    images = sample_frames(path, num_frames)
    os.makedirs(folder, exist_ok=True)
    for image, frame_path in zip(images, paths):
        # Write then rename, so an interrupted build never leaves a half-written frame behind.
        tmp_path = f"{frame_path}.{os.getpid()}.tmp"
        image.save(tmp_path, format="JPEG", quality=JPEG_QUALITY)
        os.replace(tmp_path, frame_path)
    return paths


@dataclass
class VideoQAConfig(InstructConfig):
    """`frames_dir`: where extracted frames go; default `<cache dir>/<dataset>_frames`, next to
    the Arrow cache (not inside it: a build's output folder is temporary until it completes)."""

    frames_dir: str | None = None


class VideoQABuilder(InstructBuilder):
    """Base of the video QA builders: `self.frames(video_path)` -> the frames' JPEG paths."""

    BUILDER_CONFIG_CLASS = VideoQAConfig

    def frames(self, video_path: str) -> list[str]:
        """Paths of the video's NUM_FRAMES sampled frames (extracted once); VideoError if bad."""
        frames_dir = self.config.frames_dir or os.path.join(self._cache_dir_root, f"{self.DATASET_NAME}_frames")
        return extract_frames(video_path, frames_dir)
