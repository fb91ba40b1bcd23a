"""Fixtures of the builder tests: `raw`, a `RawData` (raw_data.py) whose methods write one dataset's
official release (a few records, tiny images) and return its data_dir; `build(name, data_dir, split,
**options)`, the public `load` with a per-test cache; `image_damage`, functions that damage an image.
"""

import pytest

from dataset_builders import load
from tests.dataset_builders.fixtures_heldout import write_image
from tests.dataset_builders.raw_data import RawData, corrupt_image, truncate_image


@pytest.fixture
def raw(tmp_path):
    """Writers of official-format raw releases under this test's tmp dir."""
    return RawData(tmp_path / "raw")


@pytest.fixture
def build(tmp_path):
    """`load` with this test's cache dir."""

    def _build(name, data_dir, split, **options):
        return load(name, data_dir, split, cache_dir=str(tmp_path / "cache"), **options)

    return _build


@pytest.fixture
def image_damage():
    """Functions that damage an image file: corrupt(path), truncate(path)."""

    class Damage:
        corrupt = staticmethod(corrupt_image)
        truncate = staticmethod(truncate_image)
        write = staticmethod(write_image)

    return Damage
