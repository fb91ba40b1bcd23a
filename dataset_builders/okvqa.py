"""OK-VQA (held-in, knowledge-grounded QA) and OK-VQA-QG (held-in, question generation).

Official release (https://okvqa.allenai.org/download.html), unzipped into one folder:

    OpenEnded_mscoco_train2014_questions.json   <- OpenEnded_mscoco_train2014_questions.json.zip
    mscoco_train2014_annotations.json           <- mscoco_train2014_annotations.json.zip
    OpenEnded_mscoco_val2014_questions.json     <- OpenEnded_mscoco_val2014_questions.json.zip
    mscoco_val2014_annotations.json             <- mscoco_val2014_annotations.json.zip
    train2014/COCO_train2014_<12-digit id>.jpg  <- COCO train2014.zip
    val2014/COCO_val2014_<12-digit id>.jpg      <- COCO val2014.zip

The files follow the VQA format (see vqav2.py); annotations carry no `multiple_choice_answer`,
and each of the 10 answers has `answer` (processed) and `raw_answer`. `answers` holds the
processed answers (the ones OK-VQA's accuracy compares against); `target` is the most frequent one.
"""

from ._base import most_common
from .schema import QG
from .vqav2 import VQAv2, as_question_generation

_OKVQA_URL = "https://okvqa.allenai.org/static/data/"
_COCO_URL = "http://images.cocodataset.org/zips/"

SPLITS = {
    "train": ("OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json", "train2014"),
    "validation": ("OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", "val2014"),
}
FILES = {
    "OpenEnded_mscoco_train2014_questions.json": _OKVQA_URL + "OpenEnded_mscoco_train2014_questions.json.zip",
    "mscoco_train2014_annotations.json": _OKVQA_URL + "mscoco_train2014_annotations.json.zip",
    "OpenEnded_mscoco_val2014_questions.json": _OKVQA_URL + "OpenEnded_mscoco_val2014_questions.json.zip",
    "mscoco_val2014_annotations.json": _OKVQA_URL + "mscoco_val2014_annotations.json.zip",
    "train2014": _COCO_URL + "train2014.zip",
    "val2014": _COCO_URL + "val2014.zip",
}


class OKVQA(VQAv2):
    """OK-VQA questions (outside-knowledge VQA on COCO), instructions from the paper's VQA templates."""

    DATASET_NAME = "okvqa"
    HOMEPAGE = "https://okvqa.allenai.org"
    CITATION = """@inproceedings{marino2019ok,
  title={{OK-VQA}: A Visual Question Answering Benchmark Requiring External Knowledge},
  author={Marino, Kenneth and Rastegari, Mohammad and Farhadi, Ali and Mottaghi, Roozbeh},
  booktitle={CVPR}, year={2019}}"""
    FILES = FILES
    SPLITS = SPLITS

    def target(self, annotation, answers):
        return most_common(answers)


class OKVQAQuestionGeneration(OKVQA):
    """OK-VQA turned around: given the image and an answer, generate the question."""

    DATASET_NAME = "okvqa_qg"
    TEMPLATE_FAMILY = QG
    NEEDS_ANSWERS = True

    def _records(self, raw, split):
        return self.make(split, **as_question_generation(self.qa_fields(raw)))


BUILDERS = {cls.DATASET_NAME: cls for cls in (OKVQA, OKVQAQuestionGeneration)}
