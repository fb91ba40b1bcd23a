"""Visual Dialog retrieval metrics (MRR, R@1, R@5, R@10, mean rank) from candidate scores.

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `ground_truth_rank` and `mrr` are the plain functions; `Mrr` wraps
them.

Source of truth: the official VisDial evaluation (batra-mlp-lab/visdial-challenge-starter-pytorch,
visdialch/metrics.py): candidates are sorted by descending score, the ground truth's 1-based
position is its rank, and R@k = mean(rank <= k), mean rank = mean(rank), MRR = mean(1 / rank).
Ties, which that code leaves to `torch.sort`, are broken here by candidate order (a stable sort):
an equal-scoring candidate listed before the ground truth ranks above it.
"""

import math

import datasets
import evaluate

_DESCRIPTION = """\
Visual Dialog metrics from the scores given to the (100) candidate answers: mean reciprocal rank
of the ground truth, recall at 1, 5 and 10 (all 0-100), and mean rank (1 = best).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): the score of every candidate of each question
        (higher is better, e.g. the candidate's log-likelihood).
    references (`list` of `int`): index of the ground-truth candidate of each question.
Returns:
    mrr (`float`): mean reciprocal rank, 0-100.
    r@1, r@5, r@10 (`float`): recall at k, 0-100.
    mean_rank (`float`): mean rank of the ground truth, 1 = best.
Examples:
    >>> metric = evaluate.load("metrics/mrr")
    >>> metric.compute(predictions=[[0.1, 0.9, 0.5]], references=[2])
    {'mrr': 50.0, 'r@1': 0.0, 'r@5': 100.0, 'r@10': 100.0, 'mean_rank': 2.0}
"""


def ground_truth_rank(scores, ground_truth_index: int) -> int:
    """1-based rank of the ground truth under a stable descending sort of `scores`."""
    gt_score = scores[ground_truth_index]
    higher = sum(1 for score in scores if score > gt_score)
    tied_before = sum(1 for score in scores[:ground_truth_index] if score == gt_score)
    return 1 + higher + tied_before


def mrr(predictions, references) -> dict:
    """Visual Dialog metrics over a set of questions.

    Args:
        predictions: per question, the list of candidate scores.
        references: per question, the ground-truth candidate index.
    Returns:
        {"mrr", "r@1", "r@5", "r@10"} in 0-100 and {"mean_rank"} in ranks.
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    ranks = []
    for scores, gt_index in zip(predictions, references):
        if isinstance(scores, (str, bytes)) or not hasattr(scores, "__len__") or len(scores) == 0:
            raise ValueError("predictions: expected one non-empty list of candidate scores per question.")
        scores = list(scores)
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and not math.isnan(s) for s in scores):
            raise ValueError("predictions: candidate scores must be numbers (no NaN).")
        if not isinstance(gt_index, int) or isinstance(gt_index, bool) or not 0 <= gt_index < len(scores):
            raise ValueError(
                f"references: expected a ground-truth index in [0, {len(scores)}), got {gt_index!r}."
            )
        ranks.append(ground_truth_rank(scores, gt_index))
    n = len(ranks)
    return {
        "mrr": 100.0 * sum(1.0 / rank for rank in ranks) / n,
        "r@1": 100.0 * sum(1 for rank in ranks if rank <= 1) / n,
        "r@5": 100.0 * sum(1 for rank in ranks if rank <= 5) / n,
        "r@10": 100.0 * sum(1 for rank in ranks if rank <= 10) / n,
        "mean_rank": sum(ranks) / n,
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Mrr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.List(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            codebase_urls=["https://github.com/batra-mlp-lab/visdial-challenge-starter-pytorch"],
        )

    def _compute(self, predictions, references):
        return mrr(predictions, references)
