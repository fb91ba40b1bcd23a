"""OCR-VQA (held-in, image QA with reading comprehension: questions about book covers).

Official release (https://ocr-vqa.github.io, Google Drive folder), into one folder:

    dataset.json      the annotations
    images/<key><ext> the covers, fetched by the release's loadDataset.py, which saves each
                      imageURL as images/<key> + the URL's extension

dataset.json: {"<key>": {"imageURL": str, "questions": [str], "answers": [str], "title": str,
"authorName": str, "genre": str, "split": 1 (train) | 2 (val) | 3 (test)}}, one entry per cover
with ~5 question/answer pairs. One record per pair; instructions from the paper's VQA
templates. The release ships no OCR tokens, so `ocr_tokens` is empty and no OCR prefix is added.
"""

import os

from ._base import MALFORMED_RECORD, InstructBuilder, RecordError, check_items, field, load_json
from .schema import VQA

_URL = "https://ocr-vqa.github.io (Google Drive: dataset.json, loadDataset.py)"
FILES = {"dataset.json": _URL, "images": _URL + " -> run loadDataset.py to fetch the covers"}
SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}


class OCRVQA(InstructBuilder):
    """OCR-VQA question/answer pairs on book covers, instructions from the paper's VQA templates."""

    DATASET_NAME = "ocrvqa"
    TEMPLATE_FAMILY = VQA
    HOMEPAGE = "https://ocr-vqa.github.io"
    CITATION = """@inproceedings{mishra2019ocr,
  title={{OCR-VQA}: Visual Question Answering by Reading Text in Images},
  author={Mishra, Anand and Shekhar, Shashank and Singh, Ajeet Kumar and Chakraborty, Anirban},
  booktitle={ICDAR}, year={2019}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        paths = self.require_files()
        return [
            self.split_generator(split, path=paths["dataset.json"], image_dir=paths["images"])
            for split in self.wanted_splits(SPLIT_CODES)
        ]

    def _iter_raw(self, split, path, image_dir):
        code = SPLIT_CODES[split]
        for key, entry in load_json(path).items():
            if isinstance(entry, dict) and entry.get("split") != code:
                continue
            yield path, f"key {key}", (key, entry, image_dir)

    def _records(self, raw, split):
        key, entry, image_dir = raw
        questions = check_items(field(entry, "questions", list), str, "questions")
        answers = check_items(field(entry, "answers", list), str, "answers")
        if len(questions) != len(answers):
            raise RecordError(MALFORMED_RECORD, f"{len(questions)} questions but {len(answers)} answers")
        extension = os.path.splitext(field(entry, "imageURL", str))[1] or ".jpg"
        image = f"{image_dir}/{key}{extension}"
        return [
            self.make(
                split,
                id=f"{key}_{i}",
                image=image,
                image_id=key,
                question_id=f"{key}_{i}",
                question=question,
                target=answer,
                answers=[answer],
                subset=entry.get("genre", ""),
            )
            for i, (question, answer) in enumerate(zip(questions, answers))
        ]


BUILDERS = {cls.DATASET_NAME: cls for cls in (OCRVQA,)}
