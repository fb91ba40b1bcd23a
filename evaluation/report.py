"""The evaluation report: results JSON, the paper's Table 1 with the published rows beside ours
(markdown), a bar chart of the same comparison (PNG), and `model-index` entries for a model card.

The published numbers are the paper's Table 1 (zero-shot, held-out), REFERENCE §7. This module
formats results; it runs no model and computes no metric.
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


def markdown_table(results: dict) -> str:
    """Table 1 as the paper lays it out (published rows, then ours), followed by the details of
    every task we ran (split, metric, number of samples) and any held-in results."""
    model, ours = results["model"], results["tasks"]
    header = "| Model | " + " | ".join(TABLE1_COLUMNS.values()) + " |"
    lines = [
        "## Zero-shot results on held-out datasets (the paper's Table 1)",
        "",
        header,
        "|---|" + "---:|" * len(TABLE1_COLUMNS),
    ]
    for name, values in PUBLISHED_TABLE1.items():
        lines.append(f"| {name} | " + " | ".join(_format(v) for v in values) + " |")
    row = [_format(ours[task]["score"]) if task in ours else "–" for task in TABLE1_COLUMNS]
    lines.append(f"| **{model} (ours)** | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Published rows: {PUBLISHED_SOURCE}. Ours: this run (– where a task was not run).",
        "",
        "### Our runs",
        "",
        "| Task | Dataset | Split | Metric | Samples | Score |",
        "|---|---|---|---|---:|---:|",
    ]
    for name, result in ours.items():
        limited = " (limit)" if result.get("limit") is not None else ""
        role = "held-out" if result.get("held_out", True) else "held-in"
        lines.append(
            f"| {result['title']} ({role}) | {result['dataset']} | {result['split']} | "
            f"{METRIC_NAMES.get(result['metric'], result['metric'])} | {result['num_samples']}{limited} | "
            f"{_format(result['score'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_comparison(results: dict, path: str, compare_with=None) -> str:
    """A grouped bar chart (PNG) of our scores beside the published rows, on the Table 1 tasks we
    ran (or, with none, on the held-in tasks we ran). `compare_with`: published row names (default all)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ours = results["tasks"]
    tasks = [task for task in TABLE1_COLUMNS if task in ours] or list(ours)
    series = {}
    for model in compare_with if compare_with is not None else PUBLISHED_TABLE1:
        row = published(model)
        if any(task in row for task in tasks):
            series[model] = [row.get(task, math.nan) for task in tasks]
    series[f"{results['model']} (ours)"] = [
        ours[task]["score"] if ours[task]["score"] is not None else math.nan for task in tasks
    ]

    figure = Figure(figsize=(max(6.0, 1.1 * len(tasks) + 2.0), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        positions = [i - 0.4 + width * (k + 0.5) for i in range(len(tasks))]
        axes.bar(positions, values, width, label=label, hatch="//" if label.endswith("(ours)") else None)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels([TABLE1_COLUMNS.get(task, ours[task]["title"]) for task in tasks], rotation=30, ha="right")
    axes.set_ylabel("score (CIDEr, accuracy, MRR, AUC; 0-100 scale)")
    axes.set_title("Zero-shot evaluation: ours vs. the paper's Table 1")
    axes.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def eval_results(results: dict) -> list[EvalResult]:
    """`huggingface_hub.EvalResult`s of our scored tasks, for `ModelCardData(eval_results=...)`."""
    entries = []
    for name, result in results["tasks"].items():
        if result["score"] is None:
            continue
        setting = "Zero-shot" if result.get("held_out", True) else "Held-in"
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
