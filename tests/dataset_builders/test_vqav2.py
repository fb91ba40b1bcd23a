"""VQAv2 and VQAv2-QG on official-format files."""

import os

import pytest

from dataset_builders.templates import QUESTION_GENERATION_TEMPLATES, VQA_TEMPLATES


def test_vqav2_records_field_by_field(raw, build):
    d = raw.vqav2()
    ds = build("vqav2", d, "train")
    assert len(ds) == 2
    r = ds.with_format(None).cast_column("image", ds.features["image"].__class__(decode=False))[0]
    assert r["id"] == "1000" and r["question_id"] == "1000" and r["image_id"] == "100"
    assert r["dataset"] == "vqav2" and r["task"] == "image_qa" and r["role"] == "held_in" and r["split"] == "train"
    assert r["image"]["path"] == os.path.join(d, "train2014", "COCO_train2014_000000000100.jpg")
    assert r["image"]["bytes"] is None  # referenced, not copied
    assert r["question"] == "What color is the bus?"
    assert r["answers"] == ["red"] * 8 + ["blue"] * 2 and r["target"] == "red"
    assert r["template_family"] == "vqa" and 0 <= r["template_id"] < 10
    assert r["instruction"] == VQA_TEMPLATES[r["template_id"]].replace("{Question}", "What color is the bus?")
    assert r["choices"] == [] and r["answer_index"] == -1 and r["ocr_tokens"] == [] and r["subset"] == "other"


def test_template_draw_is_seeded(raw, build):
    d = raw.vqav2()
    a = build("vqav2", d, "train", seed=0)["template_id"]
    assert build("vqav2", d, "train", seed=0)["template_id"] == a
    draws = {tuple(build("vqav2", d, "train", seed=s)["template_id"]) for s in range(6)}
    assert len(draws) > 1


def test_vqav2_qg_swaps_question_and_answer(raw, build):
    ds = build("vqav2_qg", raw.vqav2(), "validation")
    r = ds[0]
    assert r["dataset"] == "vqav2_qg" and r["task"] == "question_generation"
    assert r["answer"] == "no" and r["target"] == "Is it raining?" and r["answers"] == ["Is it raining?"]
    assert r["instruction"] == QUESTION_GENERATION_TEMPLATES[r["template_id"]].replace("{Answer}", "no")


def test_missing_files_name_the_file_and_url(raw, build):
    d = raw.vqav2()
    os.remove(os.path.join(d, "v2_mscoco_val2014_annotations.json"))
    build("vqav2", d, "train")  # other splits need not be there
    with pytest.raises(FileNotFoundError, match=r"v2_mscoco_val2014_annotations.json.*v2_Annotations_Val_mscoco.zip"):
        build("vqav2", d, "validation")
    with pytest.raises(FileNotFoundError, match=r"test2015.*http://images.cocodataset.org/zips/test2015.zip"):
        build("vqav2", d, "test")
