"""DATASETS and load: every name, its role and task; lazy imports; builders agree with the registry."""

import importlib
import subprocess
import sys

import pytest

import dataset_builders
from dataset_builders import DATASETS, HELD_IN_DATASETS, HELD_OUT_DATASETS

ALL_NAMES = sorted(DATASETS)


def test_registry_lists_the_26_datasets_with_the_papers_roles():
    assert len(DATASETS) == 26
    assert set(HELD_OUT_DATASETS) == {"nocaps", "flickr30k", "gqa", "vsr", "iconqa", "vizwiz", "scienceqa", "textvqa",
                                      "msvd_qa", "msrvtt_qa", "ivqa", "visdial", "hateful_memes"}
    assert len(HELD_IN_DATASETS) == 13
    assert DATASETS["llava_detail"].module == "llava_instruct"
    assert DATASETS["okvqa_qg"].task == "question_generation"


def test_importing_the_package_imports_no_builder():
    code = "import sys, dataset_builders; print(any(m.startswith('dataset_builders.') and m.rsplit('.',1)[1] in dataset_builders.DATASETS for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_builder_metadata_matches_registry(name):
    cls = dataset_builders.builder_class(name)
    entry = DATASETS[name]
    assert (cls.DATASET_NAME, cls.ROLE, cls.TASK) == (name, entry.role, entry.task)
    module = importlib.import_module(f"dataset_builders.{entry.module}")
    assert module.BUILDERS[name] is cls
    assert module.__doc__ and "http" in module.__doc__  # official files and where to get them, at the top


def test_unknown_name():
    with pytest.raises(KeyError, match="unknown dataset"):
        dataset_builders.builder_class("coco")


def test_load_reuses_cache_and_streams(raw, build):
    d = raw.gqa()
    first = build("gqa", d, "test_dev")
    second = build("gqa", d, "test_dev")
    assert first.cache_files == second.cache_files
    streamed = dataset_builders.load("gqa", d, "test_dev", streaming=True)
    assert [r["id"] for r in streamed] == first["id"]


def test_raw_files_rewritten_in_place_are_rebuilt_not_read_from_the_stale_cache(raw, build):
    import json
    import os

    d = raw.gqa()
    first = build("gqa", d, "test_dev")
    path = os.path.join(d, "testdev_balanced_questions.json")
    with open(path) as f:
        questions = json.load(f)
    questions["201307252"] = dict(questions["201307251"], question="Is the cup red?", answer="no")
    with open(path, "w") as f:
        json.dump(questions, f)
    second = build("gqa", d, "test_dev")
    assert len(first) == 1 and len(second) == 2
    assert "Is the cup red?" in second["question"]
    assert build("gqa", d, "test_dev").cache_files == second.cache_files  # unchanged files: the cache again
