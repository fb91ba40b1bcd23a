"""Hateful Memes builder: dev seen memes, the prompt with the meme text, yes/no verbalisers."""

import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import append_line, build_records, truncate_file, write_hateful_memes


def test_dev_seen_records_field_by_field(tmp_path):
    data_dir = write_hateful_memes(str(tmp_path / "data"))
    records, report = build_records("hateful_memes", data_dir, "validation", tmp_path / "cache")
    assert report["num_skipped"] == 0
    hateful, benign = records
    assert hateful["id"] == "8291"
    assert (hateful["dataset"], hateful["task"], hateful["role"], hateful["split"]) == (
        "hateful_memes", "image_classification", "held_out", "validation")
    assert hateful["image"]["path"] == os.path.join(data_dir, "img", "08291.png")
    assert hateful["instruction"] == (
        'This is an image with: "white people is this a shooting range" written on it. Is it hateful? Answer:'
    )
    assert hateful["context"] == "white people is this a shooting range"
    assert hateful["choices"] == ["no", "yes"]
    assert (hateful["answer_index"], hateful["target"], hateful["answers"]) == (1, "yes", ["yes"])
    assert (hateful["question_id"], hateful["image_id"]) == ("8291", "8291")
    assert (benign["answer_index"], benign["target"]) == (0, "no")


def test_phase_one_dev_jsonl_is_read_when_dev_seen_is_absent(tmp_path):
    data_dir = write_hateful_memes(str(tmp_path / "data"), dev_name="dev.jsonl")
    records, _ = build_records("hateful_memes", data_dir, "validation", tmp_path / "cache")
    assert len(records) == 2


def test_missing_dev_file_is_named(tmp_path):
    data_dir = write_hateful_memes(str(tmp_path / "data"))
    os.remove(os.path.join(data_dir, "dev_seen.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"dev_seen.jsonl.*hatefulmemeschallenge"):
        build_records("hateful_memes", data_dir, "validation", tmp_path / "cache")


def test_fail_and_skip_policies(tmp_path):
    data_dir = write_hateful_memes(str(tmp_path / "data"))
    jsonl = os.path.join(data_dir, "dev_seen.jsonl")
    append_line(jsonl, '{"id": 5, "img": "img/00005.png", "label": 2, "text": "x"}')
    with pytest.raises(RecordError, match=r"dev_seen.jsonl, record line 3: label must be 0 or 1, got 2"):
        build_records("hateful_memes", data_dir, "validation", tmp_path / "cache")

    append_line(jsonl, '{"id": 6, "img": "img/00006.png", "label": 0}')
    append_line(jsonl, "not json")
    truncate_file(os.path.join(data_dir, "img", "46971.png"))
    records, report = build_records("hateful_memes", data_dir, "validation", tmp_path / "cache2", errors="skip")
    assert [r["id"] for r in records] == ["8291"]
    assert report["counts"] == {"wrong_field_type": 1, "malformed_record": 2, "truncated_image": 1}
