"""Flickr30K (Karpathy) on official-format files: held-out, zero-shot prompt."""

import os

import datasets
import pytest


def test_flickr30k_test_records(raw, build):
    d = raw.flickr30k()
    ds = build("flickr30k", d, "test").cast_column("image", datasets.Image(decode=False))
    assert len(ds) == 1
    r = ds[0]
    assert r["image"]["path"] == os.path.join(d, "flickr30k-images", "1003.jpg")
    assert r["role"] == "held_out" and r["task"] == "image_captioning"
    assert r["instruction"] == "A short image description:" and r["template_family"] == "zero_shot" and r["template_id"] == -1
    assert r["answers"] == [f"caption {j} of image 3" for j in range(5)]
    assert len(build("flickr30k", d, "train")) == 2  # one record per image on every split (train + restval)


def test_flickr30k_missing_images_folder(raw, build):
    d = raw.flickr30k()
    os.rename(os.path.join(d, "flickr30k-images"), os.path.join(d, "elsewhere"))
    with pytest.raises(FileNotFoundError, match="flickr30k-images.*DenotationGraph"):
        build("flickr30k", d, "test")
