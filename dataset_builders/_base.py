"""What every builder shares: its config, the error policy and report, file and image checks,
and a streaming JSON reader.

A builder subclasses `InstructBuilder` and writes three short methods:

    _split_generators(dl_manager)   -> [self.split_generator("train", questions=path, ...), ...]
    _iter_raw(split, **gen_kwargs)  -> yields (source_file, record_ref, raw_item)
    _records(raw, split)            -> one record (dict) or a list of records, built with self.make

The base turns each raw item into records, checks their images, and applies the `errors` policy:
a malformed item (missing field, wrong type) or a missing, corrupt or truncated image raises
`RecordError` naming the file and record (`errors="fail"`), or is skipped and counted by reason
(`errors="skip"`). Nothing is dropped without being counted. The per-split counts are kept in
`builder.error_reports`, logged, and written next to the Arrow files as `error_report.json`.

Image check (`image_check`, default "header"): opening every image fully would cost ~10 ms each,
so at build time the default reads only the header (PIL.Image.open, lazy) and the file's tail
(JPEG end-of-image marker, PNG IEND chunk, GIF trailer), which catches missing, non-image,
header-corrupt and truncated files in well under a millisecond; results are cached per path so
datasets with many questions per image pay once per image. "full" decodes every image,
"exists" only stats it, "none" trusts the folder. Damage inside the compressed data that leaves
the header and tail intact is only seen by "full" (or later, when the image is decoded).
This module must not know any dataset's raw format.
"""

import hashlib
import inspect
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.builder import Key

from . import schema, templates
from .schema import FEATURES, TEMPLATE_FAMILIES, ZERO_SHOT, make_record
from .templates import TEMPLATES, draw_template_id, example_rng, fill_template

logger = logging.getLogger(__name__)

# Reasons a record is rejected (the keys of an ErrorReport's counts).
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
OVERSIZED_IMAGE = "oversized_image"  # over PIL's decompression-bomb limit
NON_UTF8_TEXT = "non_utf8_text"
# Text files are decoded with "surrogateescape": an invalid byte becomes a lone surrogate in the string
# (instead of failing the whole file), and `check_text` then rejects just the record holding it.
TEXT_ERRORS = "surrogateescape"
MALFORMED_RECORD = "malformed_record"
WRONG_FIELD_TYPE = "wrong_field_type"

ERROR_POLICIES = ("fail", "skip")
IMAGE_CHECKS = ("none", "exists", "header", "full")
ERROR_REPORT_FILENAME = "error_report.json"


class RecordError(Exception):
    """A raw record that cannot become a valid record; `reason` is one of the reason constants."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class InstructConfig(datasets.BuilderConfig):
    """Options every builder accepts (builders may subclass it to add their own).

    Attributes:
        data_dir: folder holding the official raw release, laid out as the builder's module
            docstring says.
        errors: "fail" stops at the first bad record, naming file and record; "skip" skips it and
            counts it by reason in the split's error report.
        seed: seeds the template drawn for each training record (per record, order independent).
        image_check: "header" (default), "full", "exists" or "none"; see the module docstring.
        split: build only this split (`load` sets it, so a user needs only that split's files
            and each split gets its own cache); None builds every split.
    """

    errors: str = "fail"
    seed: int = 0
    image_check: str = "header"
    split: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.errors not in ERROR_POLICIES:
            raise ValueError(f"errors must be one of {ERROR_POLICIES}, got {self.errors!r}")
        if self.image_check not in IMAGE_CHECKS:
            raise ValueError(f"image_check must be one of {IMAGE_CHECKS}, got {self.image_check!r}")


class ErrorReport:
    """Records kept and rejected (by reason) while building one split, and the raw items read from
    each source file; `examples` keeps the first few messages of each reason so a user can find the
    offending files."""

    MAX_EXAMPLES_PER_REASON = 5

    def __init__(self, dataset: str, split: str):
        self.dataset = dataset
        self.split = split
        self.num_records = 0
        self.files: Counter = Counter()  # raw items read, per source file
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, error: RecordError) -> None:
        """Count one rejected raw record."""
        self.counts[error.reason] += 1
        examples = self.examples.setdefault(error.reason, [])
        if len(examples) < self.MAX_EXAMPLES_PER_REASON:
            examples.append(error.message)

    @property
    def num_skipped(self) -> int:
        """Raw records skipped, all reasons together."""
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        """A JSON-able summary."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "num_records": self.num_records,
            "num_skipped": self.num_skipped,
            "files": dict(sorted(self.files.items())),
            "counts": dict(self.counts),
            "examples": self.examples,
        }

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items())) or "none"
        return f"{self.dataset}/{self.split}: {self.num_records} records, {self.num_skipped} skipped ({reasons})"


def require_files(data_dir: str, files: dict, dataset: str) -> dict:
    """Check that each file or folder of `files` ({relative path: official download URL}) exists
    under `data_dir`; return {relative path: absolute path}.

    Raises FileNotFoundError naming every missing file and where to download it.
    """
    if data_dir is None:
        raise ValueError(f"{dataset}: pass data_dir=<folder holding the official release>")
    paths = {rel: os.path.join(os.path.abspath(data_dir), rel) for rel in files}
    missing = [rel for rel, path in paths.items() if not os.path.exists(path)]
    if missing:
        lines = "\n".join(f"  {rel}  <- {files[rel]}" for rel in missing)
        raise FileNotFoundError(
            f"{dataset}: missing from {data_dir}:\n{lines}\nDownload the official release and place it as shown."
        )
    return paths


def field(raw, name, expected_type):
    """`raw[name]`, checked: RecordError(MALFORMED_RECORD) if absent, (WRONG_FIELD_TYPE) if not
    `expected_type` (a type or tuple; int never matches bool; float accepts int)."""
    try:
        value = raw[name]
    except KeyError:
        raise RecordError(MALFORMED_RECORD, f"missing field {name!r}") from None
    except (TypeError, IndexError):
        raise RecordError(MALFORMED_RECORD, f"record is a {type(raw).__name__}, expected an object") from None
    if type(value) is expected_type:  # the common case, checked cheaply
        return value
    types = expected_type if isinstance(expected_type, tuple) else (expected_type,)
    if float in types:
        types = types + (int,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        wanted = "/".join(t.__name__ for t in types)
        raise RecordError(WRONG_FIELD_TYPE, f"field {name!r} is {type(value).__name__}, expected {wanted}")
    return value


def list_field(raw, name, item_type):
    """`raw[name]` checked to be a list whose items are all `item_type`."""
    value = field(raw, name, list)
    check_items(value, item_type, name)
    return value


def check_items(values: list, item_type, name: str) -> list:
    """Raise RecordError(WRONG_FIELD_TYPE) unless every item of `values` is an `item_type`."""
    for item in values:
        if type(item) is not item_type and (not isinstance(item, item_type) or isinstance(item, bool)):
            raise RecordError(
                WRONG_FIELD_TYPE, f"field {name!r} holds a {type(item).__name__}, expected {item_type.__name__}"
            )
    return values


def most_common(answers: list[str]) -> str:
    """The most frequent answer (VQA-style consensus); ties go to the one given first; "" if none."""
    return Counter(answers).most_common(1)[0][0] if answers else ""


# --- images ---------------------------------------------------------------------------------

_TAIL_BYTES = 1024  # encoders may pad a little after the end marker


def check_image(path: str, mode: str = "header") -> None:
    """Raise RecordError if the image at `path` is missing, corrupt or truncated (see module docs)."""
    if mode == "none":
        return
    if not os.path.isfile(path):
        raise RecordError(MISSING_IMAGE, f"image not found: {path}")
    if mode == "exists":
        return
    image_format = _check_decodable(path, path, mode)
    if mode == "header" and not _has_end_marker(path, image_format):
        raise RecordError(TRUNCATED_IMAGE, f"truncated image (no end marker): {path}")


def check_image_bytes(data: bytes, mode: str = "header", name: str = "embedded image") -> None:
    """`check_image` for an image held as bytes (a Parquet or Hub dataset's embedded image); `name` says
    which record's image it is in the error."""
    if mode in ("none", "exists"):
        return
    import io

    image_format = _check_decodable(io.BytesIO(data), name, mode)
    if mode == "header" and not _tail_has_end_marker(data[-_TAIL_BYTES:], image_format):
        raise RecordError(TRUNCATED_IMAGE, f"truncated image (no end marker): {name}")


def _check_decodable(source, name: str, mode: str) -> str:
    """Open the image at `source` (a path or a file object): its header, or (mode "full") all of it;
    return its format, or raise RecordError naming `name`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image_format = image.format
            width, height = image.size
            if mode == "full":
                image.load()
    except UnidentifiedImageError:
        raise RecordError(CORRUPT_IMAGE, f"not a readable image: {name}") from None
    except Image.DecompressionBombError as error:  # decoding it could exhaust memory
        raise RecordError(OVERSIZED_IMAGE, f"oversized image: {name} ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for bad and cut files
        reason = TRUNCATED_IMAGE if "truncated" in str(error) else CORRUPT_IMAGE
        raise RecordError(reason, f"{reason.replace('_', ' ')}: {name} ({error})") from None
    if width <= 0 or height <= 0:
        raise RecordError(CORRUPT_IMAGE, f"image has no pixels: {name}")
    return image_format


def check_text(record: dict) -> None:
    """Raise RecordError if a text field of `record` holds bytes that were not valid UTF-8."""
    for name, value in record.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    raise RecordError(NON_UTF8_TEXT, f"field {name!r} is not valid UTF-8: '{shown[:80]}'") from None


def _has_end_marker(path: str, image_format: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return _tail_has_end_marker(f.read(), image_format)


def _tail_has_end_marker(tail: bytes, image_format: str) -> bool:
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b"\x3b"}.get(image_format)
    if marker is None:  # other formats have no cheap end check
        return True
    if image_format == "GIF":
        return tail.rstrip(b"\x00").endswith(marker)
    return marker in tail


# --- streaming JSON -------------------------------------------------------------------------

_WHITESPACE = " \t\n\r"


class _JsonStream:
    """A buffered cursor over a JSON text that decodes one value at a time."""

    def __init__(self, f, chunk_size):
        self.f, self.chunk_size = f, chunk_size
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(self.chunk_size)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-whitespace character ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            raise ValueError(f"malformed JSON: expected one of {chars!r} at offset ~{self.pos}, found {char!r}")
        self.pos += 1
        return char

    def value(self):
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self._fill():
                    continue
                raise
            if end == len(self.buf) and self._fill():  # a number may continue in the next chunk
                continue
            self.pos = end
            return value


def iter_jsonl(path):
    """Yield (line number, decoded value or the JSONDecodeError) for each non-empty line, so one
    bad line becomes one bad record rather than a failed build."""
    with open(path, encoding="utf-8", errors=TEXT_ERRORS) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, error


def iter_json_array(path: str, key: str | None = None, chunk_size: int = 1 << 20):
    """Yield the items of a JSON array one by one without loading the whole file.

    `key=None`: the file is a top-level array. `key="questions"`: the file is an object and the
    array is its value under `key` (other top-level values are decoded and discarded).
    Memory is one chunk plus one item, so multi-GB files (BLIP CapFilt's 14M pairs) stream.
    """
    with open(path, encoding="utf-8", errors=TEXT_ERRORS) as f:
        stream = _JsonStream(f, chunk_size)
        if key is not None:
            stream.expect("{")
            while True:
                if stream.peek() == "}":
                    raise KeyError(f"{path}: no top-level key {key!r}")
                name = stream.value()
                stream.expect(":")
                if name == key:
                    break
                stream.value()
                if stream.expect(",}") == "}":
                    raise KeyError(f"{path}: no top-level key {key!r}")
        stream.expect("[")
        if stream.peek() == "]":
            return
        while True:
            yield stream.value()
            if stream.expect(",]") == "]":
                return


def load_json(path: str):
    """The whole JSON file (for files that are small or must be indexed, e.g. annotations)."""
    with open(path, encoding="utf-8", errors=TEXT_ERRORS) as f:
        return json.load(f)


# --- the builder ----------------------------------------------------------------------------


def _code_hash(cls) -> str:
    """Hash of every module of this package, so any code change invalidates cached builds. Builders
    share code through subclasses and helpers in other modules (MSRVTT-QA subclasses MSVD-QA,
    ScienceQA uses IconQA's parsing): hashing only the builder's own module left stale caches."""
    digest = hashlib.sha256()
    package = Path(inspect.getsourcefile(_code_hash)).parent
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


ANNOTATION_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".txt", ".parquet", ".xml", ".yaml", ".yml")


def _raw_files_fingerprint(data_dir: str | None, depth: int = 2) -> str:
    """(path, size, mtime) of the annotation files in `data_dir` and its subfolders down to `depth`:
    `datasets` keys a cache by the builder config (the folder's *name*), so without this a release
    re-downloaded or rewritten in place (a sample corpus of another size) was read from the stale
    cache. Media files are not looked at: records name them, they do not define them."""
    if not data_dir or not os.path.isdir(data_dir):
        return ""
    digest = hashlib.sha256()
    folders = [(data_dir, 0)]
    while folders:
        folder, level = folders.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir() and level + 1 < depth:
                    folders.append((entry.path, level + 1))
                elif entry.name.lower().endswith(ANNOTATION_SUFFIXES) and entry.is_file():
                    stat = entry.stat()
                    digest.update(f"{os.path.relpath(entry.path, data_dir)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def registry_entry(name: str):
    """`DATASETS[name]`, the registry's entry (module, role, task) for a builder's DATASET_NAME."""
    from . import DATASETS  # the package's __init__ imports this module, so the registry is read late

    if name not in DATASETS:
        raise KeyError(
            f"builder {name!r} is not in dataset_builders.DATASETS, which states every dataset's role and task; "
            "add it there (a builder outside the registry, such as user_files.UserData, defines `role` and `task` itself)"
        )
    return DATASETS[name]


class InstructBuilder(datasets.GeneratorBasedBuilder):
    """Base of every builder. Subclasses set the class attributes below and write
    `_split_generators`, `_iter_raw` and `_records` (see the module docstring)."""

    BUILDER_CONFIG_CLASS = InstructConfig
    # datasets writes image datasets in batches of 100 rows; images here are paths, so use big batches
    DEFAULT_WRITER_BATCH_SIZE = 10_000
    # its key in the registry (dataset_builders.DATASETS, which alone states its role and task); also the
    # records' `dataset` and the cache folder name
    DATASET_NAME: str = ""
    TEMPLATE_FAMILY: str = ZERO_SHOT  # family drawn by `make` when no instruction is given
    HOMEPAGE: str = ""
    CITATION: str = ""
    FILES: dict = {}  # {relative path under data_dir: official download URL}

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("dataset_name", self.DATASET_NAME)
        kwargs.setdefault("hash", _code_hash(type(self)) + _raw_files_fingerprint(kwargs.get("data_dir")))
        super().__init__(*args, **kwargs)
        self.error_reports: dict[str, ErrorReport] = {}
        self._image_status: dict[str, RecordError | None] = {}

    @property
    def role(self) -> str:
        """schema.HELD_IN or schema.HELD_OUT, as the registry states it."""
        return registry_entry(self.DATASET_NAME).role

    @property
    def task(self) -> str:
        """The task category (Dai et al. 2023, Figure 2), as the registry states it."""
        return registry_entry(self.DATASET_NAME).task

    def _info(self):
        description = f"{self.DATASET_NAME} ({self.role}, {self.task}). {inspect.getdoc(type(self)) or ''}"
        return datasets.DatasetInfo(
            description=description, features=FEATURES, homepage=self.HOMEPAGE, citation=self.CITATION
        )

    # -- helpers for subclasses --

    def require_files(self, files: dict | None = None) -> dict:
        """`require_files(self.config.data_dir, files or self.FILES)`; {relative: absolute path}."""
        return require_files(self.config.data_dir, self.FILES if files is None else files, self.DATASET_NAME)

    def path(self, *parts) -> str:
        """Absolute path of `parts` under data_dir."""
        return os.path.join(os.path.abspath(self.config.data_dir), *parts)

    def wanted_splits(self, available) -> list[str]:
        """The splits to build: `config.split` if set (checked against `available`), else all."""
        if self.config.split is None:
            return list(available)
        if self.config.split not in available:
            raise ValueError(f"{self.DATASET_NAME} has splits {list(available)}, not {self.config.split!r}")
        return [self.config.split]

    def split_generator(self, split: str, **gen_kwargs) -> datasets.SplitGenerator:
        """A SplitGenerator whose gen_kwargs also carry the split name."""
        return datasets.SplitGenerator(name=split, gen_kwargs={"split": split, **gen_kwargs})

    def make(self, split: str, **fields) -> dict:
        """`make_record` with dataset, task, role and split filled in. Unless `instruction` is given,
        a template of `template_family` (default TEMPLATE_FAMILY) is drawn with the example's rng and
        filled from question/answer/choices/ocr_tokens."""
        family = fields.setdefault("template_family", self.TEMPLATE_FAMILY)
        if family not in TEMPLATE_FAMILIES:
            raise ValueError(f"unknown template family {family!r}")
        if "instruction" not in fields and family in TEMPLATES:
            rng = example_rng(self.config.seed, self.DATASET_NAME, str(fields["id"]))
            template_id = draw_template_id(family, rng)
            fields["template_id"] = template_id
            fields["instruction"] = fill_template(
                family,
                template_id,
                question=fields.get("question", ""),
                answer=fields.get("answer", ""),
                choices=fields.get("choices", ()),
                ocr_tokens=fields.get("ocr_tokens", ()),
            )
        return make_record(dataset=self.DATASET_NAME, task=self.task, role=self.role, split=split, **fields)

    def check_image(self, path: str) -> None:
        """`check_image` with the config's mode, cached per path (bounded)."""
        if path in self._image_status:
            status = self._image_status[path]
        else:
            try:
                check_image(path, self.config.image_check)
                status = None
            except RecordError as error:
                status = error
            if len(self._image_status) >= 100_000:
                self._image_status.clear()
            self._image_status[path] = status
        if status is not None:
            raise status

    # -- the loop --

    def _iter_raw(self, split: str, **gen_kwargs):
        """Yield (source_file, record_ref, raw_item) for one split."""
        raise NotImplementedError

    def _records(self, raw, split: str):
        """Return the record (or list of records) built from one raw item; raise RecordError
        (or let KeyError/TypeError/ValueError escape) for a malformed item."""
        raise NotImplementedError

    def _raw_items(self, split: str, gen_kwargs: dict):
        """`_iter_raw`, with a raw file that breaks the iteration itself (an annotations file that is
        not a list of objects, an unhashable id used as an index key) turned into a RecordError naming
        the last record read: no record after it can be read, so no policy can skip it."""
        items, where = self._iter_raw(split=split, **gen_kwargs), "before the first record"
        while True:
            try:
                source, ref, raw = next(items)
            except StopIteration:
                return
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                message = f"{self.DATASET_NAME}/{split}: malformed raw file, stopped {where}"
                raise RecordError(MALFORMED_RECORD, f"{message}: {type(error).__name__}: {error}") from error
            where = f"after {source}, record {ref}"
            yield source, ref, raw

    def _generate_examples(self, split: str, **gen_kwargs):
        report = ErrorReport(self.DATASET_NAME, split)
        self.error_reports[split] = report
        index = 0
        for source, ref, raw in self._raw_items(split, gen_kwargs):
            report.files[str(source)] += 1
            try:
                try:
                    records = self._records(raw, split)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                    raise RecordError(MALFORMED_RECORD, f"{type(error).__name__}: {error}") from None
                if records is None:
                    continue
                if isinstance(records, dict):
                    records = [records]
                for record in records:
                    check_text(record)
                    if isinstance(record["image"], str):
                        self.check_image(record["image"])
                    for frame in record["frames"]:
                        if isinstance(frame, str):
                            self.check_image(frame)
            except RecordError as error:
                located = RecordError(error.reason, f"{source}, record {ref}: {error.message}")
                if self.config.errors == "fail":
                    raise located from None
                report.add(located)
                continue
            for record in records:
                report.num_records += 1
                yield Key(0, index), record
                index += 1
        if report.num_skipped:
            logger.warning("skipped records: %s", report)

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        reports = {split: report.to_dict() for split, report in self.error_reports.items()}
        with open(os.path.join(self._output_dir, ERROR_REPORT_FILENAME), "w") as f:
            json.dump(reports, f, indent=1)

    def read_error_reports(self) -> dict:
        """The error reports of the prepared (possibly cached) build: {split: report dict}."""
        path = os.path.join(self.cache_dir, ERROR_REPORT_FILENAME)
        if not os.path.exists(path):
            return {split: report.to_dict() for split, report in self.error_reports.items()}
        with open(path) as f:
            return json.load(f)
