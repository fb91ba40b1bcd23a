"""The shared record schema and the paper's templates."""

import random

import pytest

from dataset_builders import schema, templates
from dataset_builders.schema import FEATURES, make_record


def test_make_record_fills_defaults_and_stringifies_ids():
    record = make_record(id=7, dataset="vqav2", task="image_qa", role="held_in", split="train", question_id=3, image_id=9)
    assert set(record) == set(FEATURES)
    assert (record["id"], record["question_id"], record["image_id"]) == ("7", "3", "9")
    assert record["answers"] == [] and record["choices"] == [] and record["answer_index"] == -1
    assert record["ocr_tokens"] == [] and record["image"] is None and record["template_id"] == -1
    record["answers"].append("x")  # defaults are fresh lists
    assert make_record(id=1, dataset="a", task="b", role="held_in", split="train")["answers"] == []


def test_make_record_rejects_unknown_and_missing_fields():
    with pytest.raises(KeyError, match="not in the record schema"):
        make_record(id=1, dataset="a", task="b", role="held_in", split="train", answer_idx=2)
    with pytest.raises(KeyError, match="required"):
        make_record(id=1, dataset="a", task="b", split="train")


def test_fast_encoding_matches_datasets_generic_encoding():
    from datasets import Features

    record = make_record(id=1, dataset="a", task="b", role="held_in", split="train", image="/x/y.jpg",
                         frames=["/x/f0.jpg", "/x/f1.jpg"], answers=["a", "b"])
    assert FEATURES.encode_example(record) == Features(dict(FEATURES)).encode_example(record)


def test_template_pools_are_the_papers():
    assert len(templates.CAPTION_TEMPLATES) == 13
    assert len(templates.VQA_TEMPLATES) == 10
    assert len(templates.QUESTION_GENERATION_TEMPLATES) == 6
    assert templates.VQA_TEMPLATES[4] == "Question: {Question} Short answer:"
    assert all("{Question}" in t for t in templates.VQA_TEMPLATES)
    assert all("{Answer}" in t for t in templates.QUESTION_GENERATION_TEMPLATES)


def test_ocr_prefix_uses_first_30_tokens():
    tokens = [f"t{i}" for i in range(40)]
    prefix = templates.ocr_prefix(tokens)
    assert prefix == "OCR tokens: " + ", ".join(tokens[:30]) + ". "
    assert templates.ocr_prefix([]) == ""
    text = templates.fill_template(schema.VQA, 1, question="What?", ocr_tokens=["a", "b"])
    assert text == "OCR tokens: a, b. Question: What?"


def test_fill_multiple_choice_lists_options():
    text = templates.fill_template(schema.VQA_MULTIPLE_CHOICE, 0, question="Why?", choices=["x", "y"])
    assert text == "Why? Options: (a) x (b) y"


def test_redraw_instruction_draws_uniformly_and_keeps_fixed_prompts():
    record = make_record(id=1, dataset="vqav2", task="image_qa", role="held_in", split="train",
                         template_family=schema.VQA, question="Is it red?", instruction="Is it red?", template_id=0)
    rng = random.Random(0)
    counts = [0] * len(templates.VQA_TEMPLATES)
    for _ in range(5000):
        redrawn = redraw = templates.redraw_instruction(record, rng)
        counts[redraw["template_id"]] += 1
        assert redrawn["instruction"] == templates.VQA_TEMPLATES[redrawn["template_id"]].replace("{Question}", "Is it red?")
    assert min(counts) > 400 and max(counts) < 600  # 500 expected each
    held_out = dict(record, template_family=schema.ZERO_SHOT, instruction="Question: x Short answer:")
    assert templates.redraw_instruction(held_out, rng) is held_out


def test_redraw_transform_is_order_independent_and_changes_with_seed():
    record = make_record(id=5, dataset="coco_caption", task="image_captioning", role="held_in", split="train",
                         template_family=schema.CAPTION)
    epoch0, epoch0_again = templates.redraw_transform(0)(record), templates.redraw_transform(0)(record)
    assert epoch0 == epoch0_again
    ids = {templates.redraw_transform(seed)(record)["template_id"] for seed in range(30)}
    assert len(ids) > 5
