"""Web CapFilt on the official pair list; images from img2dataset's layout; dead URLs counted."""

import json
import os

import datasets
import pytest

from dataset_builders.web_capfilt import img2dataset_path


def test_pairs_map_to_img2dataset_files_and_dead_urls_are_counted(raw, build):
    d = raw.web_capfilt()
    ds, report = build("web_capfilt", d, "train", errors="skip", return_report=True)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    assert len(ds) == 2 and report["counts"] == {"missing_image": 1}
    r = ds[1]
    assert r["image"]["path"] == os.path.join(d, "images", "00000", "000000001.jpg")
    assert r["target"] == "a red car" and r["answers"] == ["a red car"] and r["template_family"] == "caption"
    assert img2dataset_path(123_456) == "00012/000123456.jpg"


def test_local_image_pairs(raw, build):
    d = raw.web_capfilt()
    json.dump([{"image": "images/00000/000000000.jpg", "caption": "x"}, {"caption": "no image"}],
              open(os.path.join(d, "local.json"), "w"))
    ds, report = build("web_capfilt", d, "train", annotation_file="local.json", errors="skip", return_report=True)
    assert len(ds) == 1 and report["counts"] == {"malformed_record": 1}


def test_missing_pair_list(tmp_path, build):
    with pytest.raises(FileNotFoundError, match="ccs_synthetic_filtered_large.json.*storage.googleapis.com"):
        build("web_capfilt", str(tmp_path), "train")
