"""VSR builder: records from the official jsonl split files, the zero-shot prompt, true/false ranking."""

import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import append_line, build_records, write_corrupt_file, write_vsr


@pytest.fixture
def vsr_dir(tmp_path):
    return write_vsr(str(tmp_path / "vsr"))


def test_test_records_field_by_field(vsr_dir, tmp_path):
    records, report = build_records("vsr", vsr_dir, "test", tmp_path / "cache")
    assert report["num_records"] == 2 and report["num_skipped"] == 0
    true_record, false_record = records
    assert true_record["id"] == "1"
    assert (true_record["dataset"], true_record["task"], true_record["role"], true_record["split"]) == (
        "vsr", "visual_reasoning", "held_out", "test")
    assert true_record["image"]["path"] == os.path.join(vsr_dir, "images", "000000050403.jpg")
    assert true_record["frames"] == []
    assert true_record["instruction"] == (
        'Based on the image, is this statement true or false? "The teddy bear is in front of the person." Answer:'
    )
    assert (true_record["template_family"], true_record["template_id"]) == ("zero_shot", -1)
    assert true_record["question"] == "The teddy bear is in front of the person."
    assert true_record["choices"] == ["false", "true"]
    assert (true_record["answer_index"], true_record["target"], true_record["answers"]) == (1, "true", ["true"])
    assert (true_record["image_id"], true_record["subset"]) == ("000000050403", "in front of")
    assert (false_record["answer_index"], false_record["target"]) == (0, "false")
    assert false_record["instruction"].endswith('"The umbrella is far away from the motorcycle." Answer:')


def test_random_split_type_and_validation_split(tmp_path):
    data_dir = write_vsr(str(tmp_path / "vsr"), split_type="random")
    records, _ = build_records("vsr", data_dir, "validation", tmp_path / "cache", split_type="random")
    assert [r["id"] for r in records] == ["1", "2"]


def test_missing_split_file_is_named_with_its_url(vsr_dir, tmp_path):
    os.remove(os.path.join(vsr_dir, "splits", "zeroshot", "test.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"splits/zeroshot/test.jsonl.*visual-spatial-reasoning"):
        build_records("vsr", vsr_dir, "test", tmp_path / "cache")


def test_fail_policy_names_file_and_line(vsr_dir, tmp_path):
    jsonl = os.path.join(vsr_dir, "splits", "zeroshot", "test.jsonl")
    append_line(jsonl, '{"image": "000000050403.jpg", "label": 1, "relation": "near"}')
    with pytest.raises(RecordError, match=r"test.jsonl, record line 3: missing field 'caption'"):
        build_records("vsr", vsr_dir, "test", tmp_path / "cache", errors="fail")


def test_skip_policy_counts_each_bad_record(vsr_dir, tmp_path):
    jsonl = os.path.join(vsr_dir, "splits", "zeroshot", "test.jsonl")
    append_line(jsonl, '{"image": "000000050403.jpg", "label": 1, "relation": "near"}')  # no caption
    append_line(jsonl, '{"image": "000000050403.jpg", "caption": "x", "label": "yes", "relation": "near"}')
    append_line(jsonl, '{"image": "00000000')  # cut line
    append_line(jsonl, '{"image": "000000999999.jpg", "caption": "x", "label": 0, "relation": "near"}')
    write_corrupt_file(os.path.join(vsr_dir, "images", "000000401552.jpg"))
    records, report = build_records("vsr", vsr_dir, "test", tmp_path / "cache", errors="skip")
    assert [r["id"] for r in records] == ["1"]
    assert report["counts"] == {"malformed_record": 2, "wrong_field_type": 1, "missing_image": 1, "corrupt_image": 1}
