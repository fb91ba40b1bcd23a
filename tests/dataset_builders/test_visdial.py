"""Visual Dialog builder: one record per (dialog, round), history in the prompt, 100 ranked options."""

import json
import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import VISDIAL_ANSWERS, build_records, write_corrupt_file, write_visdial


@pytest.fixture
def visdial_dir(tmp_path):
    return write_visdial(str(tmp_path / "visdial"))


def _edit_dialogs(data_dir, edit):
    path = os.path.join(data_dir, "visdial_1.0_val.json")
    with open(path) as f:
        data = json.load(f)
    edit(data["data"]["dialogs"])
    with open(path, "w") as f:
        json.dump(data, f)


def test_round_records_field_by_field(visdial_dir, tmp_path):
    records, report = build_records("visdial", visdial_dir, "validation", tmp_path / "cache")
    assert report["num_skipped"] == 0
    assert [r["id"] for r in records] == [
        "185565_1", "185565_2", "185565_3",
        "284024_1", "284024_2",
    ]
    first, second, third = records[:3]
    assert (first["dataset"], first["task"], first["role"], first["split"]) == (
        "visdial", "visual_conversational_qa", "held_out", "validation")
    assert first["image"]["path"] == os.path.join(
        visdial_dir, "VisualDialog_val2018", "VisualDialog_val2018_000000185565.jpg")
    assert first["history"] == ["a man riding a bike down the street"]
    assert first["instruction"] == (
        "Dialog history: a man riding a bike down the street\n Question: is the photo in color Short answer:"
    )
    assert third["history"] == [
        "a man riding a bike down the street",
        "Q: is the photo in color A: yes",
        "Q: how many people are there A: 2",
    ]
    assert third["instruction"] == (
        "Dialog history: a man riding a bike down the street Q: is the photo in color A: yes "
        "Q: how many people are there A: 2\n Question: is it sunny Short answer:"
    )
    for record, (answer, gt_index) in zip(records, [("yes", 3), ("2", 0), ("no", 99), ("red", 50), ("yes", 7)]):
        assert len(record["choices"]) == 100
        assert record["answer_index"] == gt_index
        assert record["choices"][gt_index] == record["target"] == answer
        assert record["answers"] == [answer]
        assert set(record["choices"]) - {answer} <= set(VISDIAL_ANSWERS[4:])
    assert (second["question"], second["context"], second["question_id"], second["image_id"]) == (
        "how many people are there", "a man riding a bike down the street", "185565_2", "185565")


def test_missing_dialog_file_is_named(visdial_dir, tmp_path):
    os.remove(os.path.join(visdial_dir, "visdial_1.0_val.json"))
    with pytest.raises(FileNotFoundError, match=r"visdial_1.0_val.json.*visualdialog.org/data"):
        build_records("visdial", visdial_dir, "validation", tmp_path / "cache")


def test_fail_policy_rejects_a_dialog_with_a_bad_round(visdial_dir, tmp_path):
    _edit_dialogs(visdial_dir, lambda dialogs: dialogs[1]["dialog"][1].update(gt_index=8))
    with pytest.raises(RecordError, match=r"dialog #1 \(image_id=284024\): round 2: gt_index 8 does not point"):
        build_records("visdial", visdial_dir, "validation", tmp_path / "cache")


def test_skip_policy_counts_dialogs(visdial_dir, tmp_path):
    def edit(dialogs):
        dialogs[0]["dialog"][2]["answer_options"] = dialogs[0]["dialog"][2]["answer_options"][:50]
        dialogs.append({"image_id": 1, "dialog": []})  # no caption

    _edit_dialogs(visdial_dir, edit)
    records, report = build_records("visdial", visdial_dir, "validation", tmp_path / "cache", errors="skip")
    assert [r["id"] for r in records] == ["284024_1", "284024_2"]
    assert report["counts"] == {"malformed_record": 2}

    write_visdial(visdial_dir)
    write_corrupt_file(os.path.join(visdial_dir, "VisualDialog_val2018", "VisualDialog_val2018_000000284024.jpg"))
    records, report = build_records("visdial", visdial_dir, "validation", tmp_path / "cache2", errors="skip")
    assert len(records) == 3 and report["counts"] == {"corrupt_image": 1}
