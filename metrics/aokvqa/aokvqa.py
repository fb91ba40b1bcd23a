"""A-OKVQA accuracy, multiple-choice and direct-answer, as the official A-OKVQA evaluation computes it.

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `aokvqa_multiple_choice_accuracy` and
`aokvqa_direct_answer_accuracy` are the plain functions; `Aokvqa` picks one by input type.

Source of truth: allenai/aokvqa, evaluation/eval_predictions.py (`eval_aokvqa`):
- multiple choice: 1 if the chosen choice is the correct one, else 0;
- direct answer: min(1, #direct_answers equal to the prediction / 3) over the 10 direct answers,
  with no leave-one-out and no answer normalisation (`pred == da`). `normalize` lets the caller
  normalise generated answers first; leave it out to match the official numbers.
Which questions to score (the official script drops `difficult_direct_answer` ones in some
settings) is the data's business, not the metric's.
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{schwenk2022okvqa,
  title={A-OKVQA: A Benchmark for Visual Question Answering using World Knowledge},
  author={Schwenk, Dustin and Khandelwal, Apoorv and Clark, Christopher and Marino, Kenneth and Mottaghi, Roozbeh},
  booktitle={ECCV},
  year={2022}
}
"""

_DESCRIPTION = """\
A-OKVQA accuracy. Multiple choice (integer inputs): chosen index == correct index. Direct answer
(string predictions, lists of direct answers): min(1, #matching direct answers / 3).
Reported 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` | `list` of `str`): chosen choice indices (multiple choice), or
        generated answers (direct answer).
    references (`list` of `int` | `list` of `list` of `str`): correct choice indices, or the
        direct answers of each question.
    normalize (`callable`, optional, direct answer only): str -> str, applied to both sides.
Returns:
    aokvqa (`float`): 0-100.
    setting (`str`): "multiple_choice" or "direct_answer", from the input types.
Examples:
    >>> metric = evaluate.load("metrics/aokvqa")
    >>> metric.compute(predictions=[1, 3], references=[1, 0])
    {'aokvqa': 50.0, 'setting': 'multiple_choice'}
"""


def _check_pair(predictions, references):
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    return predictions, references


def aokvqa_multiple_choice_accuracy(predictions, references) -> float:
    """Percentage of questions whose chosen choice index equals the correct one, 0-100."""
    predictions, references = _check_pair(predictions, references)
    for name, values in (("predictions", predictions), ("references", references)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{name}: multiple choice expects integer choice indices.")
    return 100.0 * sum(1 for p, r in zip(predictions, references) if p == r) / len(predictions)


def aokvqa_direct_answer_accuracy(predictions, references, normalize=None) -> float:
    """Mean of min(1, #direct answers equal to the prediction / 3), 0-100."""
    predictions, references = _check_pair(predictions, references)
    if not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: direct answer expects answer strings.")
    for answers in references:
        if isinstance(answers, str) or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError("references: direct answer expects one non-empty list of answer strings per prediction.")
    if normalize is not None and not callable(normalize):
        raise ValueError(f"normalize: expected a str -> str function, got {type(normalize).__name__}.")
    norm = normalize or (lambda text: text)
    total = 0.0
    for prediction, answers in zip(predictions, references):
        predicted = norm(prediction)
        total += min(1.0, sum(1 for answer in answers if norm(answer) == predicted) / 3.0)
    return 100.0 * total / len(predictions)


def aokvqa(predictions, references, normalize=None) -> dict:
    """A-OKVQA accuracy; the setting follows the input types (ints: multiple choice, strings: direct answer).

    Returns:
        {"aokvqa": float, "setting": "multiple_choice" | "direct_answer"}
    """
    predictions = list(predictions)
    if predictions and isinstance(predictions[0], str):
        score = aokvqa_direct_answer_accuracy(predictions, references, normalize=normalize)
        return {"aokvqa": score, "setting": "direct_answer"}
    if normalize is not None:
        raise ValueError("normalize: only applies to the direct-answer setting (string predictions).")
    return {"aokvqa": aokvqa_multiple_choice_accuracy(predictions, references), "setting": "multiple_choice"}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Aokvqa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
                ),
            ],
            codebase_urls=["https://github.com/allenai/aokvqa"],
        )

    def _compute(self, predictions, references, normalize=None):
        return aokvqa(predictions, references, normalize=normalize)
