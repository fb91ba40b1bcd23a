"""Zero-shot evaluation of InstructBLIP with the paper's protocols: `python evaluate.py --model ... --tasks ...`.

This file shares its name with the `evaluate` library. Python puts the running script's folder (and
`python -m` / pytest put the working directory) first on `sys.path`, where `import evaluate` would
find this file instead of the library. Two guards keep both reachable:
- run as a script, this file takes its own folder off `sys.path` before importing anything else;
- imported under the name `evaluate` (someone asked for the library and found this file first),
  it replaces itself in `sys.modules` with the library, which the importer then receives.
Tests import this script under another name (see tests/evaluation/test_evaluate_shadowing.py).
"""

import sys
from pathlib import Path


_HERE = Path(__file__).resolve().parent


def _without_this_folder(paths):
    return [p for p in paths if Path(p or ".").resolve() != _HERE]


if __name__ == "evaluate":
    import importlib

    del sys.modules["evaluate"]
    _saved_path = sys.path[:]
    sys.path[:] = _without_this_folder(sys.path)
    try:
        sys.modules["evaluate"] = importlib.import_module("evaluate")
    finally:
        sys.path[:] = _saved_path
elif __name__ == "__main__":
    sys.path[:] = _without_this_folder(sys.path)


# ---------------------------------------------------------------------------------------------------
# The command line. Usage:
#
#   python evaluate.py --model Salesforce/instructblip-vicuna-7b --data_dir /data --tasks held_out
#   python evaluate.py --model ./my-model --data_dir /data --tasks gqa,textvqa --limit 100 \
#       --set gqa.num_beams=3 --set "*.max_len=5" --output_dir eval_output --dtype bfloat16
#   accelerate launch evaluate.py --model ... --data_dir ... --tasks ...   # records split across processes
#   python evaluate.py eval_config.yaml                                    # the same arguments from a file
#
# --data_dir holds one folder per dataset, named as in dataset_builders.DATASETS, each laid out as
# that dataset's official release (the builder module's docstring shows where each file goes):
#
#   <data_dir>/nocaps/nocaps_val_4500_captions.json, <data_dir>/nocaps/val/<file_name>
#   <data_dir>/flickr30k/dataset_flickr30k.json, <data_dir>/flickr30k/flickr30k-images/...
#   <data_dir>/gqa/testdev_balanced_questions.json, <data_dir>/gqa/images/...
#   <data_dir>/vsr/splits/zeroshot/test.jsonl, <data_dir>/vsr/images/...
#   <data_dir>/iconqa/problems.json, pid_splits.json, iconqa/test/choose_txt/<pid>/image.png
#   <data_dir>/textvqa/TextVQA_0.5.1_val.json, TextVQA_Rosetta_OCR_v0.2_val.json, train_images/...
#   <data_dir>/visdial/visdial_1.0_val.json, VisualDialog_val2018/...
#   <data_dir>/hateful_memes/dev_seen.jsonl, img/...
#   <data_dir>/vizwiz/Annotations/val.json, val/...
#   <data_dir>/scienceqa/problems.json, pid_splits.json, images/test/<pid>/image.png
#   <data_dir>/msvd_qa/{train,test}_qa.json, youtube_mapping.txt, YouTubeClips/...
#   <data_dir>/msrvtt_qa/{train,test}_qa.json, TestVideo/...
#   <data_dir>/ivqa/test.csv, video/...
#   (held-in: coco_caption, textcaps, vqav2, okvqa, aokvqa, ocrvqa likewise)
#
# Outputs in --output_dir: results.json, table1.md, table1.png, model_index.json and, per task,
# <task>/predictions.jsonl and <task>/metrics.json. Rerunning with the same --output_dir resumes.
# ---------------------------------------------------------------------------------------------------

import logging  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

logger = logging.getLogger("evaluate.py")

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelArguments:
    """Which model to evaluate."""

    model: str = field(metadata={"help": "A saved model folder or a Hub repo id (loaded with trust_remote_code=True)."})
    dtype: str = field(
        default="float32",
        metadata={"choices": list(DTYPES),
                  "help": "Weights' dtype (the paper: bfloat16 for FlanT5, float16 for Vicuna)."},
    )
    model_name: str | None = field(default=None, metadata={"help": "Name of our row in the table (default: --model)."})


@dataclass
class DataArguments:
    """Which tasks, on which data."""

    data_dir: str = field(
        metadata={"help": "Root folder with one folder per dataset, <data_dir>/<dataset name>/ laid out as the "
                          "official release (see the top of evaluate.py and each dataset_builders module)."}
    )
    tasks: str = field(
        default="held_out",
        metadata={"help": "Comma-separated task names, or held_out (Table 1), held_in, all. "
                          "Tasks: nocaps, flickr30k, gqa, vsr, iconqa, textvqa, visdial, hateful_memes, vizwiz, "
                          "scienceqa, msvd_qa, msrvtt_qa, ivqa, coco_caption, textcaps, vqav2, okvqa, aokvqa_mc, "
                          "aokvqa_da, ocrvqa."},
    )
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N samples of each task."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where the built datasets are cached."})


@dataclass
class EvaluationArguments:
    """How to run and where to write."""

    output_dir: str = field(default="eval_output", metadata={"help": "Results, predictions and the report go here."})
    batch_size: int = field(default=8, metadata={"help": "Samples per generate / rank call, per process."})
    overrides: list[str] = field(
        default_factory=list,
        metadata={"aliases": ["--set"], "action": "extend",
                  "help": "Task settings, task.field=value (repeatable), e.g. --set gqa.num_beams=3 '*.max_len=5'. "
                          "Fields: see evaluation/tasks.py (num_beams, max_len, min_len, length_penalty_decoder_only, "
                          "length_penalty_encoder_decoder, repetition_penalty, split, candidate_batch_size, ...)."},
    )


def parse_args(args=None):
    """The three argument dataclasses, from the command line or from one .json / .yaml file."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, EvaluationArguments), description=__doc__.splitlines()[0])
    args = sys.argv[1:] if args is None else list(args)
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=args[0])
    if len(args) == 1 and args[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=args[0])
    return parser.parse_args_into_dataclasses(args=args)


def load_model(name_or_path: str, dtype: str = "float32", device=None):
    """The model and processor from a saved folder or a Hub id, as users load them."""
    import torch
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=True, dtype=getattr(torch, dtype))
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=True)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def main(args=None):
    model_args, data_args, eval_args = parse_args(args)

    import importlib.util

    if importlib.util.find_spec("evaluation") is None:  # not installed: the package beside this file,
        sys.path.append(str(_HERE))  # searched after the installed libraries (`evaluate` stays the library)
    from evaluation import markdown_table, run_tasks, select_tasks
    from evaluation.runner import distributed_state

    state = distributed_state()
    level = logging.INFO if state.is_main_process else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in (logger.name, "evaluation"):
        logging.getLogger(name).setLevel(level)
    tasks = select_tasks(data_args.tasks, eval_args.overrides)  # fails on a typo before the model loads
    logger.info("tasks: %s", ", ".join(task.name for task in tasks))

    model, processor = load_model(model_args.model, model_args.dtype, device=state.device)
    logger.info("model %s (%s) on %s, %d process(es)", model_args.model, model_args.dtype, state.device,
                state.num_processes)

    results = run_tasks(
        model,
        processor,
        tasks,
        data_dir=data_args.data_dir,
        output_dir=eval_args.output_dir,
        limit=data_args.limit,
        batch_size=eval_args.batch_size,
        cache_dir=data_args.cache_dir,
        model_name=model_args.model_name or model_args.model,
        state=state,
    )
    if state.is_main_process:
        print(markdown_table(results))
        logger.info("results, table1.md/.png and predictions in %s", eval_args.output_dir)
    return results


if __name__ == "__main__":
    main()
