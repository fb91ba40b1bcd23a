"""Publish rebuilt instruction data as a Hub dataset repo, so others train from it without the raw releases
(as The Cauldron does for Idefics2, but rebuilt from the official sources by `dataset_builders`).

The folder holds one config per dataset, one Parquet file set per split, and a dataset card:

    README.md                                         YAML `configs:` (so `load_dataset(repo, name)` works),
                                                      licences, task categories, size; per dataset: source,
                                                      licence, role, task, templates, counts, skipped records
    coco_caption/train-00000-of-00002.parquet         the record schema of dataset_builders/schema.py, with
    coco_caption/train-00001-of-00002.parquet         every image and video frame EMBEDDED as bytes
    gqa/test_dev-00000-of-00001.parquet

Builders store images by path (an `Image()` column given a str keeps only the path) and datasets 5.2's
`Dataset.to_parquet` writes those paths as they are, so a reader without the raw files would see no
pixels: `write_split` embeds the bytes batch by batch (`embed_table_storage`, as `push_to_hub` does)
while it streams the split into size-bounded shards. A record that shares its image with others (five
COCO captions per image) carries its own copy: self-contained rows at the cost of size.

`check_dataset_folder` refuses a folder that would not load for others (card, configs, shards, embedded
images), naming everything wrong at once; `publish_instruction_data` uploads a checked folder the way
`model_repo.publish_model` does, resumably. This module must not parse raw releases (the builders do).
"""

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq
from datasets.arrow_writer import get_parquet_column_options
from datasets.table import embed_table_storage
from datasets.utils.py_utils import convert_file_size_to_int

from dataset_builders import DATASETS, builder_class, load
from dataset_builders.schema import FEATURES, NATIVE, ZERO_SHOT
from dataset_builders.templates import TEMPLATES, ZERO_SHOT_PROMPTS

from .model_repo import LEFT_OUT, IncompleteFolderError, files_to_upload

MAX_SHARD_SIZE = "500MB"  # uncompressed Arrow bytes per shard, as push_to_hub counts them
ROWS_PER_BATCH = 100  # rows embedded and written at once (one Parquet row group): bounds memory
CDC_OPTIONS = datasets.config.DEFAULT_CDC_OPTIONS  # content-defined pages: a re-export dedupes on Xet
CARD = "README.md"


# --- licences ------------------------------------------------------------------------------------
# The builders name each source's official URL; licences are kept here until they do. Values are Hub
# licence ids, "other" (terms of their own) or "unknown" (none stated that we could confirm).


@dataclass(frozen=True)
class Terms:
    """What a source's annotations and its images (or videos) are released under."""

    annotations: str
    media: str
    note: str


_COCO = "COCO images: Flickr Terms of Use, each image under its owner's licence"
_OPEN_IMAGES = "Open Images images: listed as CC BY 2.0 by their owners"
_YOUTUBE = "videos from YouTube, under their uploaders' terms"
SOURCE_TERMS = {
    "coco_caption": Terms("cc-by-4.0", "other", f"COCO captions CC BY 4.0; {_COCO}"),
    "web_capfilt": Terms("unknown", "other", "BLIP CapFilt captions of web images (CC3M, CC12M, SBU, LAION); "
                                             "images under their owners' terms"),
    "nocaps": Terms("unknown", "cc-by-2.0", _OPEN_IMAGES),
    "flickr30k": Terms("other", "other", "Flickr30K terms: non-commercial research and educational use"),
    "textcaps": Terms("cc-by-4.0", "cc-by-2.0", f"TextCaps annotations CC BY 4.0; {_OPEN_IMAGES}"),
    "vqav2": Terms("cc-by-4.0", "other", f"VQA annotations CC BY 4.0; {_COCO}"),
    "vizwiz": Terms("cc-by-4.0", "cc-by-4.0", "VizWiz questions, answers and images CC BY 4.0"),
    "gqa": Terms("cc-by-4.0", "cc-by-4.0", "GQA questions CC BY 4.0; Visual Genome images CC BY 4.0"),
    "vsr": Terms("cc-by-4.0", "other", f"VSR annotations CC BY 4.0; {_COCO}"),
    "iconqa": Terms("cc-by-sa-4.0", "cc-by-sa-4.0", "IconQA CC BY-SA 4.0"),
    "okvqa": Terms("unknown", "other", _COCO),
    "aokvqa": Terms("unknown", "other", _COCO),
    "scienceqa": Terms("cc-by-nc-sa-4.0", "cc-by-nc-sa-4.0", "ScienceQA CC BY-NC-SA 4.0 (non-commercial)"),
    "visdial": Terms("cc-by-4.0", "other", f"Visual Dialog annotations CC BY 4.0; {_COCO}"),
    "ocrvqa": Terms("unknown", "other", "book cover images from Amazon, under their owners' terms"),
    "textvqa": Terms("cc-by-4.0", "cc-by-2.0", f"TextVQA annotations CC BY 4.0; {_OPEN_IMAGES}"),
    "hateful_memes": Terms("other", "other", "Hateful Memes dataset licence (research use; images licensed "
                                              "from Getty Images)"),
    "llava_conversation": Terms("cc-by-4.0", "other", f"LLaVA-Instruct-150K CC BY 4.0, and OpenAI's terms of "
                                                      f"use for GPT-4 output; {_COCO}"),
    "msvd_qa": Terms("unknown", "other", f"MSVD {_YOUTUBE}"),
    "msrvtt_qa": Terms("unknown", "other", "MSR-VTT videos under Microsoft's MSR-VTT terms"),
    "ivqa": Terms("unknown", "other", f"iVQA (HowTo100M) {_YOUTUBE}"),
}
for _derived, _base in (("llava_detail", "llava_conversation"), ("llava_reasoning", "llava_conversation"),
                        ("vqav2_qg", "vqav2"), ("okvqa_qg", "okvqa"), ("aokvqa_qg", "aokvqa")):
    SOURCE_TERMS[_derived] = SOURCE_TERMS[_base]

# Hub task categories of each task (dataset_builders task names).
HUB_TASKS = {
    "image_captioning": "image-to-text",
    "captioning_reading_comprehension": "image-to-text",
    "visual_reasoning": "visual-question-answering",
    "image_qa": "visual-question-answering",
    "knowledge_grounded_qa": "visual-question-answering",
    "image_qa_reading_comprehension": "visual-question-answering",
    "visual_conversational_qa": "visual-question-answering",
    "video_qa": "video-text-to-text",
}
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(num_records: int) -> str:
    """The Hub's `size_categories` value for `num_records` rows."""
    return next((name for bound, name in SIZE_CATEGORIES if num_records < bound), "n>1B")


# --- writing ---------------------------------------------------------------------------------------


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def write_split(
    dataset: datasets.Dataset, folder, name: str, split: str, max_shard_size=MAX_SHARD_SIZE, rows_per_batch=ROWS_PER_BATCH
) -> list[str]:
    """Write `dataset` as `<name>/<split>-NNNNN-of-NNNNN.parquet` under `folder`, images and frames embedded;
    return the relative paths written.

    Streams `rows_per_batch` rows at a time from the (memory-mapped) dataset, embeds their files, and starts a
    new shard once the current one holds `max_shard_size` bytes (uncompressed Arrow size; images are already
    compressed, so files come out about that size). Earlier shards of this split are removed first. An empty
    split writes nothing (`datasets` cannot read a Parquet split with no rows).
    """
    max_bytes = convert_file_size_to_int(max_shard_size)
    directory = Path(folder) / name
    directory.mkdir(parents=True, exist_ok=True)
    for stale in [*directory.glob(f"{split}-*.parquet"), *directory.glob(f".{split}-*.partial")]:  # an earlier export's
        stale.unlink()
    schema = dataset.features.arrow_schema  # carries the `huggingface` features metadata: Image columns decode
    options = get_parquet_column_options(dataset.features, schema)
    partial, writer, shard_bytes = [], None, 0
    for batch in dataset.with_format("arrow").iter(batch_size=rows_per_batch):
        if writer is not None and shard_bytes >= max_bytes:
            writer.close()
            writer = None
        if writer is None:
            partial.append(directory / f".{split}-{len(partial):05d}.partial")
            writer = pq.ParquetWriter(partial[-1], schema, use_content_defined_chunking=CDC_OPTIONS, **options)
            shard_bytes = 0
        embedded = embed_table_storage(batch).cast(schema)
        writer.write_table(embedded)
        shard_bytes += embedded.nbytes
    if writer is not None:
        writer.close()
    written = []
    for index, path in enumerate(partial):  # the count is known only now
        final = directory / shard_name(split, index, len(partial))
        os.replace(path, final)
        written.append(final.relative_to(folder).as_posix())
    return written


def export_instruction_data(
    datasets_by_name: dict[str, dict[str, datasets.Dataset]],
    folder,
    *,
    max_shard_size=MAX_SHARD_SIZE,
    rows_per_batch: int = ROWS_PER_BATCH,
    reports: dict[str, dict[str, dict]] | None = None,
    commands: list[str] | None = None,
    pretty_name: str = "InstructBLIP instruction data, rebuilt from the official sources",
) -> list[str]:
    """Write a Hub dataset folder: each dataset's splits as embedded Parquet shards (`write_split`) and the
    dataset card (`write_dataset_card`). `datasets_by_name`: {registry name: {split: Dataset}} as
    `dataset_builders.load` returns them; `reports`: {name: {split: error report}} from
    `load(..., return_report=True)`; `commands`: the command lines that built the data, for the card.
    Returns the relative paths written, the card last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, configs = [], {}
    for name, splits in datasets_by_name.items():
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        configs[name] = {}
        for split, dataset in splits.items():
            if dataset.features != FEATURES:
                raise ValueError(f"{name}/{split}: features differ from the record schema (dataset_builders.schema)")
            files = write_split(dataset, folder, name, split, max_shard_size, rows_per_batch)
            families = sorted(dataset.unique("template_family")) if len(dataset) else []
            report = ((reports or {}).get(name) or {}).get(split)
            configs[name][split] = {"files": files, "num_records": len(dataset), "families": families, "report": report}
            written += files
    write_dataset_card(folder, configs, commands=commands, pretty_name=pretty_name)
    return written + [CARD]


# --- the card --------------------------------------------------------------------------------------


def _card_licence(names) -> tuple[list[str], bool]:
    """The Hub `license` list over the sources' annotations and media, and whether any is not a Hub id."""
    ids = sorted({licence for name in names for licence in (SOURCE_TERMS[name].annotations, SOURCE_TERMS[name].media)})
    return ids, any(licence in ("other", "unknown") for licence in ids)


def _templates_section(name: str, families: list[str]) -> list[str]:
    lines = []
    for family in families:
        if family in TEMPLATES:
            lines += [f"Instruction: one of the paper's `{family}` templates per record, drawn uniformly with the "
                      "build seed (`template_id` is its index):", ""]
            lines += [f"{i}. `{template}`" for i, template in enumerate(TEMPLATES[family])]
        elif family == ZERO_SHOT:
            prompt = ZERO_SHOT_PROMPTS.get(name, "(a fixed prompt)").replace("\n", "\\n")
            lines.append(f"Instruction: the paper's zero-shot prompt `{prompt}` (slots filled from the record).")
        elif family == NATIVE:
            lines.append("Instruction: the source's own instructions, no template.")
        lines.append("")
    return lines or ["(no records)", ""]


def _report_line(report: dict | None) -> str:
    if report is None:
        return "no report"
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(report["counts"].items()))
    return f"{report['num_skipped']} skipped" + (f" ({reasons})" if reasons else "")


def write_dataset_card(folder, configs: dict, *, commands=None, pretty_name: str = "") -> Path:
    """Write `folder/README.md`. `configs`: {name: {split: {"files", "num_records", "families", "report"}}}."""
    from huggingface_hub import DatasetCard, DatasetCardData

    names = list(configs)
    licences, mixed = _card_licence(names)
    total = sum(split["num_records"] for splits in configs.values() for split in splits.values())
    tasks = sorted({HUB_TASKS.get(DATASETS[name].task, "image-text-to-text") for name in names} | {"image-text-to-text"})
    data = DatasetCardData(
        pretty_name=pretty_name,
        license=licences,
        task_categories=tasks,
        size_categories=[size_category(total)],
        language=["en"],
        tags=["instructblip", "instruction-tuning", "vision-language"],
        configs=[
            {"config_name": name,
             "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split, info in splits.items()
                            if info["files"]]}
            for name, splits in configs.items() if any(info["files"] for info in splits.values())
        ],
    )
    shown = next((name for name in names if any(info["files"] for info in configs[name].values())), names[0])
    shown_split = next((split for split, info in configs[shown].items() if info["files"]), next(iter(configs[shown])))
    if mixed:
        data.license_name = "per-source"  # the "Licences" section of the card lists each source's terms
    body = [
        f"# {pretty_name}",
        "",
        "Instruction records of [InstructBLIP](https://arxiv.org/abs/2305.06500)'s datasets, rebuilt from each "
        "dataset's official release with `dataset_builders` (the instruction data itself was never released). "
        "One config per dataset; images and video frames are embedded in the Parquet files, so nothing else "
        "needs downloading.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("<this repo>", "{shown}", split="{shown_split}")',
        'ds[0]["image"]  # a PIL image; video records leave it None and list 4 frames in ds[0]["frames"]',
        "```",
        "",
        "## Datasets",
        "",
        "| config | role | task | splits (records) | licence (annotations / media) |",
        "|---|---|---|---|---|",
    ]
    for name, splits in configs.items():
        counts = ", ".join(f"{split} ({info['num_records']:,})" for split, info in splits.items())
        terms = SOURCE_TERMS[name]
        body.append(f"| {name} | {DATASETS[name].role} | {DATASETS[name].task} | {counts} | "
                    f"{terms.annotations} / {terms.media} |")
    body += ["", f"{total:,} records in all.", ""]
    for name, splits in configs.items():
        builder = builder_class(name)
        downloads = sorted(set(builder.FILES.values()))
        body += [f"### {name}", "",
                 f"- Source: {builder.HOMEPAGE or 'see dataset_builders/' + DATASETS[name].module + '.py'}"]
        body += [f"  - official download: {url}" for url in downloads]
        body += [f"- Licence: {SOURCE_TERMS[name].note}",
                 f"- Role: {DATASETS[name].role}; task: {DATASETS[name].task}",
                 "- Records per split (raw records skipped while building, by reason):"]
        body += [f"  - {split}: {info['num_records']:,} ({_report_line(info['report'])})"
                 + ("" if info["files"] else "; empty, so not in the repo") for split, info in splits.items()]
        body.append("")
        families = sorted({family for info in splits.values() for family in info["families"]})
        body += _templates_section(name, families)
    body += [
        "## Licences",
        "",
        "Each config keeps its source's terms (table above; as stated by the sources when this card was written: "
        "check them before use). Embedded images and videos stay under their owners' terms.",
        "",
        "## How the data was built",
        "",
        "From the official raw releases, laid out as each builder's module docstring says "
        "(`dataset_builders/<name>.py`), with:",
        "",
        "```bash",
        *(commands or ["python -m publish dataset <repo id> --data_dir <ROOT> --datasets " + ",".join(names)]),
        "```",
        "",
        "Every record follows `dataset_builders/schema.py`. Templates follow the paper's appendix: one per training "
        "example; scene-text datasets put `OCR tokens: ...` before the instruction; held-out datasets carry the "
        "fixed zero-shot prompt. Malformed raw records and missing, corrupt or truncated images are skipped and "
        "counted above, never dropped silently.",
        "",
    ]
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    path = Path(folder) / CARD
    card.save(path)
    return path


# --- checking and uploading ------------------------------------------------------------------------


def _unembedded_rows(path: Path) -> int:
    """Rows of a Parquet file whose image or frames name a file but hold no bytes (a leaf `bytes` column
    with more nulls than its `path` sibling), read from the row groups' statistics."""
    metadata = pq.read_metadata(path)
    count = 0
    for group in range(metadata.num_row_groups):
        nulls = {}
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            parent, _, leaf = chunk.path_in_schema.rpartition(".")
            if leaf in ("bytes", "path") and chunk.statistics is not None and chunk.statistics.has_null_count:
                nulls.setdefault(parent, {})[leaf] = chunk.statistics.null_count
        count += sum(max(0, pair.get("bytes", 0) - pair.get("path", 0)) for pair in nulls.values())
    return count


def _check_shard(folder: Path, name: str, problems: list[str]):
    try:
        schema = pq.read_schema(folder / name)
    except Exception as error:  # a truncated file, an LFS pointer, another format under the name
        problems.append(f"{name}: not a readable Parquet file ({error})")
        return
    missing = [column for column in FEATURES if column not in schema.names]
    if missing:
        problems.append(f"{name}: lacks record columns {missing}")
    elif _unembedded_rows(folder / name):
        problems.append(f"{name}: images are stored by path, not embedded (export with export_instruction_data)")


def check_dataset_folder(folder) -> list[str]:
    """The files `publish_instruction_data` would upload from `folder`; raises `IncompleteFolderError`
    naming everything that would keep the Hub copy from loading."""
    from huggingface_hub import DatasetCard

    folder = Path(folder)
    if not folder.is_dir():
        raise IncompleteFolderError(folder, ["not a folder"])
    files = files_to_upload(folder)
    problems: list[str] = []
    if CARD not in files:
        raise IncompleteFolderError(folder, ["README.md: no dataset card (export_instruction_data writes it)"])
    try:
        metadata = DatasetCard.load(folder / CARD).data.to_dict()
    except Exception as error:
        raise IncompleteFolderError(folder, [f"README.md: the card's metadata does not parse ({error})"]) from None
    configs = metadata.get("configs")
    if not configs or not isinstance(configs, list):
        problems.append("README.md: no `configs:` in the metadata, so load_dataset(repo, name) finds no data")
        configs = []
    if not metadata.get("license"):
        problems.append("README.md: no `license:` in the metadata")
    claimed = set()
    for config in configs:
        config_name = config.get("config_name") if isinstance(config, dict) else None
        data_files = config.get("data_files") if isinstance(config, dict) else None
        if not config_name or not isinstance(data_files, list) or not data_files:
            problems.append(f"README.md: config {config!r} needs a config_name and data_files (split, path)")
            continue
        for entry in data_files:
            pattern = entry.get("path") if isinstance(entry, dict) else None
            matched = [name for name in files if pattern and fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                problems.append(f"{pattern}: data files of config {config_name!r} "
                                f"split {entry.get('split') if isinstance(entry, dict) else entry!r}: no such file")
            for name in matched:
                claimed.add(name)
                if not name.endswith(".parquet"):
                    problems.append(f"{name}: data file of config {config_name!r} is not a .parquet file")
                else:
                    _check_shard(folder, name, problems)
    strays = [name for name in files if name.endswith(".parquet") and name not in claimed] if configs else []
    if strays:
        problems.append(f"Parquet files in no config (left from an earlier export?): {', '.join(strays)}")
    if problems:
        raise IncompleteFolderError(folder, problems)
    return files


def publish_instruction_data(
    folder,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload InstructBLIP instruction data",
    endpoint: str | None = None,
):
    """Check `folder`, create the dataset repo `repo_id` if needed, and upload the folder. Returns the
    `CommitInfo` of the last commit (`.oid` is the revision to pin in `load_dataset(..., revision=...)`).
    Re-running the same call after an interruption resumes: files already on the Hub are skipped."""
    from huggingface_hub import HfApi

    check_dataset_folder(folder)
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        ignore_patterns=list(LEFT_OUT),
        commit_message=commit_message,
        create_pr=create_pr,
    )


# --- building from the raw releases (the command line's first step) -------------------------------


def default_splits(name: str) -> list[str]:
    """Training split of a held-in dataset, the evaluation split of a held-out one (evaluation/tasks.py)."""
    if DATASETS[name].role == "held_in":
        return ["train"]
    from evaluation.tasks import TASKS

    return [next(task.split for task in TASKS.values() if task.dataset == name and task.held_out)]


def build_instruction_data(data_root, names, splits=None, *, cache_dir=None, **options):
    """`dataset_builders.load` every (name, split) from `data_root/<name>`; returns
    ({name: {split: Dataset}}, {name: {split: error report}}). `splits=None`: `default_splits(name)`."""
    unknown = [name for name in names if name not in DATASETS]
    if unknown:  # before building anything
        raise KeyError(f"unknown dataset {', '.join(map(repr, unknown))}; known: {', '.join(DATASETS)}")
    built, reports = {}, {}
    for name in names:
        for split in splits or default_splits(name):
            dataset, report = load(name, os.path.join(data_root, name), split, cache_dir=cache_dir,
                                   return_report=True, **options)
            built.setdefault(name, {})[split] = dataset
            reports.setdefault(name, {})[split] = report
    return built, reports
