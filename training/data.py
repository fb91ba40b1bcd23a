"""Training and validation data for instruction tuning: the held-in mixture, per-draw instruction
templates, image decoding that counts bad records instead of crashing, and the collator that turns
records into the processor's masked training batch.

Randomness is a pure function of (seed, epoch, position), never of worker ids or process state:
the template drawn for a record and its random crop/flip are the same whichever dataloader worker
or rank reads it, and a resumed run sees exactly what an uninterrupted one would have.
This module must not know any source format (the builders do) or touch the model.
"""

import dataclasses
import hashlib
import io
import logging
import math
import random
import types

import datasets
import numpy as np
import PIL.Image
import torch

from dataset_builders import DATASETS, load
from dataset_builders.mixture import build_mixture
from dataset_builders.user_files import USER_TASK, check_unique_names, load_source
from dataset_builders.schema import HELD_IN, VQA, VQA_MULTIPLE_CHOICE
from dataset_builders.templates import redraw_instruction
from metrics.vqa_accuracy.vqa_accuracy import normalize_vqa_answer
from training.randaugment import random_augment

logger = logging.getLogger(__name__)

# Why a record read at training time was replaced by the next one (builders count the rest).
UNREADABLE_IMAGE = "unreadable_image"
NO_IMAGE = "no_image"

VALIDATION_SPLIT = "validation"


def draw_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one draw of one record (its template and its crop/flip)."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{position}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _undecoded(dataset):
    """`dataset` with images left as {"path", "bytes"}: they are opened here, where a bad file can be
    counted, instead of inside `datasets` where it would end the run."""
    features = dataset.features.copy()
    features["image"] = datasets.Image(decode=False)
    features["frames"] = datasets.List(datasets.Image(decode=False))
    return dataset.cast(features)


def open_image(image) -> PIL.Image.Image:
    """{"path", "bytes"} -> a fully decoded PIL image (truncated or corrupt files raise OSError)."""
    if image is None:
        raise ValueError(NO_IMAGE)
    source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    with PIL.Image.open(source) as opened:
        opened.load()
        return opened.copy()


def prepare_sample(record: dict, seed: int, epoch: int, position: int, train: bool, feature_cache=None) -> dict:
    """A record -> what the collator needs; a training sample gets a freshly drawn template. With a
    `feature_cache` (training.feature_cache.VisionFeatureCache) the sample carries the image's frozen
    tower features instead of the decoded image. Raises OSError/ValueError when the record's image
    cannot be read (or was not cached: the fill pass could not read it either)."""
    draw = draw_seed(seed, epoch, position)
    if train:
        record = redraw_instruction(record, random.Random(draw))
    if feature_cache is not None:
        visual = {"vision_features": feature_cache.load_image(record["image"])}
    elif record["image"] is None and record["frames"]:  # a video: its frames, decoded
        visual = {"frames": [open_image(frame) for frame in record["frames"]]}
    else:
        visual = {"image": open_image(record["image"])}
    return {
        **visual,
        "instruction": record["instruction"],
        "target": record["target"],
        "seed": draw,
        "train": train,
        "skipped": 0,
    }


def _skip_reason(error: Exception) -> str:
    return NO_IMAGE if str(error) == NO_IMAGE else UNREADABLE_IMAGE


class InstructionDataset(torch.utils.data.Dataset):
    """A map-style `datasets.Dataset` of records -> samples for the collator.

    With `train=True` each read re-draws the record's instruction template from
    (seed, epoch, index), so a record shows a new template every epoch (the Trainer calls
    `set_epoch`) and repeats of a record within an epoch differ too. A record whose image cannot be
    read is replaced by the next readable one, and the sample's `skipped` is 1: summed over an
    epoch, the number of unreadable records.
    """

    def __init__(self, dataset: datasets.Dataset, seed: int = 0, train: bool = True, max_skips: int = 100,
                 feature_cache=None):
        self.dataset = _undecoded(dataset)
        self.seed = seed
        self.train = train
        self.epoch = 0
        self.max_skips = max_skips
        self.feature_cache = feature_cache  # frozen-tower features instead of decoded images

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        for offset in range(self.max_skips + 1):
            position = (index + offset) % len(self.dataset)
            try:
                sample = prepare_sample(
                    self.dataset[position], self.seed, self.epoch, index, train=self.train,
                    feature_cache=self.feature_cache,
                )
            except (OSError, ValueError, SyntaxError) as error:
                logger.warning("record %d: %s (%s); using the next one", position, _skip_reason(error), error)
                continue
            sample["skipped"] = int(offset > 0)  # this index's own record was replaced: counted once
            return sample
        raise RuntimeError(f"{self.max_skips + 1} records in a row from index {index} are unreadable")


class InstructionStream(torch.utils.data.IterableDataset):
    """A streaming `datasets.IterableDataset` of records -> pending samples, for `max_steps` training.

    Every dataloader worker reads the stream and keeps every `num_workers`-th block of `block_size`
    records (the mixture is usually one shard, which `datasets` would give to a single worker). A
    block is one global batch (per-device batch x processes): the DataLoader takes batch g from worker
    g % num_workers, so the batches, not only the records, are those of a run without workers.
    Positions in the stream seed the template and crop draws, and the Trainer's batch skipping on
    resume reproduces the stream.

    It yields records still undecoded (`PendingSample`): the collator prepares them. Under several
    ranks accelerate hands each rank its slice of the stream's batches, so a rank decodes its own
    images only, not everyone's. Unreadable records are dropped by the collator and counted in the
    batch's `num_skipped_records`.
    """

    def __init__(self, dataset: datasets.IterableDataset, seed: int = 0, train: bool = True, read_batch: int = 64,
                 feature_cache=None, block_size: int = 1):
        self.dataset = _undecoded(dataset)
        self.block_size = block_size
        self.seed = seed
        self.train = train
        self.epoch = 0
        self.read_batch = read_batch
        self.feature_cache = feature_cache  # frozen-tower features instead of decoded images

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def _records(self):
        # `.iter` is the public way to read without `datasets` sharding the stream per worker itself
        for batch in self.dataset.iter(batch_size=self.read_batch):
            keys = list(batch)
            for values in zip(*(batch[key] for key in keys)):
                yield dict(zip(keys, values))

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for position, record in enumerate(self._records()):
            if (position // self.block_size) % num_workers == worker_id:
                yield PendingSample(record, self.seed, self.epoch, position, self.train, self.feature_cache)


@dataclasses.dataclass(frozen=True)
class PendingSample:
    """A stream record not yet prepared (`prepare_sample`: template draw, image decoding), with what
    its draws depend on; `InstructBlipCollator` prepares it, on the rank that trains on it."""

    record: dict
    seed: int
    epoch: int
    position: int
    train: bool
    feature_cache: object = None

    def prepare(self) -> dict:
        return prepare_sample(self.record, self.seed, self.epoch, self.position, train=self.train,
                              feature_cache=self.feature_cache)


def prepare_pending(samples: list[dict]) -> list[dict]:
    """Prepare a batch's `PendingSample`s (others pass through). Unreadable records are dropped, each
    counted in the `skipped` of the batch's first sample; a batch with none readable raises."""
    ready, skipped = [], 0
    for sample in samples:
        if not isinstance(sample, PendingSample):
            ready.append(sample)
            continue
        try:
            ready.append(sample.prepare())
        except (OSError, ValueError, SyntaxError) as error:
            skipped += 1
            logger.warning("stream position %d: %s (%s); dropped", sample.position, _skip_reason(error), error)
    if not ready:
        positions = [s.position for s in samples if isinstance(s, PendingSample)]
        raise RuntimeError(
            f"none of the {len(samples)} records of a batch (stream positions {positions}) has a readable image; "
            "check the datasets' image folders"
        )
    if skipped:
        ready[0] = dict(ready[0], skipped=ready[0]["skipped"] + skipped)
    return ready


# The paper's train transform (LAVIS's blip2_image_train): RandomResizedCrop with area 0.5-1 of the image and
# torchvision's default aspect ratios, resized to the image processor's size, then a horizontal flip half the time.
CROP_SCALE, CROP_RATIO, FLIP_PROBABILITY = (0.5, 1.0), (3 / 4, 4 / 3), 0.5


def random_resized_crop_box(width: int, height: int, scale, ratio, rng: np.random.Generator):
    """torchvision's `RandomResizedCrop.get_params`, drawn from a numpy Generator: 10 tries at a box with a random
    area fraction in `scale` and a log-uniform aspect ratio in `ratio`, else the largest centred box within `ratio`.
    Returns a PIL box (left, top, right, bottom)."""
    area, log_ratio = width * height, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w, h = int(round(math.sqrt(target_area * aspect_ratio))), int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    if width / height < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif width / height > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


class InstructBlipCollator:
    """Samples -> the processor's batch: `pixel_values`, Q-Former and LLM ids with the paper's
    label masking, plus `num_skipped_records` ([batch], unreadable records each sample stands in for), which the
    Trainer removes before the forward pass.

    Training samples get the paper's train transform (the image processor's RandomResizedCrop
    0.5-1 + flip), each drawn from its own seed: a sample's view does not depend on which worker,
    rank or batch it lands in, so 2 x 2 accumulated equals one batch of 4. Validation samples get
    the eval transform. The dataset marks which is which, so one collator serves both.
    `augment=False` gives training samples the eval transform too; `randaugment=True` adds RandAugment
    after the crop and flip (LAVIS's `blip_image_train`, the FlanT5 models' recipe). Samples that carry cached
    `vision_features` (a feature-cached dataset) become batches with `vision_features` instead of
    `pixel_values`. `pack=True` (decoder-only) returns `pack_batch`'s one-row batches.
    """

    def __init__(self, processor, max_length: int | None = None, augment: bool = True, pack: bool = False,
                 randaugment: bool = False):
        if processor.is_encoder_decoder is None:
            raise ValueError("the processor must know its LLM kind: set processor.is_encoder_decoder")
        if pack and processor.is_encoder_decoder:
            raise ValueError("packing concatenates samples for a decoder-only LLM; this processor is for an encoder-decoder one")
        self.processor = processor
        self.max_length = max_length
        self.augment = augment
        self.pack = pack
        self.randaugment = randaugment

    def __call__(self, samples: list[dict]) -> dict:
        return self.collate(prepare_pending(samples))

    def collate(self, samples: list[dict]) -> dict:
        """Prepared samples (`prepare_sample`'s) -> the batch."""
        train = all(s["train"] for s in samples)
        if all("vision_features" in s for s in samples):
            visual = {"vision_features": [s["vision_features"] for s in samples]}
        else:
            augment = train and self.augment

            def view(image, seed):  # train views are already cropped to size: the eval path only normalises them
                return self.train_view(image, seed) if augment else image

            if any("frames" in s for s in samples):
                # videos (user data): one crop and flip per video; an image beside them in the batch is shown
                # as a still clip of as many frames, since a batch holds one number of frames per sample
                length = max(len(s["frames"]) for s in samples if "frames" in s)
                visual = {"videos": [[view(frame, s["seed"]) for frame in s["frames"]] if "frames" in s
                                     else [view(s["image"], s["seed"])] * length for s in samples]}
            else:
                visual = {"images": [view(s["image"], s["seed"]) for s in samples]}
        batch = self.processor(
            **visual,
            text=[s["instruction"] for s in samples],
            targets=[s["target"] for s in samples],
            max_length=self.max_length,
            return_tensors="pt",
        )
        batch = dict(batch)
        if self.pack:
            batch = pack_batch(batch)
        batch["num_skipped_records"] = torch.tensor([s["skipped"] for s in samples], dtype=torch.long)
        return batch


    def train_view(self, image, seed: int) -> np.ndarray:
        """One image's random crop + flip (uint8 [H, W, 3] at the image processor's size and with its RGB
        conversion and resampling), drawn from its seed (box, then flip); then, with `randaugment`, the
        FlanT5 models' RandAugment (training.randaugment) from the same generator."""
        image_processor = self.processor.image_processor
        rgb = PIL.Image.fromarray(image_processor.convert_to_rgb(image))
        rng = np.random.default_rng(seed)
        box = random_resized_crop_box(rgb.width, rgb.height, CROP_SCALE, CROP_RATIO, rng)
        flip = bool(rng.random() < FLIP_PROBABILITY)
        size = (image_processor.size["width"], image_processor.size["height"])
        view = np.asarray(rgb.crop(box).resize(size, resample=image_processor.resample))
        view = view[:, ::-1] if flip else view
        return random_augment(np.ascontiguousarray(view), rng) if self.randaugment else view


def pack_batch(batch: dict) -> dict:
    """A padded decoder-only batch -> one row holding every sample's real tokens back to back, with
    `position_ids` restarting at 0 for each sample and no attention mask: the LLM computes no padding,
    and transformers keeps the samples apart (block-diagonal causal attention, or varlen flash
    attention). The first label of every sample is -100 (its first token is an image placeholder),
    so no sample is trained to predict the next one's start. Images and Q-Former inputs stay per sample."""
    real = batch.pop("attention_mask").bool()
    lengths = real.sum(1)
    packed = dict(batch)
    packed["input_ids"] = batch["input_ids"][real][None]
    if "labels" in batch:
        if bool((batch["labels"][:, :1] != -100).any()):
            raise ValueError("packing needs each sample's first label to be -100 (unsupervised)")
        packed["labels"] = batch["labels"][real][None]
    packed["position_ids"] = torch.cat([torch.arange(int(n)) for n in lengths])[None]
    return packed


# ---------------------------------------------------------------------------------------------
# Building the training mixture and the held-in validation set
# ---------------------------------------------------------------------------------------------


def check_held_in(names, allow_held_out: bool = False):
    """Raise for names that are not held-in datasets (training on held-out data breaks zero-shot), unless
    `allow_held_out` (downstream fine-tuning, the paper's Table 3: the model is no longer zero-shot on them)."""
    for name in names:
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        if DATASETS[name].role != HELD_IN and not allow_held_out:
            raise ValueError(
                f"{name} is a held-out dataset: instruction tuning must not train on it (the zero-shot evaluation "
                "needs it unseen). To fine-tune on it downstream (the paper's Table 3), pass --finetune_on_held_out true: "
                "the saved model then records it and is reported as fine-tuned, not zero-shot, on it"
            )


def check_source_names(data_dirs, user_sources, allow_held_out: bool = False) -> None:
    """Raise for a user source named like a `data_dirs` dataset or another source, or (unless
    `allow_held_out`) named after a held-out dataset of the registry (e.g. The Cauldron's `vsr` config)."""
    # a data_dirs dataset is a source too: the user's own sources must not share its name or each other's
    registry_sources = [types.SimpleNamespace(name=name, origin=f"data_dirs {name}") for name in data_dirs]
    check_unique_names([*registry_sources, *user_sources], "training data")
    for source in user_sources:
        if source.name in DATASETS:
            check_held_in([source.name], allow_held_out=allow_held_out)


def _user_report(source, report):
    """A user source's build report, with where it came from; raises when every record was rejected."""
    if report is None:  # streaming: nothing is built up front
        return None
    report = {**report, "source": source.origin}
    if report["num_records"] == 0:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(report["counts"].items())) or "it holds none"
        examples = [message for messages in report["examples"].values() for message in messages[:1]]
        raise ValueError(
            f"{source.name} ({source.origin}): no usable record ({reasons})"
            + (f"; e.g. {examples[0]}" if examples else "")
        )
    return report


def load_training_mixture(
    data_dirs: dict,
    *,
    user_sources=(),
    multipliers: dict | None = None,
    sizes: dict | None = None,
    streaming: bool = False,
    stopping_strategy: str = "all_exhausted",
    seed: int = 0,
    cache_dir: str | None = None,
    errors: str = "skip",
    image_check: str = "header",
    sampling: str = "sqrt",
    allow_held_out: bool = False,
):
    """The square-root-balanced mixture (`sampling`: "sqrt", "size" or "uniform", see build_mixture) of the
    held-in datasets in `data_dirs` ({name: raw folder}) and the user's own `user_sources`
    (dataset_builders.user_files.UserSource, train split: files and Hub datasets, each a source by its name).

    Returns (mixture, proportions, error_reports): `error_reports` maps each dataset to its build
    report (records kept, skipped by reason; a user source's also names its `source`), None when
    streaming (nothing is built up front).
    """
    check_held_in(data_dirs, allow_held_out=allow_held_out)
    check_source_names(data_dirs, user_sources, allow_held_out=allow_held_out)
    if not data_dirs and not user_sources:
        raise ValueError("no training data: give data_dirs, a sample corpus, train files or a Hub dataset")
    sources, reports = {}, {}
    options = dict(cache_dir=cache_dir, streaming=streaming, return_report=True, errors=errors, seed=seed,
                   image_check=image_check)
    for name, data_dir in data_dirs.items():
        sources[name], reports[name] = load(name, data_dir, "train", **options)
    for source in user_sources:
        dataset, report = load_source(source, **options)
        sources[source.name], reports[source.name] = dataset, _user_report(source, report)
    mixture, proportions = build_mixture(
        sources, multipliers=multipliers, sizes=sizes, seed=seed, stopping_strategy=stopping_strategy,
        return_proportions=True, sampling=sampling,
    )
    return mixture, proportions, reports


def load_validation_set(
    data_dirs: dict,
    *,
    user_sources=(),
    max_samples_per_dataset: int | None = None,
    cache_dir: str | None = None,
    errors: str = "skip",
    image_check: str = "header",
    return_reports: bool = False,
):
    """The held-in datasets' validation splits (those that have one) and the user's validation sources
    (files, Hub validation splits), each cut to `max_samples_per_dataset`, concatenated; None when
    there is none. `return_reports=True` returns (dataset, {name: build report}) instead."""
    parts, reports = [], {}

    def add(name, dataset, report):
        if max_samples_per_dataset is not None:
            dataset = dataset.select(range(min(max_samples_per_dataset, len(dataset))))
        if len(dataset):
            parts.append(dataset)
        reports[name] = report

    options = dict(cache_dir=cache_dir, errors=errors, image_check=image_check, return_report=True)
    for name, data_dir in data_dirs.items():
        try:
            dataset, report = load(name, data_dir, VALIDATION_SPLIT, **options)
        except (ValueError, KeyError, FileNotFoundError) as error:
            logger.warning("%s: no validation split used (%s)", name, error)
            continue
        add(name, dataset, report)
    check_source_names({}, user_sources)
    for source in user_sources:
        try:
            dataset, report = load_source(source, **options)
        except ValueError as error:  # e.g. a Hub dataset without this split
            if source.config.get("data_file"):
                raise
            logger.warning("%s: no validation split used (%s)", source.origin, error)
            continue
        add(source.name, dataset, _user_report(source, report))
    validation = datasets.concatenate_datasets(parts) if parts else None
    return (validation, reports) if return_reports else validation


# ---------------------------------------------------------------------------------------------
# A short-answer accuracy for held-in validation during training
# ---------------------------------------------------------------------------------------------


def is_short_answer_record(record: dict) -> bool:
    if record["task"] == USER_TASK:  # the user's own data: an image question answered in at most three words
        return record["image"] is not None and 0 < len(record["target"].split()) <= 3
    return record["template_family"] in (VQA, VQA_MULTIPLE_CHOICE) and bool(record["answers"] or record["target"])


def answer_matches(prediction: str | None, record: dict) -> bool:
    """Whether `prediction` equals one of the record's reference answers, both normalised as the official
    VQA evaluation does (`metrics.vqa_accuracy`: punctuation, number words, articles, contractions)."""
    if prediction is None:
        return False
    references = {normalize_vqa_answer(a) for a in (record["answers"] or [record["target"]])}
    return normalize_vqa_answer(prediction) in references


def answer_accuracy(predictions: list[str], records: list[dict]) -> float:
    """Fraction of predictions equal (normalised) to one of the record's reference answers."""
    return sum(answer_matches(p, r) for p, r in zip(predictions, records)) / max(len(records), 1)
