"""pytest plugin: our InstructBlipProcessor in place of transformers' own, so that transformers' processor tests
for InstructBLIP (`tests/models/instructblip/test_processing_instructblip.py` + `tests/test_processing_common.py`)
run against it (`-p processor_plugin`, this folder and the repository root on PYTHONPATH). It runs before the
test module does `from transformers import InstructBlipProcessor`. See run_processor.sh."""

import transformers
import transformers.models.instructblip.processing_instructblip as transformers_module

from modeling_instructblip import InstructBlipProcessor as Ours


transformers.InstructBlipProcessor = Ours
transformers_module.InstructBlipProcessor = Ours
transformers.__dict__["InstructBlipProcessor"] = Ours  # the lazy module's cache


def pytest_report_header(config):
    return f"processor_plugin: InstructBlipProcessor -> {Ours.__module__}.{Ours.__qualname__}"


def pytest_collection_finish(session):
    assert transformers.InstructBlipProcessor is Ours, "the substitution did not stick"
