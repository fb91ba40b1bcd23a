"""DATASETS and load: every name, its role and task; lazy imports; builders agree with the registry."""

import importlib
import inspect
import subprocess
import sys

import pytest

import dataset_builders
from dataset_builders import DATASETS, HELD_IN_DATASETS, HELD_OUT_DATASETS
from dataset_builders._base import InstructBuilder
from dataset_builders.schema import HELD_IN
from tests.dataset_builders import fixtures_heldout

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
    assert cls.DATASET_NAME == name
    module = importlib.import_module(f"dataset_builders.{entry.module}")
    assert module.BUILDERS[name] is cls
    assert module.__doc__ and "http" in module.__doc__  # official files and where to get them, at the top


@pytest.mark.parametrize("name", ALL_NAMES)
def test_no_builder_restates_the_role_or_task_the_registry_states(name):
    """The role and task live in DATASETS only: no class between the builder and InstructBuilder defines
    them, and no builder module writes records past `InstructBuilder.make` (which fills them from DATASETS)."""
    cls = dataset_builders.builder_class(name)
    for klass in cls.__mro__[: cls.__mro__.index(InstructBuilder)]:
        restated = {"ROLE", "TASK", "role", "task"} & set(vars(klass))
        assert not restated, f"{klass.__qualname__} ({klass.__module__}) restates {sorted(restated)}"
        assert "make_record(" not in inspect.getsource(sys.modules[klass.__module__])


# One split each registry dataset's fixture writer provides: (writer, split).
RAW_SPLITS = {
    "coco_caption": ("coco_caption", "train"), "web_capfilt": ("web_capfilt", "train"),
    "nocaps": ("nocaps", "validation"), "flickr30k": ("flickr30k", "test"), "textcaps": ("textcaps", "train"),
    "vqav2": ("vqav2", "train"), "vizwiz": ("vizwiz", "validation"), "gqa": ("gqa", "test_dev"),
    "vsr": ("vsr", "test"), "iconqa": ("iconqa", "test"), "okvqa": ("okvqa", "train"), "aokvqa": ("aokvqa", "train"),
    "scienceqa": ("scienceqa", "test"), "visdial": ("visdial", "validation"), "ocrvqa": ("ocrvqa", "train"),
    "textvqa": ("textvqa", "validation"), "hateful_memes": ("hateful_memes", "validation"),
    "llava_conversation": ("llava", "train"), "llava_detail": ("llava", "train"), "llava_reasoning": ("llava", "train"),
    "msvd_qa": ("msvd_qa", "test"), "msrvtt_qa": ("msrvtt_qa", "test"), "ivqa": ("ivqa", "test"),
    "vqav2_qg": ("vqav2", "train"), "okvqa_qg": ("okvqa", "train"), "aokvqa_qg": ("aokvqa", "train"),
}


def test_every_registry_dataset_has_a_fixture_split():
    assert set(RAW_SPLITS) == set(DATASETS)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_builder_writes_the_registry_role_and_task_into_its_records(name, raw, tmp_path):
    writer, split = RAW_SPLITS[name]
    if hasattr(raw, writer):
        data_dir = getattr(raw, writer)()
    else:
        data_dir = getattr(fixtures_heldout, f"write_{writer}")(str(tmp_path / "raw" / writer))
    builder = dataset_builders.get_builder(name, data_dir, cache_dir=str(tmp_path / "cache"), split=split, errors="skip")
    assert (builder.role, builder.task) == (DATASETS[name].role, DATASETS[name].task)
    records = list(dataset_builders.load_from_builder(builder, split, streaming=True))
    assert records, f"{name}/{split}: the fixture gave no records"
    assert {(r["dataset"], r["role"], r["task"]) for r in records} == {(name, DATASETS[name].role, DATASETS[name].task)}


def test_a_builder_outside_the_registry_states_its_own_role_and_task():
    from dataset_builders.user_files import USER_TASK, UserData

    assert "user_data" not in DATASETS and (UserData.role, UserData.task) == (HELD_IN, USER_TASK)

    class Unregistered(InstructBuilder):
        DATASET_NAME = "not_a_registry_name"

    with pytest.raises(KeyError, match="not_a_registry_name.*not in dataset_builders.DATASETS"):
        Unregistered.role.fget(Unregistered.__new__(Unregistered))


def test_the_task_category_and_the_template_family_of_question_generation_are_two_names():
    from dataset_builders import QUESTION_GENERATION, schema

    assert QUESTION_GENERATION == "question_generation" and schema.QG == "qg"  # stored values, kept for old caches
    assert not hasattr(schema, "QUESTION_GENERATION")
    assert {DATASETS[name].task for name in ("vqav2_qg", "okvqa_qg", "aokvqa_qg")} == {QUESTION_GENERATION}


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
