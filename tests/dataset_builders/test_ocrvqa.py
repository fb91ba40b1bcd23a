"""OCR-VQA on the official dataset.json: one record per question, split codes 1/2/3."""

import os

import datasets


def test_ocrvqa_records(raw, build):
    d = raw.ocrvqa()
    ds = build("ocrvqa", d, "train").cast_column("image", datasets.Image(decode=False))
    assert len(ds) == 2
    r = ds[1]
    assert r["id"] == "1937799551_1" and r["image_id"] == "1937799551"
    assert r["image"]["path"] == os.path.join(d, "images", "1937799551.jpg")
    assert r["question"] == "What is the title of this book?" and r["target"] == "Sheet Music"
    assert r["template_family"] == "vqa" and r["subset"] == "Arts & Photography"
    assert len(build("ocrvqa", d, "test")) == 1 and len(build("ocrvqa", d, "validation")) == 0


def test_ocrvqa_mismatched_lists_are_malformed(raw, build):
    d = raw.ocrvqa()
    path = os.path.join(d, "dataset.json")
    data = __import__("json").load(open(path))
    data["1937799551"]["answers"].pop()
    __import__("json").dump(data, open(path, "w"))
    ds, report = build("ocrvqa", d, "train", errors="skip", return_report=True)
    assert len(ds) == 0 and report["counts"] == {"malformed_record": 1}
