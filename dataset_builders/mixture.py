"""The held-in training mixture: datasets drawn with probability proportional to sqrt(size), with
per-dataset multipliers (Dai et al. 2023, §2.4 "Balancing Training Datasets").

    p_d = m_d * sqrt(S_d) / sum_i m_i * sqrt(S_i)

`sampling` names the weighting, for the paper's ablation "without data balancing": "sqrt" (the
paper), "size" (proportional to S_d: every example equally likely, as if the datasets were
concatenated) or "uniform" (every dataset equally likely); multipliers apply to each.

The paper lowers A-OKVQA (multiple choice) and raises OK-VQA by hand without publishing the
factors, so `multipliers` is left to the user, e.g. {"okvqa": 2.0, "aokvqa": 0.5}.
The mixture is `datasets.interleave_datasets`, so map-style and streaming inputs both work.
This module must not know any source format.
"""

import logging
import math

import datasets

logger = logging.getLogger(__name__)

STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted", "all_exhausted_without_replacement")
SAMPLINGS = {"sqrt": math.sqrt, "size": float, "uniform": lambda size: 1.0}


def mixture_proportions(sizes: dict, multipliers: dict | None = None, sampling: str = "sqrt") -> dict:
    """{name: p_d}, p_d proportional to multiplier * weight(size), weight = sqrt (default), size or 1; sums to 1."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}; got {sampling!r}")
    multipliers = multipliers or {}
    unknown = set(multipliers) - set(sizes)
    if unknown:
        raise KeyError(f"multipliers for datasets not in the mixture: {sorted(unknown)}")
    weights = {}
    for name, size in sizes.items():
        if size <= 0:
            raise ValueError(f"{name} has {size} examples")
        multiplier = multipliers.get(name, 1.0)
        if multiplier < 0:
            raise ValueError(f"multiplier of {name} is negative: {multiplier}")
        weights[name] = multiplier * SAMPLINGS[sampling](size)
    total = sum(weights.values())
    if total == 0:
        raise ValueError("every multiplier is 0")
    return {name: weight / total for name, weight in weights.items()}


def _as_dataset(source, split: str):
    """A Dataset/IterableDataset as is; a prepared-or-not builder as its `split`."""
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source
    if isinstance(source, datasets.DatasetBuilder):
        source.download_and_prepare()
        return source.as_dataset(split=split)
    raise TypeError(f"expected a Dataset, IterableDataset or DatasetBuilder, got {type(source).__name__}")


def _size(name: str, dataset, sizes: dict) -> int:
    if name in sizes:
        return sizes[name]
    if isinstance(dataset, datasets.Dataset):
        return len(dataset)
    split_info = dataset.info.splits.get(str(dataset.split)) if dataset.info.splits and dataset.split else None
    if split_info is not None and split_info.num_examples:
        return split_info.num_examples
    raise ValueError(f"size of streaming dataset {name!r} is unknown: pass sizes={{{name!r}: n}}")


def build_mixture(
    sources: dict,
    *,
    multipliers: dict | None = None,
    sizes: dict | None = None,
    seed: int = 0,
    stopping_strategy: str = "all_exhausted",
    split: str = "train",
    return_proportions: bool = False,
    sampling: str = "sqrt",
):
    """Interleave the held-in `sources` ({name: Dataset | IterableDataset | builder}) into one dataset.

    Args:
        multipliers: {name: factor} applied to sqrt(size) before normalising (default 1).
        sampling: "sqrt" (the paper), "size" or "uniform": the weight of a dataset of each size.
        sizes: {name: number of training examples}, overriding len(); needed for streaming
            datasets whose size is not recorded.
        seed: seeds the draw order.
        stopping_strategy: as `datasets.interleave_datasets` ("all_exhausted" by default, so small
            datasets are re-sampled rather than the mixture being cut at the smallest one).
        split: the split taken from builders.
        return_proportions: also return {name: effective probability}.

    If any source is streaming, the map-style ones are converted with `to_iterable_dataset()` and
    the result is an `IterableDataset`. The proportions are logged at INFO.
    """
    if not sources:
        raise ValueError("no datasets to mix")
    if stopping_strategy not in STOPPING_STRATEGIES:
        raise ValueError(f"stopping_strategy must be one of {STOPPING_STRATEGIES}")
    names = list(sources)
    parts = [_as_dataset(sources[name], split) for name in names]
    sizes = {name: _size(name, part, sizes or {}) for name, part in zip(names, parts)}
    proportions = mixture_proportions(sizes, multipliers, sampling)
    if any(isinstance(part, datasets.IterableDataset) for part in parts):
        parts = [part.to_iterable_dataset() if isinstance(part, datasets.Dataset) else part for part in parts]
    mixture = datasets.interleave_datasets(
        parts, probabilities=[proportions[name] for name in names], seed=seed, stopping_strategy=stopping_strategy
    )
    logger.info(
        "mixture proportions: %s", ", ".join(f"{name} {p:.4f} (n={sizes[name]})" for name, p in proportions.items())
    )
    return (mixture, proportions) if return_proportions else mixture
