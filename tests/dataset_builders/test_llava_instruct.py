"""LLaVA-Instruct-150K builders: LLaVA's own instructions, one record per exchange, "<image>" stripped."""

import json
import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import build_records, write_llava


@pytest.fixture
def llava_dir(tmp_path):
    return write_llava(str(tmp_path / "llava"))


def test_conversation_exchanges_field_by_field(llava_dir, tmp_path):
    records, report = build_records("llava_conversation", llava_dir, "train", tmp_path / "cache")
    assert report["num_skipped"] == 0
    assert [r["id"] for r in records] == [
        "000000215677_0",
        "000000215677_1",
        "000000033471_0",
    ]
    first, follow_up, marker_after = records
    assert (first["dataset"], first["task"], first["role"], first["split"]) == (
        "llava_conversation", "llava_instruct", "held_in", "train")
    assert first["image"]["path"] == os.path.join(llava_dir, "train2017", "000000215677.jpg")
    assert (first["template_family"], first["template_id"]) == ("native", -1)
    assert first["instruction"] == first["question"] == "What skateboarding trick is the man performing?"
    assert (first["target"], first["answers"], first["history"]) == (
        "The man is performing a kickflip.", ["The man is performing a kickflip."], [])
    assert follow_up["question"] == "Is it a difficult trick?"
    assert follow_up["history"] == ["What skateboarding trick is the man performing?", "The man is performing a kickflip."]
    assert follow_up["instruction"] == (
        "What skateboarding trick is the man performing?\nThe man is performing a kickflip.\nIs it a difficult trick?"
    )
    assert follow_up["target"] == "Yes, it takes practice."
    assert (follow_up["question_id"], follow_up["image_id"]) == ("000000215677_1", "000000215677")
    assert marker_after["instruction"] == "What are the colors of the bus in the image?"


@pytest.mark.parametrize(
    "name, instruction",
    [("llava_detail", "What do you see happening in this image?"),
     ("llava_reasoning", "What may be the purpose of this gathering?")],
)
def test_detail_and_reasoning(llava_dir, tmp_path, name, instruction):
    records, _ = build_records(name, llava_dir, "train", tmp_path / "cache")
    assert len(records) == 1 and records[0]["instruction"] == instruction and records[0]["dataset"] == name


def test_coco_2014_image_names(tmp_path):
    data_dir = write_llava(str(tmp_path / "llava"), image_folder="train2014")
    records, _ = build_records("llava_detail", data_dir, "train", tmp_path / "cache")
    assert records[0]["image"]["path"] == os.path.join(data_dir, "train2014", "COCO_train2014_000000442786.jpg")


def test_missing_files_are_named(llava_dir, tmp_path):
    os.remove(os.path.join(llava_dir, "detail_23k.json"))
    with pytest.raises(FileNotFoundError, match=r"detail_23k.json.*LLaVA-Instruct-150K"):
        build_records("llava_detail", llava_dir, "train", tmp_path / "cache")
    import shutil

    shutil.rmtree(os.path.join(llava_dir, "train2017"))
    with pytest.raises(FileNotFoundError, match=r"train2017.*train2017.zip"):
        build_records("llava_reasoning", llava_dir, "train", tmp_path / "cache")


def test_fail_and_skip_policies(llava_dir, tmp_path):
    path = os.path.join(llava_dir, "conversation_58k.json")
    with open(path) as f:
        items = json.load(f)
    items[1]["conversations"].append({"from": "human", "value": "And the wheels?"})  # unanswered
    with open(path, "w") as f:
        json.dump(items, f)
    with pytest.raises(RecordError, match=r"conversation_58k.json, record #1 \(id=000000033471\): 3 turns"):
        build_records("llava_conversation", llava_dir, "train", tmp_path / "cache")

    items[1]["conversations"] = items[1]["conversations"][:2]
    items[0]["conversations"][2]["from"] = "gpt"
    items.append({"id": "000000000001", "image": "000000000001.jpg", "conversations": items[1]["conversations"]})
    with open(path, "w") as f:
        json.dump(items, f)
    records, report = build_records("llava_conversation", llava_dir, "train", tmp_path / "cache2", errors="skip")
    assert [r["id"] for r in records] == ["000000033471_0"]
    assert report["counts"] == {"malformed_record": 1, "missing_image": 1}
