"""VSR, Visual Spatial Reasoning (held-out, visual reasoning), from the official release.

Official release (https://github.com/cambridgeltl/visual-spatial-reasoning, folder `data/`):

    splits/zeroshot/{train,dev,test}.jsonl   <- data/splits/zeroshot/ of the repository
    splits/random/{train,dev,test}.jsonl     <- data/splits/random/ (only with split_type="random")
    images/000000050403.jpg ...              <- COCO 2017 train+val images (data/README.md), or
                                                the repository's vsr_images.zip

Each jsonl line: {"image": "000000050403.jpg", "image_link": "http://images.cocodataset.org/...",
"caption": "The teddy bear is in front of the person.", "label": 1 (true) | 0 (false),
"relation": "in front of", "annotator_id": int, "vote_true_validator_id": [int],
"vote_false_validator_id": [int]}.

Records: the paper's zero-shot prompt with the caption, ranked over the verbalisers
choices=["false", "true"], so `answer_index` equals VSR's `label`; `subset` is the relation (VSR
reports accuracy by relation). The paper evaluates the test
split; the zero-shot split (no concept shared between train and test) is the default, as used by
BLIP-2/InstructBLIP follow-ups, and `split_type="random"` reads the random split instead.
"""

import json
from dataclasses import dataclass

from ._base import WRONG_FIELD_TYPE, InstructBuilder, InstructConfig, RecordError, field, iter_jsonl
from .templates import VSR_PROMPT

_REPO = "https://github.com/cambridgeltl/visual-spatial-reasoning/raw/master/data/"
_IMAGES_URL = "https://www.dropbox.com/s/0s3bj25s62crjh2/vsr_images.zip (or COCO 2017 train/val)"
SPLIT_FILES = {"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"}
CHOICES = ["false", "true"]  # index = VSR label

_CITATION = """@article{liu2023visual,
  title={Visual Spatial Reasoning}, author={Liu, Fangyu and Emerson, Guy and Collier, Nigel},
  journal={Transactions of the Association for Computational Linguistics}, year={2023}}"""


@dataclass
class VSRConfig(InstructConfig):
    """`split_type`: "zeroshot" (default) or "random", the two official split families."""

    split_type: str = "zeroshot"

    def __post_init__(self):
        super().__post_init__()
        if self.split_type not in ("zeroshot", "random"):
            raise ValueError(f"split_type must be 'zeroshot' or 'random', got {self.split_type!r}")


class VSR(InstructBuilder):
    """VSR captions to judge true or false against the image, ranked over the true/false verbalisers."""

    BUILDER_CONFIG_CLASS = VSRConfig
    DATASET_NAME = "vsr"
    HOMEPAGE = "https://github.com/cambridgeltl/visual-spatial-reasoning"
    CITATION = _CITATION

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLIT_FILES):
            jsonl = f"splits/{self.config.split_type}/{SPLIT_FILES[split]}"
            paths = self.require_files({jsonl: _REPO + jsonl, "images": _IMAGES_URL})
            generators.append(self.split_generator(split, jsonl=paths[jsonl], image_dir=paths["images"]))
        return generators

    def _iter_raw(self, split, jsonl, image_dir):
        for number, item in iter_jsonl(jsonl):
            yield jsonl, f"line {number}", (number, item, image_dir)

    def _records(self, raw, split):
        number, item, image_dir = raw
        if isinstance(item, json.JSONDecodeError):
            raise ValueError(f"invalid JSON: {item}")
        image = field(item, "image", str)
        caption = field(item, "caption", str)
        label = field(item, "label", int)
        if label not in (0, 1):
            raise RecordError(WRONG_FIELD_TYPE, f"label must be 0 or 1, got {label}")
        relation = field(item, "relation", str)
        stem = image.rsplit(".", 1)[0]
        return self.make(
            split,
            id=number,  # the line number: an (image, caption) pair may repeat
            image=f"{image_dir}/{image}",
            instruction=VSR_PROMPT.format(caption),
            question=caption,
            target=CHOICES[label],
            answers=[CHOICES[label]],
            choices=CHOICES,
            answer_index=label,
            image_id=stem,
            subset=relation,
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (VSR,)}
