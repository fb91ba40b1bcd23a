"""Instruction-tune InstructBLIP on the held-in mixture with the Hugging Face `Trainer`.

    accelerate launch train.py configs/demo.yaml                    # a few minutes on a CPU
    accelerate launch train.py configs/vicuna-7b.yaml --max_steps 100 --output_dir out/
    accelerate launch --config_file configs/accelerate/fsdp.yaml train.py configs/flan-t5-xxl.yaml

Arguments come from a YAML file (first argument) and/or the command line, which overrides it; see
`ModelArguments`, `DataArguments` and `InstructBlipTrainingArguments` (the Trainer's own arguments
plus `warmup_start_lr`). The run leaves a Hub-ready folder in `output_dir`: safetensors, remote
code, processor, the paper's generation config, a model card, a loss curve and TensorBoard logs.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402
from transformers import HfArgumentParser, TrainingArguments, set_seed  # noqa: E402
from transformers.integrations import is_tensorboard_available  # noqa: E402

from dataset_builders import DATASETS  # noqa: E402
from dataset_builders.sample_data import write_sample_corpus  # noqa: E402
from dataset_builders.mixture import SAMPLINGS  # noqa: E402
from dataset_builders.user_files import file_sources, hub_sources  # noqa: E402
from modeling_instructblip import InstructBlipProcessor, paper_generation_config  # noqa: E402
from training import blip2, modeling  # noqa: E402
from training.data import (  # noqa: E402
    InstructBlipCollator,
    InstructionDataset,
    InstructionStream,
    is_short_answer_record,
    load_training_mixture,
    load_validation_set,
)
from publish.model_card import write_model_card  # noqa: E402
from publish import publish_model  # noqa: E402
from training.feature_cache import VisionFeatureCache, dataset_images  # noqa: E402
from training.report import LOSS_CURVE_FILENAME, plot_loss_curve  # noqa: E402
from training.trainer import GenerationEval, InstructBlipTrainer  # noqa: E402

logger = logging.getLogger("train")


@dataclass
class ModelArguments:
    """Where training starts: one of `model_name_or_path` (an InstructBLIP, or a BLIP-2 as the paper), the three
    parts, or `tiny_text_model`."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "InstructBLIP checkpoint (folder or Hub id, ours or transformers' format), or BLIP-2: "
                          "transformers' blip-2 folder / Hub id (Salesforce/blip2-flan-t5-xl) or LAVIS's .pth (path or "
                          "URL; stage 1 blip2_pretrained.pth or stage 2, with language_model)"},
    )
    blip2_stage1: str | None = field(
        default=None,
        metadata={"help": "BLIP-2 start: LAVIS's stage-1 blip2_pretrained.pth (path or URL) for the Q-Former's text parts "
                          "a stage-2 BLIP-2 lacks (default: from qformer_model)"},
    )
    vision_model: str | None = field(
        default=None,
        metadata={"help": "compose a new model: vision tower (InstructBLIP checkpoint, CLIP or SigLIP); LAVIS BLIP-2 .pth "
                          "start: EVA ViT-g's eva_vit_g.pth (path or URL) when the file holds no vision tower"},
    )
    qformer_model: str | None = field(
        default=None,
        metadata={"help": "compose: BERT checkpoint for the Q-Former; BLIP-2 start: the Q-Former's tokenizer and, "
                          "without blip2_stage1, its text parts (default bert-base-uncased)"},
    )
    language_model: str | None = field(
        default=None, metadata={"help": "compose: the LLM (causal or seq2seq); LAVIS BLIP-2 .pth start: the LLM"}
    )
    num_query_tokens: int | None = field(
        default=None, metadata={"help": "compose: query tokens (default 32, the paper's); a BLIP-2 start: checked against its"}
    )
    tiny_text_model: str | None = field(
        default=None, metadata={"help": "build a tiny random model from scratch around this LLM type (llama, t5)"}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "tiny model: config changes, e.g. 'qformer_config.hidden_dropout_prob=0'"}
    )
    dtype: str | None = field(default=None, metadata={"help": "load dtype of checkpoints/parts (float32 default)"})
    frozen_dtype: str | None = field(
        default=None, metadata={"help": "cast the frozen vision tower and LLM to this dtype (bfloat16, float16)"}
    )
    train_language_model: bool = field(
        default=False, metadata={"help": "train the whole LLM too (the paper freezes it; for tiny from-scratch LLMs)"}
    )
    train_vision_model: bool = field(
        default=False, metadata={"help": "train the vision tower too (the paper freezes it; for tiny from-scratch towers)"}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the LLM (0: no LoRA)"})
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str = field(default=modeling.LORA_TARGET_MODULES, metadata={"help": "regex, full match"})
    lora_merge: bool = field(
        default=False, metadata={"help": "save LoRA merged into the LLM (default: base model + lora_adapter/)"}
    )
    trust_remote_code: bool = field(default=False)
    instruction_aware: bool | None = field(
        default=None,
        metadata={"help": "false: the Q-Former sees the queries only, not the instruction (the paper's ablation "
                          "'w/o instruction-aware visual features'); stored in the saved config. Default: as the "
                          "starting checkpoint (true for a new model)"},
    )

    def __post_init__(self):
        for name in ("blip2_stage1", "vision_model", "qformer_model", "language_model"):
            if getattr(self, name) in ("", "none", "null", "None"):  # unsets what a config file gives
                setattr(self, name, None)
        parts = (self.vision_model, self.qformer_model, self.language_model)
        # with model_name_or_path, the parts may complete a BLIP-2 start (checked when it is read)
        choices = [self.model_name_or_path is not None, any(parts) and self.model_name_or_path is None,
                   self.tiny_text_model is not None]
        if sum(choices) != 1:
            raise ValueError("give one of model_name_or_path, (vision_model, qformer_model, language_model), tiny_text_model")
        if self.model_name_or_path is None and any(parts) and not all(parts):
            raise ValueError("composing a model needs vision_model, qformer_model and language_model")
        if self.blip2_stage1 is not None and self.model_name_or_path is None:
            raise ValueError("blip2_stage1 completes a BLIP-2 start: it needs model_name_or_path (a BLIP-2 checkpoint)")
        if self.lora_r and self.train_language_model:
            raise ValueError("lora_r and train_language_model exclude each other")


@dataclass
class DataArguments:
    """The training mixture (held-in datasets and your own data) and its validation set."""

    data_dirs: dict | str | None = field(
        default=None, metadata={"help": "held-in datasets to train on: JSON/YAML {name: raw release folder}"}
    )
    train_file: list[str] | None = field(
        default=None,
        metadata={"help": "your own training data: JSON, JSONL, CSV or Parquet files, one record per sample "
                          "({image, instruction, answer}, LLaVA's {image, conversations} or {video: [frames]}); "
                          "each file is a source of the mixture named by its stem"},
    )
    validation_file: list[str] | None = field(default=None, metadata={"help": "your own validation data, same formats"})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "a Hub dataset (or a local dataset folder) to train on: the Parquet instruction data "
                          "`python -m publish dataset` writes, The Cauldron's layout, LLaVA's, or any with "
                          "--image_column/--instruction_column/--answer_column"},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "its configs, comma-separated (default: all), each a source named by the config"}
    )
    dataset_split: str = field(default="train", metadata={"help": "the Hub dataset's split to train on"})
    dataset_validation_split: str | None = field(
        default="validation", metadata={"help": "its split for validation, used when it has one ('none': no split)"}
    )
    dataset_revision: str | None = field(default=None, metadata={"help": "the Hub dataset's branch, tag or commit"})
    image_column: str = field(default="image", metadata={"help": "your data's image column (files and Hub datasets)"})
    instruction_column: str = field(default="instruction", metadata={"help": "your data's instruction column"})
    answer_column: str = field(default="answer", metadata={"help": "your data's answer column"})
    sample_corpus_dir: str | None = field(
        default=None, metadata={"help": "write the bundled synthetic sample corpus here and train on its held-in part"}
    )
    sample_corpus_images: int = field(
        default=48, metadata={"help": "images in the sample corpus (2/3 train, 1/3 validation; GQA a third as many)"}
    )
    multipliers: dict | str | None = field(
        default=None, metadata={"help": "{name: factor} on sqrt(size), e.g. {okvqa: 2.0, aokvqa: 0.5}"}
    )
    sampling: str = field(
        default="sqrt",
        metadata={"help": "mixture weighting: sqrt (the paper's balancing), size (no balancing: as concatenated) or uniform"},
    )
    dataset_sizes: dict | str | None = field(default=None, metadata={"help": "{name: size} for streaming datasets"})
    streaming: bool = field(default=False, metadata={"help": "stream the raw files (needs max_steps)"})
    stopping_strategy: str = field(default="all_exhausted")
    max_eval_samples: int | None = field(default=64, metadata={"help": "validation records per dataset"})
    generation_eval_samples: int = field(
        default=0, metadata={"help": "held-in short-answer questions answered at each evaluation (accuracy)"}
    )
    generation_max_new_tokens: int = field(default=10)
    generation_num_beams: int = field(default=1)
    max_length: int | None = field(default=None, metadata={"help": "bound on the LLM sequence (image tokens included)"})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "where the builders write their Arrow files"})
    record_errors: str = field(default="skip", metadata={"help": "bad raw records: skip (count) or fail"})
    finetune_on_held_out: bool = field(
        default=False,
        metadata={"help": "allow held-out datasets in data_dirs: downstream fine-tuning (the paper's Table 3), after "
                          "which the model is no longer zero-shot on them (recorded in its config and card)"},
    )
    image_check: str = field(default="header", metadata={"help": "build-time image check: none, exists, header, full"})
    train_augmentation: bool = field(
        default=True, metadata={"help": "the paper's RandomResizedCrop 0.5-1 + flip on training images (false: eval view)"}
    )
    train_randaugment: bool = field(
        default=False,
        metadata={"help": "after crop and flip, RandAugment (2 of 10 operations, magnitude 5): LAVIS's blip_image_train, "
                          "the FlanT5 models' training transform (the Vicuna ones use crop and flip only)"},
    )
    packing: bool = field(
        default=False,
        metadata={"help": "decoder-only LLM: each batch's samples in one row without padding (position_ids restart)"},
    )
    vision_feature_cache: str | None = field(
        default=None,
        metadata={"help": "folder: compute the frozen vision tower's features once per image, train from them "
                          "(needs train_augmentation false)"},
    )

    def __post_init__(self):
        for name in ("data_dirs", "multipliers", "dataset_sizes"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, json.loads(value))
        for name in ("train_file", "validation_file"):
            if isinstance(getattr(self, name), str):  # one file, as a YAML string
                setattr(self, name, [getattr(self, name)])
        if self.dataset_validation_split in ("", "none", "None"):
            self.dataset_validation_split = None
        if not (self.data_dirs or self.sample_corpus_dir or self.train_file or self.dataset_name):
            raise ValueError("give data_dirs ({name: folder}), sample_corpus_dir, train_file or dataset_name")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"--sampling must be one of {', '.join(SAMPLINGS)} (the mixture's weighting); got {self.sampling!r}")
        if self.train_randaugment and not self.train_augmentation:
            raise ValueError("train_randaugment augments the random crop and flip: it needs train_augmentation true")
        if self.vision_feature_cache and self.train_augmentation:
            raise ValueError(
                "vision_feature_cache holds one view per image (the eval transform), so the paper's random "
                "crop/flip cannot be applied: pass --train_augmentation false to train from cached features"
            )


@dataclass
class InstructBlipTrainingArguments(TrainingArguments):
    """The Trainer's arguments, with the defaults this recipe needs and the paper's warmup start."""

    warmup_start_lr: float | None = field(
        default=None,
        metadata={"help": "paper schedule: linear warmup from this LR to learning_rate, then cosine to 0"},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator reads raw records"})
    report_to: None | str | list[str] = field(default="tensorboard")
    loss_curve: bool = field(default=True, metadata={"help": f"write {LOSS_CURVE_FILENAME} to output_dir"})
    compile_regions: bool = field(
        default=True,
        metadata={
            "help": "with --torch_compile: compile each repeated block (ViT, Q-Former and LLM layers) on its own "
            "(accelerate's regional compilation: one compile per block type, and the eager training fast paths "
            "stay on); false compiles the whole model into one graph"
        },
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, InstructBlipTrainingArguments)


def parse_args(argv=None):
    """(model_args, data_args, training_args) from `[config.yaml] [--key value ...]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        with open(argv.pop(0), encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown keys in the config file: {unknown}")
        parser.set_defaults(**config)
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def setup_logging(training_args):
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)]
    )
    level = training_args.get_process_log_level()
    for module_logger in (logger, logging.getLogger("training"), logging.getLogger("dataset_builders")):
        module_logger.setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    if "tensorboard" in training_args.report_to and not is_tensorboard_available():
        logger.warning("tensorboard is not installed (pip install tensorboard): TensorBoard logs are off")
        training_args.report_to = [name for name in training_args.report_to if name != "tensorboard"]


def _has_trainer_state(checkpoint: str) -> bool:
    """Whether `checkpoint` holds a whole trainer state: a save cut short by a full disk or a kill can
    leave the file there, but truncated."""
    try:
        with open(os.path.join(checkpoint, "trainer_state.json")) as f:
            return isinstance(json.load(f).get("global_step"), int)
    except (OSError, ValueError, AttributeError):
        return False


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` whose whole trainer state was written (the last file a save writes), so
    a run killed, or out of disk space, in the middle of a save resumes from the one before."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(name.split("-")[1]), name)
        for name in os.listdir(output_dir)
        if name.startswith("checkpoint-") and name.split("-")[1].isdigit()
        and _has_trainer_state(os.path.join(output_dir, name))
    )
    return os.path.join(output_dir, steps[-1][1]) if steps else None


def resolve_data_dirs(data_args, training_args) -> dict:
    data_dirs = dict(data_args.data_dirs or {})
    if data_args.sample_corpus_dir:
        with training_args.main_process_first(desc="writing the sample corpus"):
            # the marker names the corpus's size: another size is written afresh in its own folder
            marker = os.path.join(data_args.sample_corpus_dir, f"corpus-{data_args.sample_corpus_images}.json")
            if not os.path.exists(marker):
                written = write_sample_corpus(
                    data_args.sample_corpus_dir, seed=0, num_images=data_args.sample_corpus_images
                )
                with open(marker, "w") as f:
                    json.dump(written, f)
            with open(marker) as f:
                written = json.load(f)
        for name, folder in written.items():
            if DATASETS[name].role == "held_in":
                data_dirs.setdefault(name, folder)
    return data_dirs


def resolve_user_sources(data_args) -> tuple[list, list]:
    """(training sources, validation sources) of the user's own data: files and a Hub dataset."""
    columns = {"image_column": data_args.image_column, "instruction_column": data_args.instruction_column,
               "answer_column": data_args.answer_column}
    train = file_sources(data_args.train_file, "train", "--train_file", **columns)
    validation = file_sources(data_args.validation_file, "validation", "--validation_file", **columns)
    if data_args.dataset_name:
        configs = [c.strip() for c in data_args.dataset_config_name.split(",")] if data_args.dataset_config_name else None
        hub = dict(configs=configs, revision=data_args.dataset_revision, **columns)
        train += hub_sources(data_args.dataset_name, split="train", hub_split=data_args.dataset_split, **hub)
        if data_args.dataset_validation_split:
            validation += hub_sources(
                data_args.dataset_name, split="validation", hub_split=data_args.dataset_validation_split,
                required=False, **hub,
            )
    return train, validation


def build_model(model_args, seed: int):
    """(model, processor, base models for the card: names or (name, what was taken from it))."""
    dtype = getattr(torch, model_args.dtype) if model_args.dtype else None
    if model_args.model_name_or_path:
        if blip2.blip2_format(model_args.model_name_or_path):
            model, processor, sources = blip2.load_blip2(
                model_args.model_name_or_path, qformer_model=model_args.qformer_model or "bert-base-uncased",
                stage1=model_args.blip2_stage1, language_model=model_args.language_model,
                vision_model=model_args.vision_model, dtype=dtype,
            )
            if model_args.num_query_tokens not in (None, model.config.num_query_tokens):
                raise ValueError(f"num_query_tokens is {model_args.num_query_tokens}, but the BLIP-2 checkpoint "
                                 f"{model_args.model_name_or_path} has {model.config.num_query_tokens} query tokens")
            return model, processor, sources
        given = [name for name in ("vision_model", "qformer_model", "language_model", "blip2_stage1")
                 if getattr(model_args, name) is not None]
        if given:
            raise ValueError(f"{model_args.model_name_or_path} is an InstructBLIP checkpoint, which holds every part: "
                             f"drop {', '.join(given)} (they complete a BLIP-2 start only)")
        model, processor = modeling.load_checkpoint(model_args.model_name_or_path, dtype, model_args.trust_remote_code)
        return model, processor, [model_args.model_name_or_path]
    if model_args.tiny_text_model:
        model, processor = modeling.build_tiny(model_args.tiny_text_model, seed, model_args.config_overrides)
        return model, processor, []
    parts = [model_args.vision_model, model_args.qformer_model, model_args.language_model]
    model, processor = modeling.compose_from_parts(*parts, num_query_tokens=model_args.num_query_tokens or 32, dtype=dtype)
    return model, processor, parts


def fill_feature_cache(folder, model, processor, datasets_to_cache, training_args):
    """Open the vision feature cache at `folder` and compute what it lacks for the images of the given
    record datasets (None skipped), each rank its share on its device; returns (cache, this rank's counts)."""
    import itertools

    from accelerate import PartialState

    cache = VisionFeatureCache(folder, model, processor)
    sources = [dataset_images(dataset) for dataset in datasets_to_cache if dataset is not None]
    totals = [total for _, total in sources]
    frozen = model._frozen_vision_modules()
    home = next(frozen[0].parameters()).device
    for module in frozen:
        module.to(training_args.device)
    report = cache.fill(
        model, processor, itertools.chain.from_iterable(images for images, _ in sources),
        batch_size=training_args.per_device_eval_batch_size, rank=training_args.process_index,
        world_size=training_args.world_size, device=training_args.device,
        total=None if None in totals else sum(totals),
    )
    for module in frozen:
        module.to(home)
    PartialState().wait_for_everyone()  # every rank's share is on disk before any rank reads
    return cache, report


def main(argv=None):
    # -- arguments, logging -----------------------------------------------------------------------
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    logger.info("training arguments: %s", training_args)
    set_seed(training_args.seed)

    # -- data ---------------------------------------------------------------------------------------
    data_dirs = resolve_data_dirs(data_args, training_args)
    train_sources, validation_sources = resolve_user_sources(data_args)
    with training_args.main_process_first(desc="building the training datasets"):
        mixture, proportions, build_reports = load_training_mixture(
            data_dirs,
            user_sources=train_sources,
            multipliers=data_args.multipliers,
            sampling=data_args.sampling,
            sizes=data_args.dataset_sizes,
            streaming=data_args.streaming,
            stopping_strategy=data_args.stopping_strategy,
            seed=training_args.seed,
            cache_dir=data_args.dataset_cache_dir,
            errors=data_args.record_errors,
            image_check=data_args.image_check,
            allow_held_out=data_args.finetune_on_held_out,
        )
        validation = None
        if training_args.eval_strategy != "no" or training_args.do_eval:
            validation, validation_reports = load_validation_set(
                data_dirs, user_sources=validation_sources, max_samples_per_dataset=data_args.max_eval_samples,
                cache_dir=data_args.dataset_cache_dir, errors=data_args.record_errors, image_check=data_args.image_check,
                return_reports=True,
            )
            # reported beside the training builds: "<name> (validation)"
            build_reports.update({f"{name} (validation)": report for name, report in validation_reports.items()})
    logger.info("mixture: %s", {name: round(p, 4) for name, p in proportions.items()})
    skipped_at_build = {  # for the card: "3 (missing_image: 2, corrupt_image: 1)"
        name: f"{report['num_skipped']} ("
        + ", ".join(f"{reason}: {count}" for reason, count in sorted(report["counts"].items())) + ")"
        for name, report in build_reports.items()
        if report and report["num_skipped"]
    }
    if data_args.streaming:
        # a worker's share of the stream is whole global batches (see InstructionStream)
        train_dataset = InstructionStream(
            mixture, seed=training_args.seed,
            block_size=training_args.per_device_train_batch_size * training_args.world_size,
        )
    else:
        train_dataset = InstructionDataset(mixture, seed=training_args.seed)
    eval_dataset = InstructionDataset(validation, train=False) if validation is not None else None

    # -- model --------------------------------------------------------------------------------------
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint in ("true", "True", "latest"):
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        logger.info("resuming from %s", checkpoint)
    model, processor, base_models = build_model(model_args, training_args.seed)
    if model_args.instruction_aware is not None:
        model.config.instruction_aware = model_args.instruction_aware
    if checkpoint and os.path.exists(os.path.join(checkpoint, "processor_config.json")):
        # the run's own tokenizers (a from-scratch tiny model's are trained anew at every start)
        processor = InstructBlipProcessor.from_pretrained(checkpoint)
    frozen_dtype = getattr(torch, model_args.frozen_dtype) if model_args.frozen_dtype else None
    modeling.freeze(
        model,
        train_language_model=model_args.train_language_model,
        train_vision_model=model_args.train_vision_model,
        frozen_dtype=frozen_dtype,
    )
    lora_config = None
    if model_args.lora_r:
        lora_config = modeling.add_lora(
            model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules
        )
    model.generation_config = paper_generation_config(model.config.text_config)
    feature_cache_report = None
    if data_args.vision_feature_cache:
        if model_args.train_vision_model:
            raise ValueError("vision_feature_cache needs a frozen vision tower; train_vision_model trains it")
        feature_cache, feature_cache_report = fill_feature_cache(
            data_args.vision_feature_cache, model, processor, [mixture, validation], training_args
        )
        train_dataset.feature_cache = feature_cache
        if eval_dataset is not None:
            eval_dataset.feature_cache = feature_cache
    trainable, total = modeling.count_parameters(model)
    logger.info("%s parameters, %s trainable", f"{total:,}", f"{trainable:,}")

    generation_eval = None
    if validation is not None and data_args.generation_eval_samples:
        questions = InstructionDataset(validation, train=False).dataset.filter(is_short_answer_record)
        questions = questions.select(range(min(data_args.generation_eval_samples, len(questions))))
        generation_eval = GenerationEval(
            processor, list(questions), batch_size=training_args.per_device_eval_batch_size,
            max_new_tokens=data_args.generation_max_new_tokens, num_beams=data_args.generation_num_beams,
        )

    # -- Trainer ------------------------------------------------------------------------------------
    push_to_hub = training_args.push_to_hub
    training_args.push_to_hub = False  # the finished folder is uploaded once, below, card included
    if data_args.streaming:
        # by default accelerate has rank 0 read and collate every rank's batch of a stream, then sends
        # each its part (sliced along input_ids' first dimension, not the samples' for packed rows):
        # rank 0 would decode everyone's images. Each rank collates its own slice instead; the stream
        # yields records still undecoded (PendingSample), so reading it whole costs a rank little.
        training_args.accelerator_config.dispatch_batches = False
    trainer = InstructBlipTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=InstructBlipCollator(
            processor, max_length=data_args.max_length, augment=data_args.train_augmentation, pack=data_args.packing,
            randaugment=data_args.train_randaugment,
        ),
        processing_class=processor,
        generation_eval=generation_eval,
    )

    # -- train --------------------------------------------------------------------------------------
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(train_result.metrics)
    metrics["skipped_records"] = trainer.total_skipped_records()
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    # -- evaluate -----------------------------------------------------------------------------------
    eval_metrics = {}
    if eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    # -- save, card, push ---------------------------------------------------------------------------
    output_dir = training_args.output_dir
    if lora_config is not None:
        if training_args.should_save and not model_args.lora_merge:
            modeling.save_lora_adapter(model, lora_config, os.path.join(output_dir, "lora_adapter"))
        modeling.remove_lora(model, merge=model_args.lora_merge)
    held_out = sorted(name for name in [*data_dirs, *(source.name for source in train_sources)]  # a Hub config: vsr
                      if name in DATASETS and DATASETS[name].role != "held_in")
    if held_out:  # downstream fine-tuning: evaluate.py reports these as fine-tuned, never zero-shot
        model.config.trained_on_held_out = sorted(set(model.config.trained_on_held_out or []) | set(held_out))
    trainer.save_model(output_dir)  # weights, remote code, processor, generation config
    data_report = {"at build": build_reports, "during training": metrics["skipped_records"]}
    if feature_cache_report is not None:
        data_report["vision feature cache"] = feature_cache_report
    if training_args.should_save:
        with open(os.path.join(output_dir, "data_report.json"), "w") as f:  # every skipped record, by reason
            json.dump(data_report, f, indent=1)
        if training_args.loss_curve:
            plot_loss_curve(trainer.state.log_history, os.path.join(output_dir, LOSS_CURVE_FILENAME))
        hyperparameters = {
            "steps": trainer.state.global_step,
            "global batch size": training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps * training_args.world_size,
            "learning rate": training_args.learning_rate,
            "warmup": f"{training_args.warmup_steps} steps from {training_args.warmup_start_lr}",
            "schedule": "cosine to 0" if training_args.warmup_start_lr is not None else training_args.lr_scheduler_type,
            "optimizer": f"AdamW betas ({training_args.adam_beta1}, {training_args.adam_beta2})",
            "weight decay": f"{training_args.weight_decay} (tensors with >= 2 dims only)",
            "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
            "image augmentation": "RandomResizedCrop 0.5-1 + horizontal flip"
            + (" + RandAugment (2 operations, magnitude 5)" if data_args.train_randaugment else "")
            if data_args.train_augmentation
            else "none" + (" (cached vision features)" if data_args.vision_feature_cache else ""),
            "trainable parameters": f"{trainable:,} of {total:,}",
            "seed": training_args.seed,
            "instruction-aware Q-Former": "yes" if model.config.instruction_aware
            else "no (queries only: the paper's ablation without instruction-aware visual features)",
            "mixture sampling": data_args.sampling + (f", multipliers {data_args.multipliers}" if data_args.multipliers else ""),
        }
        write_model_card(
            output_dir,
            model_name=training_args.hub_model_id or os.path.basename(os.path.abspath(output_dir)),
            base_models=base_models,
            datasets=list(data_dirs) + [source.name for source in train_sources],
            user_sources={source.name: {"origin": source.origin, "hub_dataset": source.hub_dataset}
                          for source in train_sources},
            proportions=proportions,
            sampling=data_args.sampling,
            hyperparameters=hyperparameters,
            eval_metrics=eval_metrics,
            data_report={
                **{f"{name} (at build)": n for name, n in skipped_at_build.items()},
                "during training": metrics["skipped_records"],
            },
            lora=None if lora_config is None else {
                "r": model_args.lora_r, "alpha": model_args.lora_alpha, "target modules": model_args.lora_target_modules,
                "saved": "merged" if model_args.lora_merge else "adapter in lora_adapter/",
            },
            not_zero_shot_on=model.config.trained_on_held_out,
        )
        if push_to_hub:
            repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
            # the same checked, resumable upload as `python -m publish model`
            publish_model(output_dir, repo_id, token=training_args.hub_token, private=training_args.hub_private_repo,
                          commit_message="InstructBLIP instruction tuning")
            logger.info("pushed %s to the Hub as %s", output_dir, repo_id)
    return {"train": metrics, "eval": eval_metrics, "data": data_report}


if __name__ == "__main__":
    main()
