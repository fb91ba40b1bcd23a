"""MSVD-QA builder: QA json + youtube mapping + clips; 4 frames per record; train answer vocabulary."""

import json
import os

import pytest
from PIL import Image

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import build_records, frame_level, write_corrupt_file, write_msvd_qa, write_video


@pytest.fixture
def msvd_dir(tmp_path):
    return write_msvd_qa(str(tmp_path / "msvd"))


def test_test_records_field_by_field(msvd_dir, tmp_path):
    records, report = build_records("msvd_qa", msvd_dir, "test", tmp_path / "cache")
    assert report["num_skipped"] == 0
    assert [r["id"] for r in records] == ["0", "1", "2"]
    first = records[0]
    assert (first["dataset"], first["task"], first["role"], first["split"]) == ("msvd_qa", "video_qa", "held_out", "test")
    assert first["image"] is None
    assert first["instruction"] == "Question: who is playing a guitar? Short answer:"
    assert (first["question"], first["target"], first["answers"]) == ("who is playing a guitar?", "man", ["man"])
    assert first["choices"] == ["man", "dog", "guitar", "ball"]  # train answers, most frequent first
    assert [r["answer_index"] for r in records] == [0, 3, -1]  # "sleep" is outside the vocabulary
    assert (first["question_id"], first["image_id"], first["subset"]) == ("0", "-4wsuPCjDBc_5_15", "who")
    # 4 frames of vid1's clip: frames 0, 2, 4, 6 of 7, stored as JPEG files next to the cache
    frames = [frame["path"] for frame in first["frames"]]
    assert len(frames) == 4 and all(p.startswith(str(tmp_path / "cache" / "msvd_qa_frames")) for p in frames)
    levels = []
    for path in frames:
        with Image.open(path) as image:
            levels.append(image.getpixel((16, 12))[0])
    assert all(abs(level - frame_level(i)) <= 6 for level, i in zip(levels, [0, 2, 4, 6]))
    assert records[1]["frames"] == records[2]["frames"]  # one extraction per video


def test_num_candidates_limits_the_vocabulary(msvd_dir, tmp_path):
    records, _ = build_records("msvd_qa", msvd_dir, "test", tmp_path / "cache", num_candidates=2)
    assert records[0]["choices"] == ["man", "dog"]
    assert [r["answer_index"] for r in records] == [0, -1, -1]


def test_frames_dir_option(msvd_dir, tmp_path):
    records, _ = build_records("msvd_qa", msvd_dir, "validation", tmp_path / "cache", frames_dir=str(tmp_path / "frames"))
    assert records[0]["frames"][0]["path"].startswith(str(tmp_path / "frames"))


@pytest.mark.parametrize("missing", ["youtube_mapping.txt", "train_qa.json", "YouTubeClips"])
def test_missing_files_are_named(msvd_dir, tmp_path, missing):
    import shutil

    path = os.path.join(msvd_dir, missing)
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with pytest.raises(FileNotFoundError, match=missing):
        build_records("msvd_qa", msvd_dir, "test", tmp_path / "cache")


def test_fail_policy_names_the_video(msvd_dir, tmp_path):
    write_corrupt_file(os.path.join(msvd_dir, "YouTubeClips", "-7KMZQEsJW4_205_208.avi"))
    with pytest.raises(RecordError, match=r"test_qa.json, record #1 \(id=1\): corrupt video: .*-7KMZQEsJW4_205_208.avi"):
        build_records("msvd_qa", msvd_dir, "test", tmp_path / "cache")


def test_skip_policy_counts_bad_videos_and_items(msvd_dir, tmp_path):
    write_video(os.path.join(msvd_dir, "YouTubeClips", "-7KMZQEsJW4_205_208.avi"), num_frames=2)
    path = os.path.join(msvd_dir, "test_qa.json")
    with open(path) as f:
        items = json.load(f)
    items += [{"answer": "man", "id": 7, "question": "who?", "video_id": 99}, {"id": 8, "question": "who?", "video_id": 1}]
    with open(path, "w") as f:
        json.dump(items, f)
    records, report = build_records("msvd_qa", msvd_dir, "test", tmp_path / "cache", errors="skip")
    assert [r["id"] for r in records] == ["0"]
    assert report["counts"] == {"short_video": 2, "missing_video": 1, "malformed_record": 1}  # vid99: not mapped
    assert "-7KMZQEsJW4_205_208.avi (2 frames, 4 needed)" in report["examples"]["short_video"][0]
