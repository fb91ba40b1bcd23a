"""MSRVTT-QA builder: MSVD-QA's format with MSR-VTT's video folders."""

import os

import pytest

from tests.dataset_builders.fixtures_heldout import build_records, write_corrupt_file, write_msrvtt_qa


def test_test_records_field_by_field(tmp_path):
    data_dir = write_msrvtt_qa(str(tmp_path / "msrvtt"))
    records, report = build_records("msrvtt_qa", data_dir, "test", tmp_path / "cache")
    assert report["num_skipped"] == 0
    first, second = records
    assert (first["id"], first["dataset"], first["task"], first["role"]) == (
        "0", "msrvtt_qa", "video_qa", "held_out")
    assert first["instruction"] == "Question: what is a man playing? Short answer:"
    assert (first["target"], first["answers"], first["choices"]) == ("guitar", ["guitar"], ["man", "dog", "guitar", "ball"])
    assert (first["answer_index"], second["answer_index"]) == (2, 0)
    assert (first["image_id"], second["image_id"], first["subset"]) == ("video7010", "video7011", "what")
    assert len(first["frames"]) == 4 and first["frames"] != second["frames"] and first["image"] is None


def test_test_split_needs_only_the_test_videos(tmp_path):
    import shutil

    data_dir = write_msrvtt_qa(str(tmp_path / "msrvtt"))
    shutil.rmtree(os.path.join(data_dir, "TrainValVideo"))
    records, _ = build_records("msrvtt_qa", data_dir, "test", tmp_path / "cache")
    assert len(records) == 2
    shutil.rmtree(os.path.join(data_dir, "TestVideo"))
    with pytest.raises(FileNotFoundError, match=r"TestVideo.*ms-multimedia-challenge"):
        build_records("msrvtt_qa", data_dir, "test", tmp_path / "cache2")


def test_skip_policy_reports_a_missing_and_a_corrupt_video(tmp_path):
    data_dir = write_msrvtt_qa(str(tmp_path / "msrvtt"))
    os.remove(os.path.join(data_dir, "TestVideo", "video7011.mp4"))
    records, report = build_records("msrvtt_qa", data_dir, "test", tmp_path / "cache", errors="skip")
    assert [r["id"] for r in records] == ["0"]
    assert report["counts"] == {"missing_video": 1}
    assert os.path.join("TestVideo", "video7011.mp4") in report["examples"]["missing_video"][0]

    write_corrupt_file(os.path.join(data_dir, "TestVideo", "video7011.mp4"))
    records, report = build_records("msrvtt_qa", data_dir, "test", tmp_path / "cache2", errors="skip")
    assert report["counts"] == {"corrupt_video": 1} and len(records) == 1
