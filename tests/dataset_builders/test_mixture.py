"""Balanced mixture: sqrt(size) proportions with multipliers, map-style and streaming."""

import collections
import math

import datasets
import pytest

from dataset_builders.mixture import build_mixture, mixture_proportions

SIZES = {"vqav2": 1_000_000, "okvqa": 10_000, "aokvqa": 20_000}
MULTIPLIERS = {"okvqa": 2.0, "aokvqa": 0.5}


def test_proportions_follow_sqrt_size_and_multipliers():
    p = mixture_proportions(SIZES, MULTIPLIERS)
    weights = {"vqav2": 1000.0, "okvqa": 2 * 100.0, "aokvqa": 0.5 * math.sqrt(20_000)}
    total = sum(weights.values())
    assert p == pytest.approx({k: w / total for k, w in weights.items()})
    with pytest.raises(KeyError):
        mixture_proportions(SIZES, {"gqa": 2.0})


def test_the_ablations_weightings_size_and_uniform():
    """The paper's "without data balancing" ablation as one switch: proportional to size (as if the
    datasets were concatenated) or uniform over datasets; multipliers still apply."""
    total = sum(SIZES.values())
    assert mixture_proportions(SIZES, sampling="size") == pytest.approx({k: n / total for k, n in SIZES.items()})
    assert mixture_proportions(SIZES, sampling="uniform") == pytest.approx({k: 1 / 3 for k in SIZES})
    weighted = mixture_proportions(SIZES, {"okvqa": 2.0}, sampling="uniform")
    assert weighted == pytest.approx({"vqav2": 0.25, "okvqa": 0.5, "aokvqa": 0.25})
    with pytest.raises(ValueError, match="sampling must be one of sqrt, size, uniform; got 'sqrtt'"):
        mixture_proportions(SIZES, sampling="sqrtt")


def test_build_mixture_draws_with_the_chosen_weighting():
    big = datasets.Dataset.from_dict({"x": list(range(900))})
    small = datasets.Dataset.from_dict({"x": list(range(1000, 1100))})
    _, proportions = build_mixture({"big": big, "small": small}, sampling="size", return_proportions=True)
    assert proportions == pytest.approx({"big": 0.9, "small": 0.1})


def _within_tolerance(counts, proportions, n):
    for name, p in proportions.items():
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(counts[name] / n - p) < 5 * sigma, (name, counts[name] / n, p)


def test_100k_draws_match_the_reported_proportions():
    n = 100_000
    parts = {name: datasets.Dataset.from_dict({"dataset": [name] * n}) for name in SIZES}
    mixture, proportions = build_mixture(
        parts, sizes=SIZES, multipliers=MULTIPLIERS, seed=0, stopping_strategy="first_exhausted", return_proportions=True
    )
    assert isinstance(mixture, datasets.Dataset)
    counts = collections.Counter(mixture[:n]["dataset"])
    _within_tolerance(counts, proportions, n)


def test_streaming_inputs_give_an_iterable_mixture_with_the_same_proportions():
    n = 10_000
    parts = {name: datasets.Dataset.from_dict({"dataset": [name] * n}).to_iterable_dataset() for name in SIZES}
    parts["vqav2"] = datasets.Dataset.from_dict({"dataset": ["vqav2"] * n})  # map-style mixed in
    mixture, proportions = build_mixture(
        parts, sizes=SIZES, multipliers=MULTIPLIERS, seed=1, stopping_strategy="first_exhausted", return_proportions=True
    )
    assert isinstance(mixture, datasets.IterableDataset)
    counts = collections.Counter(record["dataset"] for record, _ in zip(mixture, range(n)))
    _within_tolerance(counts, proportions, n)


def test_streaming_size_must_be_known():
    part = datasets.Dataset.from_dict({"dataset": ["a"]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="sizes="):
        build_mixture({"a": part, "b": datasets.Dataset.from_dict({"dataset": ["b"]})})


def test_mixture_of_built_records(raw, build):
    coco = build("coco_caption", raw.coco_caption(), "train")
    vqa = build("vqav2", raw.vqav2(), "train")
    mixture, proportions = build_mixture({"coco_caption": coco, "vqav2": vqa}, seed=0, return_proportions=True)
    assert set(mixture["dataset"]) == {"coco_caption", "vqav2"}
    assert proportions["coco_caption"] == pytest.approx(math.sqrt(10) / (math.sqrt(10) + math.sqrt(2)))
