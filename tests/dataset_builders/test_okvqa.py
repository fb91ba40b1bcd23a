"""OK-VQA and OK-VQA-QG on official-format files."""

import pytest


def test_okvqa_target_is_the_most_frequent_answer(raw, build):
    ds = build("okvqa", raw.okvqa(), "train")
    r = ds[0]
    assert r["dataset"] == "okvqa" and r["task"] == "knowledge_grounded_qa" and r["role"] == "held_in"
    assert r["question"] == "What sport is this?" and r["question_id"] == "1000"
    assert r["answers"] == ["tennis"] * 4 + ["ball"] * 6 and r["target"] == "ball"
    assert r["template_family"] == "vqa" and "What sport is this?" in r["instruction"]


def test_okvqa_qg(raw, build):
    r = build("okvqa_qg", raw.okvqa(), "train")[1]
    assert r["answer"] == "apple" and r["target"] == "Who made it?" and "apple" in r["instruction"]
    assert r["template_family"] == "qg"


def test_okvqa_missing_validation_files(raw, build):
    with pytest.raises(FileNotFoundError, match="OpenEnded_mscoco_val2014_questions.json.*okvqa.allenai.org"):
        build("okvqa", raw.okvqa(), "validation")
