"""COCO Caption (Karpathy) on official-format files."""

import os

import datasets
import pytest

from dataset_builders.templates import CAPTION_TEMPLATES


def test_train_has_one_record_per_caption_including_restval(raw, build):
    d = raw.coco_caption()
    ds = build("coco_caption", d, "train").cast_column("image", datasets.Image(decode=False))
    assert len(ds) == 10  # train + restval images, 5 captions each
    r = ds[0]
    assert r["id"] == "0_0" and r["image_id"] == "0"
    assert r["image"]["path"] == os.path.join(d, "train2014", "COCO_train2014_000000000000.jpg")
    assert r["target"] == "caption 0 of image 0" and len(r["answers"]) == 5
    assert r["instruction"] == CAPTION_TEMPLATES[r["template_id"]] and r["template_family"] == "caption"
    assert r["task"] == "image_captioning" and r["role"] == "held_in" and r["question"] == ""
    assert len(build("coco_caption", d, "train", restval_in_train=False)) == 5


def test_eval_splits_have_one_record_per_image(raw, build):
    d = raw.coco_caption()
    val, test = build("coco_caption", d, "validation"), build("coco_caption", d, "test")
    assert len(val) == 1 and len(test) == 1
    assert test[0]["answers"] == [f"caption {j} of image 3" for j in range(5)] and test[0]["target"] == "caption 0 of image 3"


def test_missing_annotation_file(tmp_path, build):
    with pytest.raises(FileNotFoundError, match="dataset_coco.json.*caption_datasets.zip"):
        build("coco_caption", str(tmp_path), "train")
