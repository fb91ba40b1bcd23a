"""What a training run leaves next to the model besides its card (`publish.model_card`) and its upload
(`publish.publish_model`): the loss curve, and the check that a model answers from the image (held-in
accuracy per kind of question against an image-blind baseline). Nothing here touches the network.
"""

import re
from collections import Counter

from metrics.vqa_accuracy.vqa_accuracy import normalize_vqa_answer

from .data import answer_matches

LOSS_CURVE_FILENAME = "loss_curve.png"  # next to the model; its card shows it


def plot_loss_curve(log_history: list[dict], path: str) -> str | None:
    """Training loss (and validation loss, if any) against the optimiser step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not evals:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    if train:
        axis.plot(*zip(*train), label="train loss")
    if evals:
        axis.plot(*zip(*evals), "o-", label="held-in validation loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (per target token)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------
# Does the model answer from the image? Held-in short-answer accuracy per kind of question,
# against the best answer a model that never looks at the image could give.
# ---------------------------------------------------------------------------------------------


def question_kind(question: str) -> str:
    """The first two words of a question ("what color", "how many"): questions of one kind share
    their answer vocabulary, so a constant answer per kind is the image-blind baseline."""
    words = re.findall(r"[a-z0-9]+", question.lower())
    return " ".join(words[:2]) or "(no question)"


def answer_report(predictions: list[str], records: list[dict], train_records: list[dict]) -> dict:
    """Accuracy of `predictions` on `records` (held-in validation questions: `question`, `answers`,
    `target`) per question kind and overall, next to the image-blind baseline: for each kind, the
    answer most often given in `train_records` (ties: alphabetical), answered to every question.

    Returns {"kinds": {kind: {"questions", "accuracy", "baseline", "baseline_answer"}}, "overall": {...}}.
    """
    if len(predictions) != len(records):
        raise ValueError(f"{len(predictions)} predictions for {len(records)} records")
    counts = {}
    for record in train_records:
        kind_counts = counts.setdefault(question_kind(record["question"]), Counter())
        kind_counts[normalize_vqa_answer(record["target"])] += 1
    majority = {kind: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for kind, c in counts.items()}
    rows = {}
    for prediction, record in zip(predictions, records):
        kind = question_kind(record["question"])
        row = rows.setdefault(kind, {"questions": 0, "hits": 0, "baseline_hits": 0, "baseline_answer": majority.get(kind)})
        row["questions"] += 1
        row["hits"] += answer_matches(prediction, record)
        row["baseline_hits"] += answer_matches(majority.get(kind), record)

    def summary(row):
        n = max(row["questions"], 1)
        return {"questions": row["questions"], "accuracy": row["hits"] / n, "baseline": row["baseline_hits"] / n}
    total = {key: sum(row[key] for row in rows.values()) for key in ("questions", "hits", "baseline_hits")}
    return {
        "kinds": {kind: {**summary(row), "baseline_answer": row["baseline_answer"]} for kind, row in sorted(rows.items())},
        "overall": summary(total),
    }


def format_answer_report(report: dict) -> str:
    """`answer_report` as a markdown table."""
    lines = [
        "| question kind | questions | accuracy | image-blind baseline (its answer) |",
        "|---|---:|---:|---|",
    ]
    for kind, row in report["kinds"].items():
        lines.append(
            f"| {kind} | {row['questions']} | {row['accuracy']:.2f} | {row['baseline']:.2f} ({row['baseline_answer']}) |"
        )
    overall = report["overall"]
    lines.append(f"| **all** | {overall['questions']} | {overall['accuracy']:.2f} | {overall['baseline']:.2f} |")
    return "\n".join(lines)
