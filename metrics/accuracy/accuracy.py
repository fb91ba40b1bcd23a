"""Accuracy: exact match of predictions with references (GQA, VSR, IconQA, ScienceQA, MSVD-QA, MSRVTT-QA).

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `accuracy` is the plain function; `Accuracy` only wraps it.

Ranking tasks pass integer labels (index of the chosen vs. the correct candidate); generation
tasks pass strings. Answer normalisation is the caller's choice, given as a function: the LAVIS
GQA protocol, for instance, matches after the VQA answer normalisation, i.e.
`normalize=metrics.vqa_accuracy.vqa_accuracy.normalize_vqa_answer`.
"""

import datasets
import evaluate

_DESCRIPTION = """\
Accuracy: the percentage of predictions equal to their reference (strings, optionally normalised
first, or integer labels). Reported 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str` or `int`): predicted answers, or chosen candidate indices.
    references (`list` of `str` or `int`): correct answers, or correct candidate indices.
    normalize (`callable`, optional): str -> str, applied to predictions and references (strings
        only) before matching.
Returns:
    accuracy (`float`): 0-100.
Examples:
    >>> metric = evaluate.load("metrics/accuracy")
    >>> metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    {'accuracy': 66.66666666666667}
"""


def accuracy(predictions, references, normalize=None) -> dict:
    """Percentage of exact matches, 0-100.

    Args:
        predictions: strings, or integer labels.
        references: same type as `predictions`, one per prediction.
        normalize: optional str -> str function applied to both sides (strings only).
    Returns:
        {"accuracy": float}
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    are_strings = isinstance(predictions[0], str)
    expected = str if are_strings else int
    for name, values in (("predictions", predictions), ("references", references)):
        for value in values:
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(
                    f"{name}: expected all values to be {expected.__name__} (like predictions[0]), "
                    f"got {type(value).__name__}."
                )
    if normalize is not None:
        if not are_strings:
            raise ValueError("normalize: only applies to string predictions, got integer labels.")
        if not callable(normalize):
            raise ValueError(f"normalize: expected a str -> str function, got {type(normalize).__name__}.")
        predictions = [normalize(p) for p in predictions]
        references = [normalize(r) for r in references]
    correct = sum(1 for p, r in zip(predictions, references) if p == r)
    return {"accuracy": 100.0 * correct / len(predictions)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, normalize=None):
        return accuracy(predictions, references, normalize=normalize)
