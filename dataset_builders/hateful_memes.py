"""Hateful Memes (held-out, image classification), dev seen, from the official release.

Official release (https://hatefulmemeschallenge.com, now distributed by DrivenData), its `data/`
folder:

    dev_seen.jsonl        (the phase-1 release names the same 500 memes dev.jsonl; read if
                           dev_seen.jsonl is absent)
    train.jsonl
    img/01235.png ...

Each jsonl line: {"id": 1235 (int), "img": "img/01235.png", "label": 0 (not hateful) | 1
(hateful), "text": "the meme's text"}.

Records: the paper's zero-shot prompt with the meme text, ranked over the verbalisers
choices=["no", "yes"], so `answer_index` equals the label (the ROC AUC uses the score of "yes");
`context` keeps the meme text. Split "validation" is dev seen, "train" is train.
"""

import os

from ._base import InstructBuilder, RecordError, WRONG_FIELD_TYPE, field
from .templates import HATEFUL_MEMES_PROMPT
from ._base import iter_jsonl

_URL = "https://hatefulmemeschallenge.com (data.zip)"
SPLIT_FILES = {"validation": ("dev_seen.jsonl", "dev.jsonl"), "train": ("train.jsonl",)}
CHOICES = ["no", "yes"]  # index = Hateful Memes label

_CITATION = """@inproceedings{kiela2020hateful,
  title={The Hateful Memes Challenge: Detecting Hate Speech in Multimodal Memes},
  author={Kiela, Douwe and Firooz, Hamed and Mohan, Aravind and Goswami, Vedanuj and Singh, Amanpreet
  and Ringshia, Pratik and Testuggine, Davide}, booktitle={NeurIPS}, year={2020}}"""


class HatefulMemes(InstructBuilder):
    """Hateful Memes: is the meme (image + written text) hateful? Ranked over the yes/no verbalisers."""

    DATASET_NAME = "hateful_memes"
    HOMEPAGE = "https://hatefulmemeschallenge.com"
    CITATION = _CITATION

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLIT_FILES):
            names = SPLIT_FILES[split]
            jsonl = next((name for name in names if os.path.isfile(self.path(name))), names[0])
            paths = self.require_files({jsonl: _URL, "img": _URL})
            generators.append(self.split_generator(split, jsonl=paths[jsonl]))
        return generators

    def _iter_raw(self, split, jsonl):
        for number, item in iter_jsonl(jsonl):
            yield jsonl, f"line {number}", item

    def _records(self, item, split):
        if isinstance(item, Exception):
            raise ValueError(f"invalid JSON: {item}")
        meme_id = field(item, "id", (int, str))
        image = field(item, "img", str)
        text = field(item, "text", str)
        label = field(item, "label", int)
        if label not in (0, 1):
            raise RecordError(WRONG_FIELD_TYPE, f"label must be 0 or 1, got {label}")
        return self.make(
            split,
            id=meme_id,
            image=self.path(image),
            instruction=HATEFUL_MEMES_PROMPT.format(text),
            context=text,
            target=CHOICES[label],
            answers=[CHOICES[label]],
            choices=CHOICES,
            answer_index=label,
            question_id=meme_id,
            image_id=meme_id,
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (HatefulMemes,)}
