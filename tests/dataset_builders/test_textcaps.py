"""TextCaps on official-format files: OCR prefix before captioning templates."""

from dataset_builders.templates import CAPTION_TEMPLATES


def test_textcaps_train_records_have_ocr_prefix(raw, build):
    d = raw.textcaps()
    ds = build("textcaps", d, "train")
    assert len(ds) == 5
    r = ds[0]
    tokens = [f"w{i}" for i in range(35)]
    assert r["ocr_tokens"] == tokens and r["target"] == "a sign that says stop" and r["id"] == "011e7e629fb9ae7b_10"
    prefix = "OCR tokens: " + ", ".join(tokens[:30]) + ". "
    assert r["instruction"] == prefix + CAPTION_TEMPLATES[r["template_id"]]
    assert r["task"] == "captioning_reading_comprehension" and len(r["answers"]) == 5


def test_textcaps_validation_is_one_record_per_image(raw, build):
    ds = build("textcaps", raw.textcaps(), "validation")
    assert len(ds) == 1 and ds[0]["target"] == "a sign that says stop"
