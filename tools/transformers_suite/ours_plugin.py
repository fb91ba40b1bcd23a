"""pytest plugin: our InstructBlipForConditionalGeneration in place of transformers' own, so that
transformers' test suite for InstructBLIP runs against our class (`-p ours_plugin`, this folder and
the repository root on PYTHONPATH). It runs before collection, i.e. before the test module does
`from transformers import InstructBlipForConditionalGeneration`. See run.sh."""

import transformers
import transformers.models.instructblip.modeling_instructblip as transformers_module

from modeling_instructblip import InstructBlipForConditionalGeneration as Ours


transformers.InstructBlipForConditionalGeneration = Ours
transformers_module.InstructBlipForConditionalGeneration = Ours
transformers.__dict__["InstructBlipForConditionalGeneration"] = Ours  # the lazy module's cache


def pytest_report_header(config):
    return f"ours_plugin: InstructBlipForConditionalGeneration -> {Ours.__module__}.{Ours.__qualname__}"


def pytest_collection_finish(session):
    assert transformers.InstructBlipForConditionalGeneration is Ours, "the substitution did not stick"
