"""ScienceQA builder: the IMG subset of a split, the paper's prompt with context and lettered options."""

import json
import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import build_records, truncate_file, write_scienceqa


@pytest.fixture
def scienceqa_dir(tmp_path):
    return write_scienceqa(str(tmp_path / "scienceqa"))


def test_test_records_field_by_field(scienceqa_dir, tmp_path):
    records, report = build_records("scienceqa", scienceqa_dir, "test", tmp_path / "cache")
    assert report["num_skipped"] == 0  # pid 2 has no image: outside the IMG subset, not an error
    assert [r["id"] for r in records] == ["1", "3", "4"]
    first, second, _ = records
    assert (first["dataset"], first["task"], first["role"], first["split"]) == (
        "scienceqa", "knowledge_grounded_qa", "held_out", "test")
    assert first["image"]["path"] == os.path.join(scienceqa_dir, "images", "test", "1", "image.png")
    assert first["instruction"] == (
        "Context: Moles live underground. Question: Which animal's feet are adapted for digging? "
        "Options: (a) mole (b) duck (c) frog. Answer:"
    )
    assert first["context"] == "Moles live underground."
    assert first["choices"] == ["mole", "duck", "frog"]
    assert (first["answer_index"], first["target"], first["answers"]) == (0, "mole", ["mole"])
    assert (first["question_id"], first["subset"], first["template_family"]) == ("1", "natural science", "zero_shot")
    # an empty hint fills the template verbatim
    assert second["instruction"] == "Context:  Question: Which state is highlighted? Options: (a) Ohio (b) Utah. Answer:"
    assert (second["answer_index"], second["target"]) == (1, "Utah")


def test_validation_split(scienceqa_dir, tmp_path):
    records, _ = build_records("scienceqa", scienceqa_dir, "validation", tmp_path / "cache")
    assert [(r["id"], r["target"]) for r in records] == [("5", "10 grams")]


def test_missing_image_folder_is_named_with_its_url(scienceqa_dir, tmp_path):
    import shutil

    shutil.rmtree(os.path.join(scienceqa_dir, "images", "test"))
    with pytest.raises(FileNotFoundError, match=r"images/test .*scienceqa.s3.*test.zip"):
        build_records("scienceqa", scienceqa_dir, "test", tmp_path / "cache")


def test_fail_and_skip_policies(scienceqa_dir, tmp_path):
    path = os.path.join(scienceqa_dir, "problems.json")
    with open(path) as f:
        problems = json.load(f)
    problems["3"]["hint"] = None
    with open(path, "w") as f:
        json.dump(problems, f)
    with pytest.raises(RecordError, match=r"record pid 3: field 'hint' is NoneType, expected str"):
        build_records("scienceqa", scienceqa_dir, "test", tmp_path / "cache")

    truncate_file(os.path.join(scienceqa_dir, "images", "test", "1", "image.png"))
    records, report = build_records("scienceqa", scienceqa_dir, "test", tmp_path / "cache2", errors="skip")
    assert [r["id"] for r in records] == ["4"]
    assert report["counts"] == {"wrong_field_type": 1, "truncated_image": 1}
