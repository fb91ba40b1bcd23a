"""Tests for metrics/: each metric against its official definition, and loading through `evaluate`.

References: pycocoevalcap 1.2 (CIDEr-D and, when Java runs, its Stanford PTBTokenizer), the
official VQA script (GT-Vision-Lab/VQA vqaEval.py, read by hand for the normalisation table),
allenai/aokvqa's eval, antoyang/just-ask's iVQA rule, the VisDial rank metrics, and ROC AUC as the
pairwise (Mann-Whitney) probability with ties counted half.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS_DIR = REPO_ROOT / "metrics"
from metrics.accuracy.accuracy import accuracy
from metrics.aokvqa.aokvqa import aokvqa
from metrics.cider.cider import cider, cider_d_scores, ptb_tokenize
from metrics.ivqa_accuracy.ivqa_accuracy import ivqa_accuracy
from metrics.mrr.mrr import mrr
from metrics.roc_auc.roc_auc import roc_auc
from metrics.vqa_accuracy.vqa_accuracy import normalize_vqa_answer, vqa_accuracy

# ---------------------------------------------------------------------------------------------
# Loading through `evaluate`
# ---------------------------------------------------------------------------------------------

_LOAD_SCRIPT = """
import json, sys
import evaluate
calls = json.loads(sys.argv[2])
print(json.dumps({name: evaluate.load(sys.argv[1] + "/" + name).compute(**kwargs) for name, kwargs in calls}))
"""

_LOAD_CALLS = [
    ("cider", {"predictions": ["a dog runs", "a cat"], "references": [["A dog is running."], ["A cat sleeps."]]}),
    ("vqa_accuracy", {"predictions": ["Two."], "references": [["2"] * 10], "answer_types": ["number"]}),
    ("accuracy", {"predictions": [0, 2, 1], "references": [0, 1, 1]}),
    ("ivqa_accuracy", {"predictions": ["dog"], "references": [["dog", "cat", "cat", "puppy", "dog"]]}),
    ("mrr", {"predictions": [[0.1, 0.9, 0.5]], "references": [2]}),
    ("roc_auc", {"predictions": [0.1, 0.4, 0.35, 0.8], "references": [0, 0, 1, 1]}),
    ("aokvqa", {"predictions": ["x"], "references": [["x", "x", "y"]]}),
]


def test_every_metric_loads_offline_from_outside_the_repository(tmp_path):
    """`evaluate.load(<abs path>)` copies the script alone into a fresh cache and it still computes."""
    env = {
        **os.environ,
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": "",
    }
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(METRICS_DIR), json.dumps(_LOAD_CALLS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["vqa_accuracy"] == {"vqa_accuracy": 100.0, "vqa_accuracy_per_answer_type": {"number": 100.0}}
    assert results["accuracy"] == {"accuracy": pytest.approx(200 / 3)}
    assert results["ivqa_accuracy"] == {"ivqa_accuracy": 100.0}
    assert results["mrr"] == {"mrr": 50.0, "r@1": 0.0, "r@5": 100.0, "r@10": 100.0, "mean_rank": 2.0}
    assert results["roc_auc"] == {"roc_auc": 75.0}
    assert results["aokvqa"] == {"aokvqa": pytest.approx(200 / 3), "setting": "direct_answer"}
    expected_cider = cider(*_LOAD_CALLS[0][1].values())["cider"]
    assert results["cider"]["cider"] == pytest.approx(expected_cider)


@pytest.fixture(scope="module")
def load_metric():
    import evaluate

    return lambda name: evaluate.load(str(METRICS_DIR / name))


def test_loaded_metrics_take_both_input_forms_and_compute_kwargs(load_metric):
    assert load_metric("accuracy").compute(predictions=["Yes.", "two"], references=["yes", "2"],
                                           normalize=normalize_vqa_answer) == {"accuracy": 100.0}
    assert load_metric("aokvqa").compute(predictions=[1, 3], references=[1, 0]) == {
        "aokvqa": 50.0, "setting": "multiple_choice"}


def test_loaded_metric_rejects_mismatched_lengths(load_metric):
    with pytest.raises(ValueError):
        load_metric("vqa_accuracy").compute(predictions=["a", "b"], references=[["a", "a"]])


# ---------------------------------------------------------------------------------------------
# VQA accuracy
# ---------------------------------------------------------------------------------------------

# Expected forms worked out by hand from vqaEval.py's processPunctuation + processDigitArticle.
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("yes.", "yes"),
        ("Yes", "yes"),
        ("  YES \n", "yes"),
        ("two", "2"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("the dog", "dog"),
        ("a man and an apple", "man and apple"),
        ("dont", "don't"),
        ("don't", "don't"),  # "'" is not in the punctuation list
        ("Im", "im"),  # the table's key "Im" cannot match after lower-casing
        ("1,000", "1000"),  # comma between digits: every mark is deleted
        ("red,white", "red white"),  # comma touching no space: replaced by a space
        ("red, white", "red white"),  # comma touching a space: deleted
        ("3.5", "3.5"),  # a period before a digit survives
        ("3.5.", "3.5"),
        (".5", ".5"),
        ("e.g.", "eg"),
        ("black-and-white", "black and white"),
        ("t - shirt", "t shirt"),
        ("what?!", "what"),
        ('"quoted"', "quoted"),
        ("(left)", "left"),
        ("left:right", "left:right"),  # ":" is not in the punctuation list
        ("50%", "50%"),
        ("twenty two", "twenty 2"),
        ("yes\tno", "yes no"),
    ],
)
def test_vqa_answer_normalisation_follows_the_official_script(answer, expected):
    assert normalize_vqa_answer(answer) == expected


@pytest.mark.parametrize(
    "prediction, answers, expected",
    [
        ("yes", ["yes"] * 10, 100.0),
        ("no", ["yes"] * 10, 0.0),
        ("yes", ["yes"] * 3 + ["no"] * 7, 90.0),  # (3 * 2/3 + 7 * 1) / 10
        ("yes", ["yes"] * 2 + ["no"] * 8, 60.0),  # (2 * 1/3 + 8 * 2/3) / 10
        ("yes", ["yes"] + ["no"] * 9, 30.0),  # (1 * 0 + 9 * 1/3) / 10
        ("Two.", ["2"] * 10, 100.0),  # the prediction is always normalised
        ("yes", ["yes"] * 2 + ["no"] * 3, 100 * (2 * 1 / 3 + 3 * 2 / 3) / 5),  # fewer than 10 answers
        ("yes", ["yes", "no"], 100 * (0 + 1 / 3) / 2),  # leaving "yes" out leaves no match
        # Humans disagree: their punctuation is processed, so "yes." counts.
        ("yes", ["yes."] * 9 + ["no"], 100.0),
        # Humans agree: their answers are used as stored, so "yes." does not match "yes".
        ("yes", ["yes."] * 10, 0.0),
        # Only punctuation is processed in human answers, never number words.
        ("two", ["two"] * 5 + ["three"] * 5, 0.0),
    ],
)
def test_vqa_accuracy_exact_values(prediction, answers, expected):
    assert vqa_accuracy([prediction], [answers])["vqa_accuracy"] == pytest.approx(expected)


def test_vqa_accuracy_averages_questions_and_breaks_down_by_answer_type():
    result = vqa_accuracy(
        ["yes", "2", "dog"],
        [["yes"] * 10, ["3"] * 10, ["dog"] + ["cat"] * 9],
        answer_types=["yes/no", "number", "other"],
    )
    assert result["vqa_accuracy"] == pytest.approx((100 + 0 + 30) / 3)
    assert result["vqa_accuracy_per_answer_type"] == pytest.approx({"yes/no": 100.0, "number": 0.0, "other": 30.0})


def test_vqa_accuracy_refuses_single_answer_questions():
    with pytest.raises(ValueError, match="references"):
        vqa_accuracy(["yes"], [["yes"]])


# ---------------------------------------------------------------------------------------------
# accuracy, iVQA, A-OKVQA
# ---------------------------------------------------------------------------------------------


def test_accuracy_on_labels_and_strings():
    assert accuracy([0, 2, 1, 3], [0, 1, 1, 3]) == {"accuracy": 75.0}
    assert accuracy(["yes", "Yes"], ["yes", "yes"]) == {"accuracy": 50.0}
    assert accuracy(["Yes.", "the two"], ["yes", "2"], normalize=normalize_vqa_answer) == {"accuracy": 100.0}


@pytest.mark.parametrize(
    "answers, expected",
    [
        (["cat", "cat", "cat", "bird", "fish"], 0.0),
        (["dog", "cat", "cat", "bird", "fish"], 50.0),
        (["dog", "dog", "cat", "bird", "fish"], 100.0),
        (["dog", "dog", "dog", "dog", "dog"], 100.0),
    ],
)
def test_ivqa_accuracy_is_min_one_matches_over_two(answers, expected):
    assert ivqa_accuracy(["dog"], [answers]) == {"ivqa_accuracy": expected}


def test_ivqa_accuracy_matches_exactly_unless_normalised():
    assert ivqa_accuracy(["Dog."], [["dog", "dog"]])["ivqa_accuracy"] == 0.0
    assert ivqa_accuracy(["Dog."], [["dog", "dog"]], normalize=normalize_vqa_answer)["ivqa_accuracy"] == 100.0


def test_aokvqa_multiple_choice_compares_indices():
    assert aokvqa([0, 1, 2, 3], [0, 1, 0, 0]) == {"aokvqa": 50.0, "setting": "multiple_choice"}


@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 100 / 3), (2, 200 / 3), (3, 100.0), (10, 100.0)])
def test_aokvqa_direct_answer_is_min_one_matches_over_three_without_leave_one_out(matches, expected):
    answers = ["dog"] * matches + ["cat"] * (10 - matches)
    result = aokvqa(["dog"], [answers])
    assert result["setting"] == "direct_answer"
    assert result["aokvqa"] == pytest.approx(expected)


def test_aokvqa_direct_answer_has_no_normalisation_by_default():
    assert aokvqa(["Dog"], [["dog"] * 10])["aokvqa"] == 0.0


# ---------------------------------------------------------------------------------------------
# Visual Dialog ranks
# ---------------------------------------------------------------------------------------------


def test_mrr_hand_computed():
    predictions = [
        [0.9, 0.1, 0.5, 0.3],  # ground truth 0: rank 1
        [0.9, 0.1, 0.5, 0.3],  # ground truth 3: rank 3
        [0.0] * 12 + [1.0],  # ground truth 0: 1 higher + 0 tied before -> rank 2
        [0.0] * 12 + [1.0],  # ground truth 11: 1 higher + 11 tied before -> rank 13
    ]
    result = mrr(predictions, [0, 3, 0, 11])
    assert result["mrr"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 2 + 1 / 13) / 4)
    assert result["r@1"] == 25.0
    assert result["r@5"] == 75.0
    assert result["r@10"] == 75.0
    assert result["mean_rank"] == pytest.approx((1 + 3 + 2 + 13) / 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=100, max_size=100), st.integers(0, 99))
def test_mrr_rank_is_the_position_in_a_stable_descending_sort(scores, gt_index):
    # visdialch's scores_to_ranks: sort descending, the ground truth's position + 1 is its rank.
    order = sorted(range(100), key=lambda i: -scores[i])
    rank = order.index(gt_index) + 1
    result = mrr([scores], [gt_index])
    assert result["mean_rank"] == rank
    assert result["mrr"] == pytest.approx(100 / rank)
    assert result["r@10"] == (100.0 if rank <= 10 else 0.0)


# ---------------------------------------------------------------------------------------------
# ROC AUC
# ---------------------------------------------------------------------------------------------


def test_roc_auc_hand_computed_with_ties():
    # Positives 0.8, 0.4; negatives 0.4, 0.1, 0.2. Pairs: 0.8 beats 3; 0.4 ties one and beats 2.
    assert roc_auc([0.8, 0.4, 0.4, 0.1, 0.2], [1, 1, 0, 0, 0])["roc_auc"] == pytest.approx(100 * 5.5 / 6)
    assert roc_auc([0.5, 0.5], [1, 0]) == {"roc_auc": 50.0}
    assert roc_auc([0.1, 0.9], [1, 0]) == {"roc_auc": 0.0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=2, max_size=40))
def test_roc_auc_equals_the_pairwise_probability_with_ties_counted_half(pairs):
    scores = [float(s) for s, _ in pairs]
    labels = [label for _, label in pairs]
    positives = [s for s, label in pairs if label == 1]
    negatives = [s for s, label in pairs if label == 0]
    if not positives or not negatives:
        with pytest.raises(ValueError, match="references"):
            roc_auc(scores, labels)
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    expected = 100 * wins / (len(positives) * len(negatives))
    assert roc_auc(scores, labels)["roc_auc"] == pytest.approx(expected)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    assert roc_auc(scores, labels)["roc_auc"] == pytest.approx(100 * roc_auc_score(labels, scores))


# ---------------------------------------------------------------------------------------------
# Input errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: vqa_accuracy([], []), "predictions"),
        (lambda: vqa_accuracy(["a"], [["a", "a"], ["b", "b"]]), "references"),
        (lambda: vqa_accuracy(["a"], ["a"]), "references"),
        (lambda: vqa_accuracy([1], [["a", "a"]]), "predictions"),
        (lambda: vqa_accuracy(["a"], [["a", "a"]], answer_types=[]), "answer_types"),
        (lambda: accuracy([], []), "predictions"),
        (lambda: accuracy([1, 2], [1]), "references"),
        (lambda: accuracy(["a"], [1]), "references"),
        (lambda: accuracy([1], [1], normalize=str.lower), "normalize"),
        (lambda: ivqa_accuracy(["a"], [[]]), "references"),
        (lambda: ivqa_accuracy(["a"], [["a"]], normalize="lower"), "normalize"),
        (lambda: aokvqa([], []), "predictions"),
        (lambda: aokvqa([1], ["a"]), "references"),
        (lambda: aokvqa(["a"], ["a"]), "references"),
        (lambda: mrr([[0.1, 0.2]], [2]), "references"),
        (lambda: mrr([[]], [0]), "predictions"),
        (lambda: mrr([[0.1, float("nan")]], [0]), "predictions"),
        (lambda: roc_auc([0.1, 0.2], [1, 2]), "references"),
        (lambda: roc_auc([0.1, 0.2], [1, 1]), "references"),
        (lambda: roc_auc([0.1], [1, 0]), "references"),
        (lambda: cider([], []), "predictions"),
        (lambda: cider(["a"], [[]]), "references"),
        (lambda: cider(["a"], ["a"]), "references"),
        (lambda: ptb_tokenize("a caption"), "captions"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# ---------------------------------------------------------------------------------------------
# CIDEr-D
# ---------------------------------------------------------------------------------------------

CIDER_CASES = {
    "multiple_references": (
        ["a dog running on grass", "a cat sits on a mat", "two men playing"],
        [
            ["a dog runs on the grass", "a brown dog running", "dog on grass"],
            ["a cat on a mat", "the cat sits on the mat"],
            ["two men play football", "men playing soccer on a field"],
        ],
    ),
    "repeated_words": (
        ["dog dog dog dog dog", "red red red car", "a man a man"],
        [["a dog dog dog", "the dog"], ["a red red car", "red car parked"], ["a man"]],
    ),
    "empty_and_one_word_predictions": (
        ["", "a", "street"],
        [["a dog runs", "dog running"], ["a cat"], ["people on a street", "a busy street"]],
    ),
}
# pycocoevalcap 1.2 `Cider().compute_score` on the cases above, so this runs without it installed.
CIDER_GOLDEN = {
    "multiple_references": [2.445398346647525, 4.1604286514052, 2.2354292296279406],
    "repeated_words": [1.737530820133084, 2.994353196059026, 2.24006417435102],
    "empty_and_one_word_predictions": [0.0, 0.0, 1.4730052243222826],
}


@pytest.mark.parametrize("case", sorted(CIDER_CASES))
def test_cider_d_matches_recorded_pycocoevalcap_scores(case):
    predictions, references = CIDER_CASES[case]
    assert cider_d_scores(predictions, references) == pytest.approx(CIDER_GOLDEN[case], abs=1e-6)
    corpus = sum(CIDER_GOLDEN[case]) / 3
    assert cider(predictions, references, tokenize=False)["cider"] == pytest.approx(100 * corpus, abs=1e-4)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("a the dog dogs cat on in red runs".split()), max_size=8),
            st.lists(st.lists(st.sampled_from("a the dog cat on in red runs sits".split()), min_size=1, max_size=9),
                     min_size=1, max_size=4),
        ),
        min_size=1, max_size=6,
    )
)
def test_cider_d_equals_pycocoevalcap_on_random_captions(items):
    cider_module = pytest.importorskip("pycocoevalcap.cider.cider", reason="test dependency pycocoevalcap")
    predictions = [" ".join(words) for words, _ in items]
    references = [[" ".join(words) for words in refs] for _, refs in items]
    _, expected = cider_module.Cider().compute_score(
        {i: refs for i, refs in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}
    )
    assert cider_d_scores(predictions, references) == pytest.approx(list(expected), abs=1e-6)


def test_cider_document_frequency_comes_from_the_evaluated_set():
    """The same caption scores differently next to other images: idf is computed over the set."""
    predictions, references = CIDER_CASES["multiple_references"]
    alone = cider_d_scores(predictions[:2], references[:2])[0]
    together = cider_d_scores(predictions, references)[0]
    assert alone != pytest.approx(together)


# Hand-checked against Stanford CoreNLP 3.4.1's PTBTokenizer as pycocoevalcap calls it.
HAND_CHECKED_TOKENISATIONS = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("A woman's hand; the screen reads \"Hello!\"", "a woman 's hand the screen reads hello"),
    ("He can't, we won't, they're here", "he ca n't we wo n't they 're here"),
    ("Cannot wanna gonna", "can not wan na gon na"),
    ("A bowl of fruit (apples) [ripe] {ok}", "a bowl of fruit -lrb- apples -rrb- -lsb- ripe -rsb- -lcb- ok -rcb-"),
    ("An old-fashioned train...", "an old-fashioned train"),
    ("Man in red -- he's walking", "man in red he 's walking"),
    ("3:30 p.m. costs $5.50 or 50% & more", "3:30 p.m. costs $ 5.50 or 50 % & more"),
    ("1,000 people in the 1950's and '90s", "1,000 people in the 1950 's and '90s"),
    ("Mr. Smith vs. Dr. Who on 5th Ave.", "mr. smith vs. dr. who on 5th ave."),
    ("it's a dog.It is running", "it 's a dog.it is running"),
    ("Wow!!! what?! a T.V.", "wow !!! what ?! a t.v."),
    ("a sign that reads 'no parking'", "a sign that reads no parking"),
    ("o'clock O'Neil rock'n'roll y'all", "o'clock o'neil rock 'n' roll y' all"),
    ("3 1/2 cups and ½ cup, 75° outside", "3\u00a01/2 cups and 1/2 cup 75 ° outside"),
    ("w/ a helmet and/or hat, a/b/c/d", "w / a helmet and/or hat a/b/c / d"),
    ("", ""),
]


@pytest.mark.parametrize("caption, expected", HAND_CHECKED_TOKENISATIONS)
def test_ptb_tokenize_hand_checked(caption, expected):
    assert ptb_tokenize([caption]) == [expected]


def test_ptb_tokenize_reads_captions_as_one_stream():
    """An abbreviation ending a caption gets a sentence-final "." only if the next caption starts upper case."""
    assert ptb_tokenize(["cakes etc.", "The end"]) == ["cakes etc.", "the end"]
    assert ptb_tokenize(["cakes etc.", "the end"]) == ["cakes etc.", "the end"]
    assert ptb_tokenize(["the U.S.", "The end"]) == ["the u.s.", "the end"]


TRICKY_CAPTIONS = [
    "Two dogs playing in the snow , one is brown and the other is black.",
    "A woman's hand holding a cell-phone; the screen reads \"Hello!\"",
    "The 2 children are sitting on a bench (near the park).",
    "A cat that is laying down on a bed.  ",
    "A close up of a sign that says STOP.",
    "A kitchen with stainless steel appliances & granite counter tops.",
    "What's this? A plate of food with broccoli, carrots, etc.",
    "People walking down a street in N.Y.C. at night",
    "A 10-year-old girl plays with her dog's toy in the yard",
    "a motorcycle parked on the side of a road w/ a helmet",
    "Mr. and Mrs. Jones cut the cake at their 50th anniversary.",
    "A sign for the U.S. Post Office",
    "The time is 12:45 and it is 75° outside",
    "The hot-dog vendor's cart is on 5th Ave.",
    "a TV showing a soccer game: Team A vs. Team B",
    "A picture of a '57 Chevy",
    "x no. 5 fig. 3 No. five fig.5 ca. 1900",
    "x 'tis 'twas y'know ma'am d'artagnan nothin' dogs' tails",
    "x cats.dogs,mice U.S.A. USA. A.B.C.D. e.g., Ph.D. Ph.D",
    "x 5.5.5 1,000,000 3:30pm 10.5% $1.5 -3.5 .5 5. 3,5",
    "x @user a@b http://www.example.com/a.html www.foo.com me@mail.com (555) 123-4567",
    "US$5 £5 €10 ¢ --- ---- ----- - a <b> c &amp; AT&T",
    "''double'' `single' ‘curly’ “curly” \"5 stars\" \"$5\"",
    "It's the U.S. He said U.S. The end. Calif. Is etc. And etc. so",
]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java to run Stanford CoreNLP's PTBTokenizer")
def test_ptb_tokenize_equals_pycocoevalcap_ptbtokenizer():
    tokenizer_module = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer", reason="test dependency pycocoevalcap")
    captions = TRICKY_CAPTIONS + [c for c, _ in HAND_CHECKED_TOKENISATIONS if c]
    expected = tokenizer_module.PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert ptb_tokenize(captions) == [expected[i][0] for i in range(len(captions))]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java to run Stanford CoreNLP's PTBTokenizer")
def test_cider_with_tokenisation_equals_the_pycocoevalcap_pipeline():
    tokenizer_module = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer", reason="test dependency pycocoevalcap")
    from pycocoevalcap.cider.cider import Cider

    predictions = ["A dog runs on grass.", "Two cats (sleeping) on a sofa!", "a man's red bike"]
    references = [
        ["A brown dog is running on the grass.", "Dog running; grass."],
        ["Two cats sleep on a couch.", "A pair of cats, sleeping on a sofa."],
        ["A red bicycle leaning on a wall.", "The man's bike is red.", "A bike."],
    ]
    tokenizer = tokenizer_module.PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(predictions)})
    expected, _ = Cider().compute_score(gts, res)
    assert cider(predictions, references)["cider"] == pytest.approx(100 * expected, abs=1e-4)
