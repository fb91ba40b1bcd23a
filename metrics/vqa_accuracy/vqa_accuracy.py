"""VQA accuracy (VQAv2, OK-VQA, TextVQA, VizWiz), as the official VQA evaluation script computes it.

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository. `normalize_vqa_answer` and `vqa_accuracy` are the plain functions;
the `VqaAccuracy` class only wraps them.

Source of truth: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (master).
Its behaviour is kept, quirks included, so that numbers compare with published ones:

- the prediction is always normalised: newlines/tabs to spaces, strip, punctuation, then lower
  case, number words to digits, articles dropped, contractions restored;
- the human answers are used as stored (the datasets ship them already normalised); only when
  the humans disagree is punctuation processed in them, and nothing else;
- accuracy of a question = mean over the leave-one-out subsets of the human answers of
  min(#answers in the subset equal to the prediction / 3, 1).
"""

import re
from collections import defaultdict

import datasets
import evaluate

_CITATION = """\
@inproceedings{antol2015vqa,
  title={{VQA}: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={ICCV},
  year={2015}
}
"""

_DESCRIPTION = """\
VQA accuracy: min(#humans who gave the predicted answer / 3, 1), averaged over the leave-one-out
subsets of the human answers, after the official answer normalisation. Reported x100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one generated answer per question.
    references (`list` of `list` of `str`): the human answers of each question (10 in VQAv2;
        any number >= 2 works).
    answer_types (`list` of `str`, optional): one answer type per question ("yes/no",
        "number", "other"); adds a per-type breakdown.
Returns:
    vqa_accuracy (`float`): mean accuracy, 0-100.
    vqa_accuracy_per_answer_type (`dict`, only with `answer_types`): type -> accuracy, 0-100.
Examples:
    >>> metric = evaluate.load("metrics/vqa_accuracy")
    >>> metric.compute(predictions=["Two."], references=[["2"] * 10])
    {'vqa_accuracy': 100.0}
"""

# The tables below are the official script's, entry for entry (including keys such as "Im" that
# can never match because words are lower-cased first).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# No "." (handled below), no "'" (contractions keep it), no ":" or "*" or "%".
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a lookahead (not a lookbehind)
# that never fires, so a period survives only when a digit follows it ("3.5", ".5").
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The official script passes re.UNICODE (= 32) where `re.sub` takes `count`.
_MAX_PERIODS_STRIPPED = 32


def process_punctuation(text: str) -> str:
    """Official `processPunctuation`: delete or space out punctuation, drop periods not before a digit.

    A mark is deleted when it touches a space somewhere in the text, or when the text has a comma
    between digits ("1,000" -> "1000"); otherwise it becomes a space ("red-and-white" ->
    "red and white"). The tests are made on the input text, not on the text being edited.
    """
    out = text
    digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in _PUNCTUATION:
        if digit_comma or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_MAX_PERIODS_STRIPPED)


def process_digit_article(text: str) -> str:
    """Official `processDigitArticle`: lower-case, number words to digits, drop articles, restore contractions."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise a predicted answer exactly as the official script does before matching it."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def vqa_question_accuracy(prediction: str, human_answers: list[str]) -> float:
    """Accuracy of one prediction against one question's human answers, in [0, 1]."""
    if len(human_answers) < 2:
        raise ValueError(
            "references: VQA accuracy leaves one human answer out, so each question needs at least "
            f"2 answers (got {len(human_answers)}); use the accuracy metric for single-answer data."
        )
    predicted = normalize_vqa_answer(prediction)
    answers = list(human_answers)
    if len(set(answers)) > 1:
        answers = [process_punctuation(answer) for answer in answers]
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(1 for i, answer in enumerate(answers) if i != left_out and answer == predicted)
        total += min(1.0, matches / 3.0)
    return total / len(answers)


def vqa_accuracy(predictions, references, answer_types=None) -> dict:
    """Official VQA accuracy over a set of questions, 0-100.

    Args:
        predictions: one answer string per question.
        references: one list of human answer strings per question.
        answer_types: optional answer type per question, for a per-type breakdown.
    Returns:
        {"vqa_accuracy": float} plus {"vqa_accuracy_per_answer_type": {type: float}} when
        `answer_types` is given.
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(
            f"references: got {len(references)} for {len(predictions)} predictions; need one list of "
            "human answers per prediction."
        )
    for prediction in predictions:
        if not isinstance(prediction, str):
            raise ValueError(f"predictions: expected strings, got {type(prediction).__name__}.")
    for answers in references:
        if isinstance(answers, str) or not all(isinstance(answer, str) for answer in answers):
            raise ValueError("references: expected one list of answer strings per prediction.")
    if answer_types is not None and len(answer_types) != len(predictions):
        raise ValueError(f"answer_types: got {len(answer_types)} for {len(predictions)} predictions.")

    scores = [vqa_question_accuracy(p, r) for p, r in zip(predictions, references)]
    result = {"vqa_accuracy": 100.0 * sum(scores) / len(scores)}
    if answer_types is not None:
        per_type = defaultdict(list)
        for answer_type, score in zip(answer_types, scores):
            per_type[answer_type].append(score)
        result["vqa_accuracy_per_answer_type"] = {
            answer_type: 100.0 * sum(type_scores) / len(type_scores) for answer_type, type_scores in per_type.items()
        }
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
            ),
            codebase_urls=["https://github.com/GT-Vision-Lab/VQA"],
        )

    def _compute(self, predictions, references, answer_types=None):
        return vqa_accuracy(predictions, references, answer_types=answer_types)
