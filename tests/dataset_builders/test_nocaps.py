"""NoCaps validation on official-format files."""

import pytest


def test_nocaps_records(raw, build):
    ds = build("nocaps", raw.nocaps(), "validation")
    assert len(ds) == 2
    r = ds[1]
    assert r["id"] == "1" and r["image_id"] == "1" and r["subset"] == "out-domain"
    assert r["answers"] == [f"caption {i}" for i in range(1, 20, 2)] and r["target"] == "caption 1"
    assert r["instruction"] == "A short image description:" and r["role"] == "held_out"


def test_nocaps_test_needs_its_file(raw, build):
    with pytest.raises(FileNotFoundError, match="nocaps_test_image_info.json.*s3.amazonaws.com/nocaps"):
        build("nocaps", raw.nocaps(), "test")
