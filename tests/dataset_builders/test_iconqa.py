"""IconQA builder: multi-text-choice test problems from problems.json + pid_splits.json."""

import json
import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import build_records, write_iconqa


@pytest.fixture
def iconqa_dir(tmp_path):
    return write_iconqa(str(tmp_path / "iconqa_data"))


def _edit_problems(data_dir, edit):
    path = os.path.join(data_dir, "problems.json")
    with open(path) as f:
        problems = json.load(f)
    edit(problems)
    with open(path, "w") as f:
        json.dump(problems, f)


def test_test_records_field_by_field(iconqa_dir, tmp_path):
    records, report = build_records("iconqa", iconqa_dir, "test", tmp_path / "cache")
    assert report["num_skipped"] == 0
    assert [r["id"] for r in records] == ["1", "2", "5"]  # choose_img pid 3 is not read
    first = records[0]
    assert (first["dataset"], first["task"], first["role"], first["split"]) == (
        "iconqa", "visual_reasoning", "held_out", "test")
    assert first["image"]["path"] == os.path.join(iconqa_dir, "iconqa", "test", "choose_txt", "1", "image.png")
    assert first["instruction"] == "Question: Which shape is a circle? Options: (a) square (b) circle (c) star. Short answer:"
    assert first["question"] == "Which shape is a circle?"
    assert first["choices"] == ["square", "circle", "star"]
    assert (first["answer_index"], first["target"], first["answers"]) == (1, "circle", ["circle"])
    assert (first["question_id"], first["image_id"], first["template_id"]) == ("1", "1", -1)
    assert records[1]["instruction"] == "Question: Is the dot inside the box? Options: (a) yes (b) no. Short answer:"
    assert records[1]["answer_index"] == 0


def test_train_split_reads_its_own_list(iconqa_dir, tmp_path):
    records, _ = build_records("iconqa", iconqa_dir, "train", tmp_path / "cache")
    assert [(r["id"], r["target"]) for r in records] == [("4", "4:00")]


def test_missing_files_are_named(iconqa_dir, tmp_path):
    os.remove(os.path.join(iconqa_dir, "pid_splits.json"))
    with pytest.raises(FileNotFoundError, match=r"pid_splits.json.*iconqa_data.zip"):
        build_records("iconqa", iconqa_dir, "test", tmp_path / "cache")


def test_fail_policy_names_the_problem(iconqa_dir, tmp_path):
    _edit_problems(iconqa_dir, lambda p: p["2"].update(answer=7))
    with pytest.raises(RecordError, match=r"problems.json, record pid 2: answer 7 is not an index into 2 choices"):
        build_records("iconqa", iconqa_dir, "test", tmp_path / "cache")


def test_skip_policy_counts_bad_problems_and_images(iconqa_dir, tmp_path):
    def edit(problems):
        del problems["2"]["choices"]
        problems["1"]["question"] = 3

    _edit_problems(iconqa_dir, edit)
    # 99 is not in problems.json; 4 is a train problem, so its image is not under test/
    with open(os.path.join(iconqa_dir, "pid_splits.json"), "w") as f:
        json.dump({"choose_txt_test": ["1", "2", "5", "99", "4"]}, f)
    records, report = build_records("iconqa", iconqa_dir, "test", tmp_path / "cache", errors="skip")
    assert [r["id"] for r in records] == ["5"]
    assert report["counts"] == {"malformed_record": 2, "wrong_field_type": 1, "missing_image": 1}
