"""The evaluation report: results JSON, the paper's Table 1 with the published rows beside ours
(markdown), a bar chart of the same comparison (PNG), and `model-index` entries for a model card.

The published numbers are the paper's Table 1 (zero-shot, held-out; Dai et al., 2023). Only scores
on a task's full official split stand beside them (each result's `data`, runner.data_provenance):
a synthetic sample, a `--limit` or a partial download is reported with what it was, apart from the
paper. This module formats results; it runs no model and computes no metric.
"""

import json
import math
import os

from huggingface_hub import EvalResult
from huggingface_hub.repocard_data import eval_results_to_model_index

from .tasks import TASKS

# Table 1's columns, in the paper's order and with its headers.
TABLE1_COLUMNS = {
    "nocaps": "NoCaps",
    "flickr30k": "Flickr",
    "gqa": "GQA",
    "vsr": "VSR",
    "iconqa": "IconQA",
    "textvqa": "TextVQA",
    "visdial": "Visdial",
    "hateful_memes": "HM",
    "vizwiz": "VizWiz",
    "scienceqa": "SciQA",
    "msvd_qa": "MSVD",
    "msrvtt_qa": "MSRVTT",
    "ivqa": "iVQA",
}
_ = None  # "–" in the paper: not reported
# fmt: off
PUBLISHED_TABLE1 = {  # model -> one value per TABLE1_COLUMNS entry
    "BLIP-2 (FlanT5XXL)":       (98.4, 73.7, 44.6, 68.2, 45.4, 44.1, 46.9, 52.0, 29.4, 64.5, 34.4, 17.4, 45.8),
    "Flamingo-80B":             (_,    67.2, _,    _,    _,    35.0, _,    46.4, 31.6, _,    35.6, 17.4, 40.7),
    "InstructBLIP (FlanT5XL)":  (119.9, 84.5, 48.4, 64.8, 50.0, 46.6, 46.6, 56.6, 32.7, 70.4, 43.4, 25.0, 53.1),
    "InstructBLIP (FlanT5XXL)": (120.0, 83.5, 47.9, 65.6, 51.2, 46.6, 48.5, 54.1, 30.9, 70.6, 44.3, 25.6, 53.8),
    "InstructBLIP (Vicuna-7B)": (123.1, 82.4, 49.2, 54.3, 43.1, 50.1, 45.2, 59.6, 34.5, 60.5, 41.8, 22.1, 52.2),
    "InstructBLIP (Vicuna-13B)": (121.9, 82.8, 49.5, 52.1, 44.8, 50.7, 45.4, 57.5, 33.4, 63.1, 41.2, 24.8, 51.0),
}
# fmt: on
PUBLISHED_SOURCE = "Dai et al., InstructBLIP (NeurIPS 2023), Table 1: zero-shot results on held-out datasets"

METRIC_NAMES = {
    "cider": "CIDEr",
    "vqa_accuracy": "VQA accuracy",
    "accuracy": "Accuracy",
    "ivqa_accuracy": "iVQA accuracy",
    "mrr": "MRR",
    "roc_auc": "ROC AUC",
    "aokvqa": "A-OKVQA accuracy",
}
HUB_TASK_TYPES = {"cider": "image-to-text", "roc_auc": "image-classification"}  # else visual-question-answering


def published(model: str) -> dict:
    """{task: published score} of one Table 1 row (tasks the paper leaves blank are left out)."""
    return {task: value for task, value in zip(TABLE1_COLUMNS, PUBLISHED_TABLE1[model]) if value is not None}


def results_dict(model_name: str, task_results: dict) -> dict:
    """The results JSON: our model's per-task results beside the published Table 1."""
    return {
        "model": model_name,
        "tasks": task_results,
        "published": {"source": PUBLISHED_SOURCE, "rows": {model: published(model) for model in PUBLISHED_TABLE1}},
    }


def _format(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def comparable_tasks(results: dict) -> list[str]:
    """Our tasks whose score may stand beside published numbers: run on the full official split
    (runner.data_provenance's `comparable`; results without provenance are not)."""
    return [name for name, result in results["tasks"].items() if result.get("comparable") and not result.get("finetuned")]


def _role(result: dict) -> str:
    """held-out (zero-shot), held-in, or fine-tuned: a held-out dataset the model was trained on."""
    if result.get("finetuned"):
        return "fine-tuned"
    return "held-out" if result.get("held_out", True) else "held-in"


def _data(result: dict) -> str:
    return (result.get("data") or {}).get("description", "not recorded")


def _files(result: dict) -> str:
    files = (result.get("data") or {}).get("files") or {}
    return ", ".join(f"{path} ({count:,})" for path, count in files.items()) or "not recorded"


def markdown_table(results: dict) -> str:
    """Table 1 as the paper lays it out (published rows, then ours) when some of our Table 1 tasks
    ran on their full official split, with only those scores in our row; then every task we ran with
    the data it read (description, files and raw items per file), split, metric, samples and score.
    A run on other data (a synthetic sample, a --limit, a partial download) is never put beside the
    published rows."""
    model, ours = results["model"], results["tasks"]
    comparable = comparable_tasks(results)
    in_table1 = [task for task in TABLE1_COLUMNS if task in comparable]
    finetuned = [task for task in ours if ours[task].get("finetuned")]
    set_apart = [task for task in ours if task not in comparable and task not in finetuned]
    if in_table1:
        lines = [
            "## Zero-shot results on held-out datasets (the paper's Table 1)",
            "",
            "| Model | " + " | ".join(TABLE1_COLUMNS.values()) + " |",
            "|---|" + "---:|" * len(TABLE1_COLUMNS),
        ]
        for name, values in PUBLISHED_TABLE1.items():
            lines.append(f"| {name} | " + " | ".join(_format(v) for v in values) + " |")
        row = [_format(ours[task]["score"]) if task in in_table1 else "–" for task in TABLE1_COLUMNS]
        lines.append(f"| **{model} (ours)** | " + " | ".join(row) + " |")
        lines += ["", f"Published rows: {PUBLISHED_SOURCE}. Ours: this run, on the full official splits "
                  "(– where a task was not run on one)."]
        if finetuned:
            lines += ["", "Not in this table, because the model was fine-tuned on them (not zero-shot): "
                      + ", ".join(ours[task]["title"] for task in finetuned) + "."]
        if set_apart:
            lines += ["", "Not in this table, because their data is not the full official split: "
                      + "; ".join(f"{ours[task]['title']} ({_data(ours[task])})" for task in set_apart) + "."]
    else:
        reasons = []
        if set_apart:
            reasons.append("none of this run's other data is a full official split (see *Data* below)" if finetuned
                           else "none of this run's data is a full official split (see *Data* below)")
        if finetuned:
            reasons.append("the model was fine-tuned on " + ", ".join(ours[task]["title"] for task in finetuned)
                           + " (not zero-shot)")
        lines = [
            f"## Results of {model}" if finetuned else f"## Zero-shot results of {model}",
            "",
            "No published numbers are shown: " + "; ".join(reasons) + ", so its scores are not comparable with the "
            "paper's Table 1.",
        ]
    lines += [
        "",
        "### Our runs",
        "",
        "| Task | Data | Read from (raw items) | Split | Metric | Samples | Score |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name, result in ours.items():
        limited = " (limit)" if result.get("limit") is not None else ""
        role = _role(result)
        lines.append(
            f"| {result['title']} ({role}) | {_data(result)} | {_files(result)} | {result['split']} | "
            f"{METRIC_NAMES.get(result['metric'], result['metric'])} | {result['num_samples']}{limited} | "
            f"{_format(result['score'])} |"
        )
    if set_apart:
        lines += ["", "The model card's `model-index` holds only the scores on full official splits."]
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def chart_tasks_and_title(results: dict) -> tuple[list[str], str]:
    """The chart's tasks and title: the Table 1 tasks run on their full official splits (the others
    named in the title), or, with none, every task we ran, the title saying on what data and that it
    is not comparable with the paper."""
    ours = results["tasks"]
    comparable = comparable_tasks(results)
    tasks = [task for task in TABLE1_COLUMNS if task in comparable]
    finetuned = [task for task in ours if ours[task].get("finetuned")]
    note = ("\n" + _wrap("not shown (fine-tuned on, not zero-shot): " + ", ".join(ours[t]["title"] for t in finetuned))
            if finetuned else "")
    if tasks:
        title = "Zero-shot on the full official splits: ours vs. the paper's Table 1"
        others = [ours[task]["title"] for task in ours if task not in tasks and task not in finetuned]
        if others:
            title += "\n" + _wrap("not shown (not a full official split): " + ", ".join(others))
        return tasks, title + note
    tasks = [task for task in ours if task not in finetuned]
    synthetic = bool(tasks) and all((ours[task].get("data") or {}).get("synthetic") for task in tasks)
    what = "a synthetic sample" if synthetic else "data that is not the full official split"
    title = f"Zero-shot on {what}: not comparable with the paper's Table 1\n" + _wrap(
        "; ".join(f"{ours[task]['title']}: {_data(ours[task])}" for task in tasks))
    return tasks, title + note


def plot_comparison(results: dict, path: str, compare_with=None) -> str:
    """A grouped bar chart (PNG). With Table 1 tasks run on their full official splits: our scores on
    those beside the published rows (`compare_with`: row names, default all), the other tasks named
    in the title. Otherwise: our scores alone, the title saying what data they are on and that they
    are not comparable with the paper."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ours = results["tasks"]
    tasks, title = chart_tasks_and_title(results)
    series = {}
    if tasks and all(task in comparable_tasks(results) for task in tasks):
        for model in compare_with if compare_with is not None else PUBLISHED_TABLE1:
            row = published(model)
            if any(task in row for task in tasks):
                series[model] = [row.get(task, math.nan) for task in tasks]
    series[f"{results['model']} (ours)"] = [
        ours[task]["score"] if ours[task]["score"] is not None else math.nan for task in tasks
    ]

    figure = Figure(figsize=(max(6.5, 1.1 * len(tasks) + 2.0), 4.5 + 0.2 * title.count("\n")))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        positions = [i - 0.4 + width * (k + 0.5) for i in range(len(tasks))]
        axes.bar(positions, values, width, label=label, hatch="//" if label.endswith("(ours)") else None)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels([TABLE1_COLUMNS.get(task, ours[task]["title"]) for task in tasks], rotation=30, ha="right")
    axes.set_ylabel("score (CIDEr, accuracy, MRR, AUC; 0-100 scale)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def eval_results(results: dict) -> list[EvalResult]:
    """`huggingface_hub.EvalResult`s of our scored tasks on full official splits, for
    `ModelCardData(eval_results=...)`: a score on other data must not be listed as the benchmark's."""
    entries = []
    for name, result in results["tasks"].items():
        if not result.get("comparable") or result["score"] is None:  # fine-tuned ones are named so below
            continue
        setting = {"fine-tuned": "Fine-tuned", "held-out": "Zero-shot", "held-in": "Held-in"}[_role(result)]
        entries.append(
            EvalResult(
                task_type=HUB_TASK_TYPES.get(result["metric"], "visual-question-answering"),
                task_name=f"{setting} {result['title']}",
                dataset_type=result["dataset"],
                dataset_name=TASKS[name].title if name in TASKS else result["title"],
                dataset_split=result["split"],
                metric_type=result["metric"],
                metric_name=METRIC_NAMES.get(result["metric"], result["metric"]),
                metric_value=round(float(result["score"]), 2),
            )
        )
    return entries


def model_index(results: dict) -> list[dict]:
    """The `model-index` list a model card's metadata carries (the Hub's format)."""
    entries = eval_results(results)
    return eval_results_to_model_index(results["model"], entries) if entries else []


def write_report(results: dict, output_dir: str, compare_with=None) -> dict:
    """Write results.json, table1.md, table1.png and model_index.json; return {kind: path}."""
    paths = {
        "results": os.path.join(output_dir, "results.json"),
        "table": os.path.join(output_dir, "table1.md"),
        "chart": os.path.join(output_dir, "table1.png"),
        "model_index": os.path.join(output_dir, "model_index.json"),
    }
    with open(paths["results"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    with open(paths["table"], "w", encoding="utf-8") as f:
        f.write(markdown_table(results))
    plot_comparison(results, paths["chart"], compare_with=compare_with)
    with open(paths["model_index"], "w", encoding="utf-8") as f:
        json.dump(model_index(results), f, indent=2, ensure_ascii=False)
    return paths
