"""iVQA accuracy, the rule of the Just Ask paper (Yang et al., ICCV 2021) and its code.

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `ivqa_accuracy` is the plain function; `IvqaAccuracy` wraps it.

Each iVQA question has 5 annotated answers; a prediction given by k of the 5 annotators scores
min(1, k / 2), so two agreeing annotators make an answer fully right (antoyang/just-ask,
train/train_videoqa.py: `(answer_id / 2).clamp(max=1)` read at the predicted answer). Matching is
exact, as there; `normalize` lets the caller normalise generated answers first.
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{yang2021justask,
  title={Just Ask: Learning to Answer Questions from Millions of Narrated Videos},
  author={Yang, Antoine and Miech, Antoine and Sivic, Josef and Laptev, Ivan and Schmid, Cordelia},
  booktitle={ICCV},
  year={2021}
}
"""

_DESCRIPTION = """\
iVQA accuracy: min(1, #annotators who gave the predicted answer / 2), averaged over questions.
Reported 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one answer per question.
    references (`list` of `list` of `str`): the annotated answers of each question (5 in iVQA).
    normalize (`callable`, optional): str -> str, applied to predictions and answers first.
Returns:
    ivqa_accuracy (`float`): 0-100.
Examples:
    >>> metric = evaluate.load("metrics/ivqa_accuracy")
    >>> metric.compute(predictions=["dog"], references=[["dog", "cat", "cat", "puppy", "dog"]])
    {'ivqa_accuracy': 100.0}
"""


def ivqa_accuracy(predictions, references, normalize=None) -> dict:
    """iVQA accuracy over a set of questions, 0-100.

    Args:
        predictions: one answer string per question.
        references: one list of annotated answer strings per question.
        normalize: optional str -> str function applied to predictions and answers.
    Returns:
        {"ivqa_accuracy": float}
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    if not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: expected one answer string per question.")
    for answers in references:
        if isinstance(answers, str) or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError("references: expected one non-empty list of answer strings per prediction.")
    if normalize is not None and not callable(normalize):
        raise ValueError(f"normalize: expected a str -> str function, got {type(normalize).__name__}.")
    norm = normalize or (lambda text: text)
    total = 0.0
    for prediction, answers in zip(predictions, references):
        predicted = norm(prediction)
        total += min(1.0, sum(1 for answer in answers if norm(answer) == predicted) / 2.0)
    return {"ivqa_accuracy": 100.0 * total / len(predictions)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IvqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
            ),
            codebase_urls=["https://github.com/antoyang/just-ask"],
        )

    def _compute(self, predictions, references, normalize=None):
        return ivqa_accuracy(predictions, references, normalize=normalize)
