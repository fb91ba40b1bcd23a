"""GQA test-dev balanced on official-format files."""

import os

import datasets


def test_gqa_records(raw, build):
    d = raw.gqa()
    r = build("gqa", d, "test_dev").cast_column("image", datasets.Image(decode=False))[0]
    assert r["id"] == "201307251" and r["image_id"] == "n161313"
    assert r["image"]["path"] == os.path.join(d, "images", "n161313.jpg")
    assert r["instruction"] == "Question: Is the plate to the left of the cup? Short answer:"
    assert r["target"] == "yes" and r["answers"] == ["yes"] and r["subset"] == "verify"
    assert r["task"] == "visual_reasoning" and r["role"] == "held_out" and r["template_family"] == "zero_shot"
