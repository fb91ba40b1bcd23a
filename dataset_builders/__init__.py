"""`datasets` builders that rebuild InstructBLIP's instruction data from the official raw releases.

    from dataset_builders import DATASETS, load
    ds = load("vqav2", "/data/vqav2", "train", errors="skip")

`DATASETS` names every source with its role (held_in / held_out) and task, the one place they are
stated (builders and evaluation tasks read them from it); it is lazy (a name maps to a module path)
so importing this package imports no builder. Each builder module defines
`BUILDERS = {name: BuilderClass}`. The shared schema is in `schema.py`, the templates in
`templates.py`, the base class in `_base.py`, the balanced mixture in `mixture.py`.
"""

import importlib
import logging
from dataclasses import dataclass

import datasets

from ._base import RecordError
from .schema import FEATURES, HELD_IN, HELD_OUT

logger = logging.getLogger(__name__)

# Task categories: the 11 of the paper (Dai et al. 2023, §2.1 "Tasks and Datasets" and Figure 2, which also
# marks each dataset held-in or held-out). Each entry of DATASETS below states a dataset's role and task: the
# builders (_base.InstructBuilder.role/.task) and the evaluation tasks (evaluation/tasks.py) read them here.
IMAGE_CAPTIONING = "image_captioning"
CAPTIONING_READING_COMPREHENSION = "captioning_reading_comprehension"
VISUAL_REASONING = "visual_reasoning"
IMAGE_QA = "image_qa"
KNOWLEDGE_QA = "knowledge_grounded_qa"
IMAGE_QA_READING_COMPREHENSION = "image_qa_reading_comprehension"
QUESTION_GENERATION = "question_generation"  # the *_qg datasets' task; their template family is schema.QG ("qg")
VIDEO_QA = "video_qa"
VISUAL_CONVERSATIONAL_QA = "visual_conversational_qa"
IMAGE_CLASSIFICATION = "image_classification"
LLAVA_INSTRUCT = "llava_instruct"


@dataclass(frozen=True)
class DatasetEntry:
    """Where a dataset's builder lives and what it is for."""

    module: str  # module under dataset_builders/, which defines BUILDERS[name]
    role: str  # HELD_IN or HELD_OUT
    task: str


DATASETS = {
    "coco_caption": DatasetEntry("coco_caption", HELD_IN, IMAGE_CAPTIONING),
    "web_capfilt": DatasetEntry("web_capfilt", HELD_IN, IMAGE_CAPTIONING),
    "nocaps": DatasetEntry("nocaps", HELD_OUT, IMAGE_CAPTIONING),
    "flickr30k": DatasetEntry("flickr30k", HELD_OUT, IMAGE_CAPTIONING),
    "textcaps": DatasetEntry("textcaps", HELD_IN, CAPTIONING_READING_COMPREHENSION),
    "vqav2": DatasetEntry("vqav2", HELD_IN, IMAGE_QA),
    "vizwiz": DatasetEntry("vizwiz", HELD_OUT, IMAGE_QA),
    "gqa": DatasetEntry("gqa", HELD_OUT, VISUAL_REASONING),
    "vsr": DatasetEntry("vsr", HELD_OUT, VISUAL_REASONING),
    "iconqa": DatasetEntry("iconqa", HELD_OUT, VISUAL_REASONING),
    "okvqa": DatasetEntry("okvqa", HELD_IN, KNOWLEDGE_QA),
    "aokvqa": DatasetEntry("aokvqa", HELD_IN, KNOWLEDGE_QA),
    "scienceqa": DatasetEntry("scienceqa", HELD_OUT, KNOWLEDGE_QA),
    "visdial": DatasetEntry("visdial", HELD_OUT, VISUAL_CONVERSATIONAL_QA),
    "ocrvqa": DatasetEntry("ocrvqa", HELD_IN, IMAGE_QA_READING_COMPREHENSION),
    "textvqa": DatasetEntry("textvqa", HELD_OUT, IMAGE_QA_READING_COMPREHENSION),
    "hateful_memes": DatasetEntry("hateful_memes", HELD_OUT, IMAGE_CLASSIFICATION),
    "llava_conversation": DatasetEntry("llava_instruct", HELD_IN, LLAVA_INSTRUCT),
    "llava_detail": DatasetEntry("llava_instruct", HELD_IN, LLAVA_INSTRUCT),
    "llava_reasoning": DatasetEntry("llava_instruct", HELD_IN, LLAVA_INSTRUCT),
    "msvd_qa": DatasetEntry("msvd_qa", HELD_OUT, VIDEO_QA),
    "msrvtt_qa": DatasetEntry("msrvtt_qa", HELD_OUT, VIDEO_QA),
    "ivqa": DatasetEntry("ivqa", HELD_OUT, VIDEO_QA),
    "vqav2_qg": DatasetEntry("vqav2", HELD_IN, QUESTION_GENERATION),
    "okvqa_qg": DatasetEntry("okvqa", HELD_IN, QUESTION_GENERATION),
    "aokvqa_qg": DatasetEntry("aokvqa", HELD_IN, QUESTION_GENERATION),
}

HELD_IN_DATASETS = tuple(name for name, entry in DATASETS.items() if entry.role == HELD_IN)
HELD_OUT_DATASETS = tuple(name for name, entry in DATASETS.items() if entry.role == HELD_OUT)


def builder_class(name: str):
    """The builder class of `name` (imports its module)."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module = importlib.import_module(f"{__name__}.{DATASETS[name].module}")
    return module.BUILDERS[name]


def get_builder(name: str, data_dir: str, *, cache_dir: str | None = None, **options):
    """An instance of `name`'s builder for the raw release in `data_dir`; `options` are config
    fields (errors="fail"|"skip", seed, image_check, and builder-specific ones)."""
    return builder_class(name)(data_dir=data_dir, cache_dir=cache_dir, **options)


def load(
    name: str,
    data_dir: str,
    split: str,
    *,
    cache_dir: str | None = None,
    streaming: bool = False,
    return_report: bool = False,
    **options,
):
    """Build (or reuse the cache of) `name` from `data_dir` and return `split` as a `datasets.Dataset`
    (an `IterableDataset` with `streaming=True`, which builds nothing on disk).

    `options` go to the builder config (errors, seed, image_check, ...). With `return_report=True`
    returns `(dataset, report)`, the split's error report as a dict (None when streaming: read
    `builder.error_reports` after iterating instead). Under `errors="fail"` the first bad record
    raises `RecordError` naming its file and record.
    """
    builder = get_builder(name, data_dir, cache_dir=cache_dir, split=split, **options)
    return load_from_builder(builder, split, streaming=streaming, return_report=return_report)


def load_from_builder(builder, split: str, *, streaming: bool = False, return_report: bool = False):
    """`load` for a builder already made (`get_builder`'s, or a user data source's, see user_files.py)."""
    name = builder.DATASET_NAME
    if streaming:
        dataset = builder.as_streaming_dataset(split=split)
        return (dataset, None) if return_report else dataset
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, RecordError):
            raise error.__cause__ from None
        raise
    if builder.info.splits[split].num_examples == 0:  # datasets cannot read an empty split back
        dataset = datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES, split=split)
    else:
        dataset = builder.as_dataset(split=split)
    report = builder.read_error_reports().get(split)
    if report and report["num_skipped"]:
        logger.warning(
            "%s/%s: skipped %d raw records %s", name, split, report["num_skipped"], report["counts"]
        )
    return (dataset, report) if return_report else dataset
