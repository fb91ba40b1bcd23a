"""Your own instruction data as sources of the training mixture: local files and Hub datasets, built by
the builders' own machinery (`InstructBuilder`: an error report by reason, `errors` skip/fail,
`image_check`, a cache keyed on the raw file, streaming).

Local files (`train.py --train_file / --validation_file`), one record per sample:

    .jsonl     one JSON object per line (a line that is not JSON costs that record only)
    .json      a JSON array of objects (LLaVA's files), or JSON Lines (what `Dataset.to_json` writes)
    .csv       a header row, then one row per record; list-valued cells (conversations, video) as JSON
    .parquet   one row per record; images by path or embedded ({"bytes", "path"}, as `datasets` writes them)

A record is one of

    {"image": "images/0001.png", "instruction": "What is on the table?", "answer": "a cup"}
    {"image": ..., "conversations": [{"from": "human", "value": "<image>\\nWhat ...?"},
                                     {"from": "gpt", "value": "..."}, ...]}            (LLaVA's format)
    {"video": ["clip/0.jpg", "clip/1.jpg", ...], "instruction": ..., "answer": ...}   (or a video file)

with paths relative to the file's folder (or absolute) and an optional "id" that names it in reports.
The column names `image`, `instruction`, `answer` can be changed (`UserDataConfig`).

Hub datasets (`train.py --dataset_name`, a Hub id or a local dataset folder), pinned to the commit
resolved when the source is made (offline: the copy in the Hub cache), each config one source. The
layout is read from the columns:

    - the record schema of schema.py (what `python -m publish dataset` writes): used as is, so its
      templates are re-drawn during training exactly as the builders' records are;
    - The Cauldron (HuggingFaceM4/the_cauldron): `images` (a list) and `texts` [{user, assistant, source}];
    - LLaVA's `image` + `conversations`;
    - anything else: the `image` / `instruction` / `answer` columns as configured.

Records: the user's instruction is used as written (template family "native", never re-drawn, as
LLaVA-Instruct's); the "<image>" placeholder is removed from the text. A conversation gives one
record per (human, gpt) exchange, as llava_instruct.py does (the instruction is the conversation up
to its question). A video's frames, or a record's several images, become `frames`: NUM_FRAMES evenly
spaced ones, first and last included (fewer are repeated), the paper's T=4; a video file is decoded
as the video builders do (_video.py). A record without an image is rejected (`no_image`).

This module must not know the training loop, and it knows no official release's format.
"""

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

import datasets

from ._base import (
    MALFORMED_RECORD,
    TEXT_ERRORS,
    WRONG_FIELD_TYPE,
    RecordError,
    _code_hash,
    _raw_files_fingerprint,
    check_image_bytes,
    field,
    iter_json_array,
    iter_jsonl,
)
from ._video import NUM_FRAMES, VideoQABuilder, VideoQAConfig, frame_indices
from .llava_instruct import conversation_exchanges, exchange_instruction, strip_image_marker
from .schema import FEATURES, HELD_IN, NATIVE, make_record

logger = logging.getLogger(__name__)

USER_TASK = "user_data"  # the `task` of records from the user's own data
NO_IMAGE = "no_image"  # reason: a record with neither an image nor a video
FILE_FORMATS = (".jsonl", ".json", ".csv", ".parquet")
# a file named after a split takes its folder's name: data/receipts/train.jsonl -> "receipts"
SPLIT_STEMS = ("train", "training", "validation", "valid", "val", "dev", "test", "eval", "evaluation")

# layouts of a record
SCHEMA = "schema"
CAULDRON = "cauldron"
CONVERSATIONS = "conversations"
COLUMNS = "columns"
_SCHEMA_COLUMNS = frozenset(FEATURES)
_JSON_CELLS = ("conversations", "texts", "images")  # CSV cells decoded from JSON (plus the video column)


@dataclass
class UserDataConfig(VideoQAConfig):
    """Where one source's records come from: `data_file` (a local file), or `hub_dataset` (what
    `datasets.load_dataset` reads: a Hub id or a local folder) with `hub_config`, `hub_split` and the
    pinned `revision`; and the column names of the instruction/answer layout."""

    data_file: str | None = None
    hub_dataset: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None
    revision: str | None = None
    image_column: str = "image"
    instruction_column: str = "instruction"
    answer_column: str = "answer"
    video_column: str = "video"


def _file_fingerprint(path: str) -> str:
    stat = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


class UserData(VideoQABuilder):
    """One source of the user's own data (a file, or one config and split of a Hub dataset).

    `source_name` is its name in the mixture, the records' `dataset` and its cache folder."""

    BUILDER_CONFIG_CLASS = UserDataConfig
    # not a registry dataset (dataset_builders.DATASETS), so it states its own role and task, here only
    role = HELD_IN
    task = USER_TASK
    TEMPLATE_FAMILY = NATIVE
    HOMEPAGE = ""

    def __init__(self, *args, source_name: str, **kwargs):
        self.DATASET_NAME = source_name
        kwargs["dataset_name"] = source_name
        if kwargs.get("data_file"):
            fingerprint = _file_fingerprint(kwargs["data_file"])
        elif kwargs.get("hub_dataset") and os.path.isdir(kwargs["hub_dataset"]):
            fingerprint = _raw_files_fingerprint(kwargs["hub_dataset"], depth=3)
        else:  # a Hub id: the pinned revision, part of the config, keys the cache
            fingerprint = ""
        kwargs.setdefault("hash", _code_hash(type(self)) + fingerprint)
        super().__init__(*args, **kwargs)

    def _split_generators(self, dl_manager):
        split = self.config.split or "train"
        if self.config.data_file:
            return [self.split_generator(split, data_file=self.config.data_file)]
        streaming = isinstance(dl_manager, datasets.StreamingDownloadManager)
        return [self.split_generator(split, streaming=streaming)]

    # -- reading --

    def _iter_raw(self, split, data_file=None, streaming=False):
        if data_file is not None:
            base = os.path.dirname(os.path.abspath(data_file))
            for position, (ref, row) in enumerate(read_rows(data_file)):
                yield data_file, ref, (row, base, None, position)
            return
        source = self.open_hub_source(streaming)
        layout = hub_layout(source.features, self.config) if source.features is not None else None
        base = self.config.hub_dataset if os.path.isdir(self.config.hub_dataset) else None
        where = describe_hub_source(self.config)
        for position, row in enumerate(source):
            yield where, f"row {position}", (row, base, layout, position)

    def open_hub_source(self, streaming: bool):
        """The configured Hub split as a `datasets` (Iterable)Dataset, images left undecoded."""
        config = self.config
        source = datasets.load_dataset(
            config.hub_dataset, config.hub_config, split=config.hub_split or config.split,
            revision=config.revision, streaming=streaming,
        )
        return undecoded_images(source)

    # -- records --

    def _records(self, raw, split):
        row, base, layout, position = raw
        if isinstance(row, RecordError):  # a CSV row that does not fit its header
            raise row
        if isinstance(row, Exception):
            raise RecordError(MALFORMED_RECORD, f"not valid JSON ({row})")
        if not isinstance(row, dict):
            raise RecordError(MALFORMED_RECORD, f"record is a {type(row).__name__}, expected an object")
        layout = layout or row_layout(row)
        if layout == SCHEMA:
            return self.schema_record(row, split, base)
        config = self.config
        record_id = row.get("id")
        if not isinstance(record_id, (str, int)) or isinstance(record_id, bool) or record_id == "":
            record_id = position
        if layout == CAULDRON:
            visual = self.visual(field(row, "images", list), None, base)
            exchanges = cauldron_exchanges(field(row, "texts", list))
        else:
            visual = self.visual(row.get(config.image_column), row.get(config.video_column), base)
            if layout == CONVERSATIONS:
                exchanges = conversation_exchanges(row["conversations"])
            else:
                instruction = text_field(row, config.instruction_column)
                exchanges = [([], strip_image_marker(instruction), text_field(row, config.answer_column).strip())]
        image = visual.get("image")
        image_id = os.path.splitext(os.path.basename(image))[0] if isinstance(image, str) else str(record_id)
        records = []
        for number, (history, question, answer) in enumerate(exchanges):
            if not answer:
                raise RecordError(MALFORMED_RECORD, f"exchange {number}: the answer is empty")
            exchange_id = str(record_id) if len(exchanges) == 1 else f"{record_id}_{number}"
            records.append(self.make(
                split, id=exchange_id, **visual, instruction=exchange_instruction(history, question),
                question=question, history=history, target=answer, answers=[answer],
                question_id=exchange_id, image_id=image_id,
            ))
        return records

    def schema_record(self, row: dict, split: str, base: str | None) -> dict:
        """A row already in the record schema (published instruction data): kept, images resolved."""
        fields = {name: row[name] for name in FEATURES}
        fields["split"] = split
        if fields["image"] is not None:
            fields["image"] = self.image(fields["image"], base)
        fields["frames"] = [self.image(frame, base) for frame in fields["frames"] or []]
        if fields["image"] is None and not fields["frames"]:
            raise RecordError(NO_IMAGE, "the record has no image and no frames")
        return make_record(**fields)

    def visual(self, image, video, base: str | None) -> dict:
        """{"image": ...} or {"frames": [...]} from a record's image (or list of images) and video."""
        if isinstance(image, list) and len(image) == 1:
            image = image[0]
        if _given(image) and _given(video):
            raise RecordError(MALFORMED_RECORD, "the record gives both an image and a video; give one")
        if isinstance(image, list):  # several images: shown as the frames of a clip
            video = image if image else None
            image = None
        if _given(video):
            if isinstance(video, str):  # a video file, decoded once at build time
                return {"frames": self.frames(_resolve(video, base))}
            if not isinstance(video, list) or not video:
                raise RecordError(WRONG_FIELD_TYPE, "the video is not a list of frames or a video file's path")
            frames = [self.image(frame, base) for frame in video]
            return {"frames": [frames[i] for i in frame_indices(len(frames), NUM_FRAMES)]}
        if not _given(image):
            raise RecordError(NO_IMAGE, f"no image (field {self.config.image_column!r}) and no video")
        return {"image": self.image(image, base)}

    def image(self, value, base: str | None):
        """An image path (resolved against `base`) or {"bytes", "path"} (embedded bytes checked here;
        paths are checked by the base class)."""
        if isinstance(value, dict):
            if value.get("bytes"):
                name = value.get("path") or "embedded image"
                check_image_bytes(value["bytes"], self.config.image_check, name)
                return {"bytes": value["bytes"], "path": value.get("path")}
            value = value.get("path")
        if not isinstance(value, str) or not value:
            raise RecordError(WRONG_FIELD_TYPE, f"an image is {type(value).__name__}, expected a path or image bytes")
        return _resolve(value, base)


def _given(value) -> bool:
    return value is not None and value != "" and value != []


def _resolve(path: str, base: str | None) -> str:
    return path if base is None or os.path.isabs(path) else os.path.join(base, path)


def text_field(row: dict, name: str) -> str:
    """`row[name]` as text: a string, or a number written as one (CSV and JSON answers such as 3)."""
    value = field(row, name, (str, int, float))
    return value if isinstance(value, str) else str(value)


def cauldron_exchanges(texts: list) -> list[tuple[list[str], str, str]]:
    """The Cauldron's `texts` ([{user, assistant, source}]) -> (history, question, answer) per turn."""
    if not texts:
        raise RecordError(MALFORMED_RECORD, "texts is empty")
    exchanges, history = [], []
    for turn in texts:
        question = strip_image_marker(field(turn, "user", str))
        answer = field(turn, "assistant", str).strip()
        exchanges.append((list(history), question, answer))
        history += [question, answer]
    return exchanges


def row_layout(row: dict) -> str:
    """Which layout a record (a dict) is in."""
    keys = row.keys()
    if _SCHEMA_COLUMNS.issubset(keys):
        return SCHEMA
    if "texts" in keys and "images" in keys:
        return CAULDRON
    if "conversations" in keys:
        return CONVERSATIONS
    return COLUMNS


def hub_layout(features, config: UserDataConfig) -> str:
    """The layout of a Hub dataset from its features; raises ValueError naming the columns it lacks."""
    layout = row_layout(dict.fromkeys(features))
    if layout == COLUMNS:
        wanted = {"--image_column": config.image_column, "--instruction_column": config.instruction_column,
                  "--answer_column": config.answer_column}
        if config.video_column in features:
            wanted.pop("--image_column")
        missing = {flag: column for flag, column in wanted.items() if column not in features}
        if missing:
            raise ValueError(
                f"{describe_hub_source(config)}: no column " + ", ".join(f"{c!r} ({flag})" for flag, c in missing.items())
                + f"; its columns are {sorted(features)}. Name them with "
                + ", ".join(missing) + " (the record schema, The Cauldron's and LLaVA's layouts need no flags)"
            )
    return layout


def describe_hub_source(config: UserDataConfig) -> str:
    name = config.hub_dataset + (f" [{config.hub_config}]" if config.hub_config else "")
    return f"{name} split {config.hub_split or config.split}"


def undecoded_images(source):
    """`source` with its Image columns (and lists of images) left as {"bytes", "path"}."""
    if source.features is None:
        return source
    for name, feature in source.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            source = source.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.List, datasets.LargeList)) and isinstance(feature.feature, datasets.Image):
            source = source.cast_column(name, type(feature)(datasets.Image(decode=False)))
    return source


# --- local files ----------------------------------------------------------------------------------


def read_rows(path: str):
    """Yield (reference, row) for each record of a local file; a row is a dict, or the JSONDecodeError
    of a line that is not JSON (so it costs that record only)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl" or (suffix == ".json" and _first_char(path) != "["):
        for number, value in iter_jsonl(path):
            yield f"line {number}", value
    elif suffix == ".json":
        for index, value in enumerate(iter_json_array(path)):
            yield f"#{index}", value
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield f"row {index}", row
                index += 1
    else:
        raise ValueError(f"{path}: not a {', '.join(FILE_FORMATS)} file")


def _first_char(path: str) -> str:
    with open(path, encoding="utf-8", errors=TEXT_ERRORS) as f:
        while True:
            chunk = f.read(4096)
            if not chunk:
                return ""
            stripped = chunk.lstrip("\ufeff \t\r\n")
            if stripped:
                return stripped[0]


def _csv_rows(path: str):
    with open(path, newline="", encoding="utf-8", errors=TEXT_ERRORS) as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row:  # more cells than the header names
                yield f"line {reader.line_num}", RecordError(
                    MALFORMED_RECORD, f"{len(reader.fieldnames) + len(row[None])} cells, the header names "
                    f"{len(reader.fieldnames)}"
                )
                continue
            for name, value in row.items():
                if value is None:
                    row[name] = ""
                elif value[:1] == "[" and (name in _JSON_CELLS or name == "video"):
                    try:
                        row[name] = json.loads(value)
                    except json.JSONDecodeError:
                        pass  # rejected as a wrong type when read
            yield f"line {reader.line_num}", row


# --- sources --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSource:
    """One source of the user's data for one split: its `name` in the mixture, where it comes from
    (`origin`, for reports and the model card), and its builder's config fields."""

    name: str
    split: str
    origin: str
    config: dict = dataclass_field(default_factory=dict)
    hub_dataset: str | None = None  # the Hub id it was loaded from (the model card's `datasets:`)

    def builder(self, cache_dir: str | None = None, **options) -> UserData:
        return UserData(cache_dir=cache_dir, source_name=self.name, split=self.split, **self.config, **options)


def file_source_name(path: str) -> str:
    """A file's name in the mixture: its stem, or its folder's name for a file named after a split."""
    path = Path(path)
    stem = path.stem
    if stem.lower() in SPLIT_STEMS and path.resolve().parent.name:
        return path.resolve().parent.name
    return stem


def file_sources(paths, split: str, argument: str = "--train_file", **columns) -> list[UserSource]:
    """One source per local file (checked to exist and to be a known format). `columns`:
    image_column, instruction_column, answer_column, video_column."""
    sources = []
    for path in paths or ():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{argument} {path}: no such file")
        if Path(path).suffix.lower() not in FILE_FORMATS:
            raise ValueError(f"{argument} {path}: expected a {', '.join(FILE_FORMATS)} file")
        sources.append(UserSource(file_source_name(path), split, path,
                                  {"data_file": os.path.abspath(path), **columns}))
    check_unique_names(sources, argument)
    return sources


def check_unique_names(sources, what: str) -> None:
    seen = {}
    for source in sources:
        if source.name in seen:
            raise ValueError(
                f"{what}: two sources are named {source.name!r} ({seen[source.name]} and {source.origin}); "
                "a source's name is its file's stem (its folder's for train/validation/test files): rename one"
            )
        seen[source.name] = source.origin


def resolve_hub_dataset(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """(what `datasets.load_dataset` should read, the revision to pin) for a Hub id or a local folder.

    Online, the commit `revision` (default: the main branch) points to now, so a cache built from it is
    never served for a newer commit. Offline (HF_HUB_OFFLINE=1), the snapshot in the Hub cache
    (`hf download <id> --repo-type dataset` puts it there; so does an earlier online run)."""
    if os.path.isdir(name):
        return os.path.abspath(name), None
    from huggingface_hub import HfApi, constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        try:
            folder = snapshot_download(name, repo_type="dataset", revision=revision, local_files_only=True)
        except Exception as error:
            raise FileNotFoundError(
                f"--dataset_name {name}: HF_HUB_OFFLINE is set and the Hub cache ({constants.HF_HUB_CACHE}) has no "
                f"copy of it ({type(error).__name__}); download it first: hf download {name} --repo-type dataset"
            ) from None
        return folder, None
    return name, HfApi().dataset_info(name, revision=revision).sha


def hub_sources(dataset_name: str, configs=None, *, split: str = "train", hub_split: str = "train",
                revision: str | None = None, required: bool = True, **columns) -> list[UserSource]:
    """One source per config of a Hub dataset (`configs`: names, or None for all of them), named by the
    config, or by the dataset's name when it has only its default config. A config without `hub_split` is
    left out with a log line, unless it was named in `configs` and the split is `required` (ValueError)."""
    path, pinned = resolve_hub_dataset(dataset_name, revision)
    available = datasets.get_dataset_config_names(path, revision=pinned)
    wanted = list(configs) if configs else available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ValueError(f"--dataset_config_name: {dataset_name} has no config {unknown}; its configs: {available}")
    if not configs and len(available) > 1:
        logger.info("%s: training on all of its %d configs (--dataset_config_name picks some)", dataset_name, len(available))
    sources = []
    for config in wanted:
        splits = datasets.get_dataset_split_names(path, None if config == "default" else config, revision=pinned)
        if hub_split not in splits:
            message = f"{dataset_name} [{config}] has no split {hub_split!r}; its splits: {splits}"
            if required and configs:
                raise ValueError(f"--dataset_split: {message}")
            logger.info("%s: not used for %s", message, split)
            continue
        name = Path(dataset_name).name if config == "default" else config
        origin = f"{dataset_name}" + ("" if config == "default" else f" [{config}]") + f" split {hub_split}"
        options = {"hub_dataset": path, "hub_config": None if config == "default" else config, "hub_split": hub_split,
                   "revision": pinned, **columns}
        hub_id = None if os.path.isdir(dataset_name) else dataset_name
        sources.append(UserSource(name, split, origin, options, hub_dataset=hub_id))
    if required and not sources:
        raise ValueError(f"--dataset_split: no config of {dataset_name} has a split {hub_split!r}")
    check_unique_names(sources, "--dataset_name")
    return sources


def load_source(source: UserSource, *, cache_dir: str | None = None, streaming: bool = False,
                return_report: bool = False, **options):
    """`dataset_builders.load` for a user source: build (or reuse the cache of) its split."""
    from . import load_from_builder

    return load_from_builder(source.builder(cache_dir, **options), source.split, streaming=streaming,
                             return_report=return_report)

