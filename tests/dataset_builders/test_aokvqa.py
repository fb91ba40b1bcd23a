"""A-OKVQA (multiple choice and direct answers) and A-OKVQA-QG on official-format files."""

import os

import pytest

from dataset_builders.templates import VQA_TEMPLATES


def test_aokvqa_multiple_choice_record(raw, build):
    d = raw.aokvqa()
    r = build("aokvqa", d, "train").cast_column("image", __import__("datasets").Image(decode=False))[0]
    assert r["id"] == "22MexNkBPpdZGX6sxbxVBH" and r["image_id"] == "299207"
    assert r["image"]["path"] == os.path.join(d, "train2017", "000000299207.jpg")
    assert r["choices"] == ["skateboarder", "train", "delivery", "cab"] and r["answer_index"] == 3
    assert r["target"] == "cab" and len(r["answers"]) == 10
    assert r["template_family"] == "vqa_mc"
    question = "What is the man by the bags awaiting? Options: (a) skateboarder (b) train (c) delivery (d) cab"
    assert r["instruction"] == VQA_TEMPLATES[r["template_id"]].replace("{Question}", question)


def test_aokvqa_direct_answer_format(raw, build):
    r = build("aokvqa", raw.aokvqa(), "train", answer_format="direct")[0]
    assert r["template_family"] == "vqa" and r["target"] in ("ride", "taxi", "cab")  # three-way tie
    assert r["target"] == "ride"  # ties go to the first given
    assert "Options" not in r["instruction"]
    with pytest.raises(ValueError, match="answer_format"):
        build("aokvqa", raw.aokvqa(), "train", answer_format="both")


def test_aokvqa_test_split_has_no_answers(raw, build):
    r = build("aokvqa", raw.aokvqa(), "test")[0]
    assert r["answer_index"] == -1 and r["answers"] == [] and r["target"] == ""


def test_aokvqa_qg(raw, build):
    r = build("aokvqa_qg", raw.aokvqa(), "train")[0]
    assert r["answer"] == "cab" and r["target"] == "What is the man by the bags awaiting?"
    assert r["choices"] == [] and r["template_family"] == "qg"
    with pytest.raises(ValueError, match="not 'test'"):
        build("aokvqa_qg", raw.aokvqa(), "test")


def test_aokvqa_missing_file(raw, build):
    with pytest.raises(FileNotFoundError, match="aokvqa_v1p0_val.json.*aokvqa_v1p0.tar.gz"):
        build("aokvqa", raw.aokvqa(), "validation")
