"""TextVQA validation on official-format files: the paper's zero-shot prompt with OCR tokens."""

import os

import pytest


def test_textvqa_records(raw, build):
    r = build("textvqa", raw.textvqa(), "validation")[0]
    assert r["id"] == "34602" and r["image_id"] == "0054c91397f2fe05" and r["role"] == "held_out"
    assert r["ocr_tokens"] == ["NOKIA", "Connecting", "People"]
    assert r["instruction"] == "OCR tokens: NOKIA, Connecting, People. Question: what is the brand? Short answer:"
    assert r["target"] == "nokia" and len(r["answers"]) == 10


def test_textvqa_missing_ocr(raw, build):
    d = raw.textvqa()
    os.remove(os.path.join(d, "TextVQA_Rosetta_OCR_v0.2_val.json"))
    with pytest.raises(FileNotFoundError, match="TextVQA_Rosetta_OCR_v0.2_val.json.*dl.fbaipublicfiles.com"):
        build("textvqa", d, "validation")
