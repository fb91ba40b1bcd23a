"""Run evaluation tasks: batched generation or candidate ranking over a dataset's records,
per-sample predictions written as they come, metrics at the end.

Resumable: with an output folder, each process appends its finished rows to
`<output_dir>/<task>/partial/process<i>.jsonl` after every batch; a restarted run (same folder,
any number of processes) reads those files and `predictions.jsonl`, skips the finished ids and
computes the metrics over old and new rows alike, so the result equals an uninterrupted run's.
`task.json` records the settings: resuming with other settings (or another model) is refused.

Distributed: under `accelerate launch` the unfinished records are split between processes
(`PartialState.split_between_processes`), the rows are gathered to every process (so each one
returns the same metrics) and only the main process writes the final files. Resuming reads the
partial files of every process, so the output folder must be on a filesystem all processes share.

This module knows no dataset format (dataset_builders) and no task detail (tasks.py).
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from tqdm.auto import tqdm

from dataset_builders import load
from dataset_builders.sample_data import SYNTHETIC_MARKER
from training.modeling import weights_fingerprint

from . import report
from .tasks import (
    GENERATE,
    Task,
    apply_overrides,
    build_prompt,
    candidates_for,
    compute_metrics,
    generate_kwargs,
    rank_prediction,
    references_for,
    select_tasks,
)

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
TASK_FILE = "task.json"
METRICS_FILE = "metrics.json"
PARTIAL_DIR = "partial"


def load_records(task: Task, data_dir: str, cache_dir: str | None = None, limit: int | None = None,
                 return_provenance: bool = False):
    """The task's split as a `datasets.Dataset`, built from `<data_dir>/<task.dataset>/` (first
    `limit` records only, when given); with `return_provenance`, `(dataset, data_provenance(...))`."""
    folder = os.path.join(data_dir, task.dataset)
    dataset, build_report = load(task.dataset, folder, task.split, cache_dir=cache_dir, return_report=True,
                                 **task.builder_options)
    provenance = data_provenance(task, folder, build_report, len(dataset), limit)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return (dataset, provenance) if return_provenance else dataset


def data_provenance(task: Task, folder: str, build_report: dict | None, num_records: int, limit: int | None) -> dict:
    """What a score was computed on: the files the builder read (raw items from each, relative to
    `folder`), the records built and skipped, and whether that is the task's full official split.

    `comparable` (a score that may stand beside published numbers) holds only when the folder is not
    a synthetic sample (no `SYNTHETIC_MARKER`), the build skipped nothing, its record count equals
    the official split's (`task.official_records`) and no `limit` cut it.
    """
    report = build_report or {}
    inside = os.path.abspath(folder) + os.sep
    files = {(os.path.relpath(path, folder) if os.path.abspath(path).startswith(inside) else path): n
             for path, n in report.get("files", {}).items()}
    synthetic = os.path.isfile(os.path.join(folder, SYNTHETIC_MARKER))
    skipped = report.get("num_skipped", 0)
    official = task.official_records
    official_split = not synthetic and official is not None and num_records == official and not skipped
    evaluated = num_records if limit is None else min(limit, num_records)
    split = task.split
    unit = task.record_unit.removesuffix("s") if num_records == 1 else task.record_unit
    if synthetic:
        description = f"synthetic sample in the official format, {num_records:,} {unit}"
    elif official_split:
        description = f"official {split}, all {num_records:,} {unit}"
    else:
        description = f"{num_records:,} {unit}" + (f" ({skipped:,} raw records skipped)" if skipped else "")
    if not official_split:
        description += (f"; the official {split} has {official:,}" if official is not None else
                        f"; the official {split}'s size is not recorded, so it cannot be checked")
    if evaluated < num_records:
        description += f"; first {evaluated:,} evaluated (--limit)"
    return {
        "folder": folder,
        "files": files,
        "num_records": num_records,
        "num_skipped": skipped,
        "official_records": official,
        "synthetic": synthetic,
        "official_split": official_split,
        "comparable": official_split and evaluated == num_records,
        "description": description,
    }


def distributed_state() -> PartialState:
    """accelerate's view of the processes. `ACCELERATE_USE_CPU=true` must reach it (PartialState reads
    it only through Accelerator): without it, CPU ranks launched together each believe they are alone."""
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if state.num_processes == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(
            f"launched as {os.environ['WORLD_SIZE']} processes, but accelerate found no distributed backend; "
            "on CPU set ACCELERATE_USE_CPU=true (accelerate launch --multi_gpu --num_processes N ...)"
        )
    return state


# -- one batch -------------------------------------------------------------------------------------------


def model_inputs(model, processor, records: list[dict], prompts: list[str]):
    """Processor batch for `records` (images or video frames) on the model's device and dtype; a
    decoder-only LLM's prompts are padded on the left, so every prompt ends where generation starts."""
    if records[0]["frames"]:
        visual = {"videos": [record["frames"] for record in records]}
    else:
        visual = {"images": [record["image"] for record in records]}
    side = "left" if model.config.use_decoder_only_language_model else None
    inputs = processor(text=prompts, return_tensors="pt", padding_side=side, **visual)
    inputs = inputs.to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return inputs


def predict_batch(model, processor, task: Task, records: list[dict]) -> list[dict]:
    """Prediction rows for a batch of records: id, prompt, prediction, references (+ candidate
    scores and the chosen index for ranking tasks)."""
    prompts = [build_prompt(task, record) for record in records]
    inputs = model_inputs(model, processor, records, prompts)
    if task.inference == GENERATE:
        generated = model.generate(**inputs, **generate_kwargs(task, not model.config.use_decoder_only_language_model))
        answers = processor.post_process_generation(generated, inputs["input_ids"])
        outputs = [{"prediction": answer} for answer in answers]
    else:
        candidates = [candidates_for(task, record) for record in records]
        candidate_inputs = processor.tokenize_candidates(candidates).to(model.device)
        ranking = model.rank_candidates(
            **candidate_inputs, **inputs, candidate_batch_size=task.candidate_batch_size
        )
        scores = ranking.mean_logprobs if task.length_normalize else ranking.sum_logprobs
        outputs = [
            rank_prediction(task, record, scores[i, : len(candidates[i])].tolist())
            for i, record in enumerate(records)
        ]
    return [
        {"id": record["id"], "prompt": prompt, **output, "references": references_for(task, record)}
        for record, prompt, output in zip(records, prompts, outputs)
    ]


# -- the finished rows on disk ------------------------------------------------------------------------


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short when the run was killed
                continue
    return rows


def read_finished_rows(task_dir: str) -> dict:
    """{id: row} of every prediction already written under `task_dir` (final file and partial files)."""
    paths = [os.path.join(task_dir, PREDICTIONS_FILE)]
    partial = os.path.join(task_dir, PARTIAL_DIR)
    if os.path.isdir(partial):
        paths += [os.path.join(partial, name) for name in sorted(os.listdir(partial)) if name.endswith(".jsonl")]
    finished = {}
    for path in paths:
        for row in _read_jsonl(path):
            finished.setdefault(row["id"], row)
    return finished


def data_fingerprint(dataset) -> str:
    """A hash of the samples' ids and instructions: the same ids over rewritten data differ."""
    digest = hashlib.sha256()
    for sample_id, instruction in zip(dataset["id"], dataset["instruction"]):
        digest.update(f"{sample_id}\x00{instruction}\x00".encode())
    return digest.hexdigest()[:16]


def task_settings(task: Task, model, dataset=None) -> dict:
    """What a resumed run must share with the run it continues: the task, the model (path and
    weights) and the samples."""
    settings = {"task": json.loads(json.dumps(dataclasses.asdict(task))),
                "model": getattr(model.config, "name_or_path", "") or "",
                "weights": weights_fingerprint(model)}
    if dataset is not None:
        settings["data"] = data_fingerprint(dataset)
    return settings


def _check_settings(task_dir: str, settings: dict) -> None:
    path = os.path.join(task_dir, TASK_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != settings:
            raise ValueError(
                f"{task_dir} holds predictions made with other settings:\n  before: {previous}\n  now:    {settings}\n"
                "use another --output_dir (or delete that folder) to start afresh"
            )


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# -- one task ------------------------------------------------------------------------------------------


def run_task(
    model,
    processor,
    task: Task,
    data_dir: str,
    output_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    cache_dir: str | None = None,
    state: PartialState | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model` on one task and return its result: {"task", "title", "dataset", "split",
    "metric", "score", "metrics", "num_samples", "data" (data_provenance), "comparable", "settings"}.
    Every process returns the same result.

    With `output_dir`, predictions go to `<output_dir>/<task.name>/` (see the module docstring) and
    finished samples are skipped; without it nothing is written (e.g. held-in validation in training).
    """
    state = state or distributed_state()
    with state.main_process_first():  # the main process builds the dataset cache, the others reuse it
        dataset, provenance = load_records(task, data_dir, cache_dir=cache_dir, limit=limit, return_provenance=True)
    ids = list(dataset["id"])
    settings = task_settings(task, model, dataset)

    finished, task_dir = {}, None
    if output_dir is not None:
        task_dir = os.path.join(output_dir, task.name)
        _check_settings(task_dir, settings)
        finished = read_finished_rows(task_dir)
        state.wait_for_everyone()  # everyone has read before anyone appends
        if state.is_main_process:
            os.makedirs(os.path.join(task_dir, PARTIAL_DIR), exist_ok=True)
            _write_json(os.path.join(task_dir, TASK_FILE), settings)
        state.wait_for_everyone()

    remaining = [i for i, sample_id in enumerate(ids) if sample_id not in finished]
    if finished:
        logger.info("%s: %d of %d samples already done, resuming", task.name, len(ids) - len(remaining), len(ids))
    new_rows = []
    with state.split_between_processes(remaining) as mine:
        partial_path = task_dir and os.path.join(task_dir, PARTIAL_DIR, f"process{state.process_index}.jsonl")
        bar = tqdm(total=len(mine), desc=task.name, disable=not (progress and state.is_main_process))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(mine), batch_size):
                batch = dataset[mine[start : start + batch_size]]
                records = [dict(zip(batch, values)) for values in zip(*batch.values())]
                rows = predict_batch(model, processor, task, records)
                if partial_path:
                    with open(partial_path, "a", encoding="utf-8") as f:
                        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                new_rows.extend(rows)
                bar.update(len(rows))
        bar.close()
        model.train(was_training)  # held-in validation during training hands the model back as it was
    if state.num_processes > 1:
        new_rows = gather_object(new_rows)

    by_id = {**finished, **{row["id"]: row for row in new_rows}}
    missing = [sample_id for sample_id in ids if sample_id not in by_id]
    if missing:
        raise RuntimeError(f"{task.name}: no prediction for {len(missing)} samples, e.g. {missing[:5]}")
    rows = [by_id[sample_id] for sample_id in ids]
    try:
        metrics = compute_metrics(task, rows)
        score = metrics[task.metric]
    except ValueError as error:  # e.g. ROC AUC over one class only, with a small --limit
        logger.warning("%s: no score: %s", task.name, error)
        metrics, score = {"error": str(error)}, None
    result = {
        "task": task.name,
        "title": task.title,
        "dataset": task.dataset,
        "split": task.split,
        "held_out": task.held_out,
        # fine-tuned on this held-out dataset (train.py --finetune_on_held_out): never a zero-shot score
        "finetuned": task.held_out and task.dataset in (getattr(model.config, "trained_on_held_out", None) or ()),
        "metric": task.metric,
        "score": score,
        "metrics": metrics,
        "num_samples": len(rows),
        "limit": limit,
        "data": provenance,
        "comparable": provenance["comparable"],
        "settings": settings["task"],
    }
    if task_dir is not None and state.is_main_process:
        with open(os.path.join(task_dir, PREDICTIONS_FILE), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        _write_json(os.path.join(task_dir, METRICS_FILE), result)
        shutil.rmtree(os.path.join(task_dir, PARTIAL_DIR), ignore_errors=True)  # all in predictions.jsonl now
    state.wait_for_everyone()
    return result


# -- several tasks, with the report ----------------------------------------------------------------------


def run_tasks(
    model,
    processor,
    tasks,
    data_dir: str,
    output_dir: str,
    limit: int | None = None,
    batch_size: int = 8,
    cache_dir: str | None = None,
    model_name: str | None = None,
    overrides=(),
    state: PartialState | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model` on `tasks` (names, "held_out"/"held_in"/"all", or `Task` objects) and write
    the report to `output_dir`: results.json, table1.md (the paper's Table 1 with our row),
    table1.png (bar chart), model_index.json (the model card's `model-index`), and per task its
    predictions.jsonl and metrics.json. Returns the results dict (report.results_dict).

    `data_dir` holds one folder per dataset, named as in `dataset_builders.DATASETS`
    (`<data_dir>/gqa/testdev_balanced_questions.json`, ...). `overrides` are "task.field=value"
    strings (tasks.apply_overrides).
    """
    state = state or distributed_state()
    if isinstance(tasks, str) or not all(isinstance(task, Task) for task in tasks):
        tasks = select_tasks(tasks, overrides)
    else:
        tasks = apply_overrides(tasks, overrides)
    model_name = model_name or getattr(model.config, "name_or_path", "") or "ours"
    os.makedirs(output_dir, exist_ok=True)
    task_results = {}
    for task in tasks:
        task_results[task.name] = run_task(
            model, processor, task, data_dir, output_dir=output_dir, limit=limit, batch_size=batch_size,
            cache_dir=cache_dir, state=state, progress=progress,
        )
    results = report.results_dict(model_name, task_results)
    if state.is_main_process:
        report.write_report(results, output_dir)
    state.wait_for_everyone()
    return results
