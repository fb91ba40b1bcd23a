"""ROC AUC for binary classification from positive-class scores (HatefulMemes).

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `roc_auc` is the plain function; `RocAuc` wraps it.

AUC is computed as the Mann-Whitney statistic with average ranks for tied scores, which equals
the area under the ROC curve traced through every distinct threshold, ties counted as half a
win: the value `sklearn.metrics.roc_auc_score` returns.
"""

import math

import datasets
import evaluate

_DESCRIPTION = """\
Area under the ROC curve of positive-class scores against 0/1 labels, ties counted half.
Reported 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): score of the positive class (e.g. P(hateful), or the
        log-likelihood margin of the positive verbaliser).
    references (`list` of `int`): 1 for positive, 0 for negative; both must occur.
Returns:
    roc_auc (`float`): 0-100.
Examples:
    >>> metric = evaluate.load("metrics/roc_auc")
    >>> metric.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'roc_auc': 75.0}
"""


def roc_auc(predictions, references) -> dict:
    """ROC AUC of positive-class scores against binary labels, 0-100.

    Args:
        predictions: one real-valued positive-class score per example.
        references: one label in {0, 1} per example.
    Returns:
        {"roc_auc": float}
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    for score in predictions:
        if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
            raise ValueError(f"predictions: expected real-valued scores, got {score!r}.")
    if any(label not in (0, 1) or isinstance(label, float) for label in references):
        raise ValueError("references: expected labels 0 or 1.")
    n_pos = sum(references)
    n_neg = len(references) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("references: ROC AUC needs both positive and negative examples.")

    # Average 1-based ranks over runs of equal scores.
    order = sorted(range(len(predictions)), key=predictions.__getitem__)
    ranks = [0.0] * len(order)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and predictions[order[end + 1]] == predictions[order[start]]:
            end += 1
        average = (start + end) / 2.0 + 1.0
        for k in range(start, end + 1):
            ranks[order[k]] = average
        start = end + 1
    positive_rank_sum = sum(rank for rank, label in zip(ranks, references) if label == 1)
    auc = (positive_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return {"roc_auc": 100.0 * auc}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return roc_auc(predictions, references)
