"""A-OKVQA (held-in, knowledge-grounded QA; multiple choice and direct answers) and A-OKVQA-QG.

Official release (https://allenai.org/project/a-okvqa/home), into one folder:

    aokvqa_v1p0_train.json, aokvqa_v1p0_val.json, aokvqa_v1p0_test.json
        <- https://prior-datasets.s3.us-east-2.amazonaws.com/aokvqa/aokvqa_v1p0.tar.gz
    train2017/<12-digit id>.jpg, val2017/..., test2017/...   <- COCO 2017 image zips

Each file is a JSON list of {"split", "image_id": int, "question_id": str, "question": str,
"choices": [4 str], "correct_choice_idx": int, "direct_answers": [10 str],
"difficult_direct_answer": bool, "rationales": [str]} (test: no correct_choice_idx,
direct_answers or rationales).

Records keep both answer formats: `choices` + `answer_index` (multiple choice) and `answers`
(the 10 direct answers). The paper trains A-OKVQA as multiple choice (it lowers its weight "as
multiple-choice"), so by default (`answer_format="multiple_choice"`) the instruction lists the
options, "(a) x (b) y ...", after the question and the target is the correct choice;
`answer_format="direct"` uses the bare question and the most frequent direct answer.
"""

from dataclasses import dataclass

from ._base import InstructConfig, InstructBuilder, check_items, field, iter_json_array, most_common
from .schema import QG, VQA, VQA_MULTIPLE_CHOICE
from .vqav2 import as_question_generation

_URL = "https://prior-datasets.s3.us-east-2.amazonaws.com/aokvqa/aokvqa_v1p0.tar.gz"
_COCO_URL = "http://images.cocodataset.org/zips/"

SPLITS = {
    "train": ("aokvqa_v1p0_train.json", "train2017"),
    "validation": ("aokvqa_v1p0_val.json", "val2017"),
    "test": ("aokvqa_v1p0_test.json", "test2017"),
}
FILES = {
    "aokvqa_v1p0_train.json": _URL,
    "aokvqa_v1p0_val.json": _URL,
    "aokvqa_v1p0_test.json": _URL,
    "train2017": _COCO_URL + "train2017.zip",
    "val2017": _COCO_URL + "val2017.zip",
    "test2017": _COCO_URL + "test2017.zip",
}
ANSWER_FORMATS = ("multiple_choice", "direct")


@dataclass
class AOKVQAConfig(InstructConfig):
    """Adds `answer_format`: "multiple_choice" (default, options in the instruction) or "direct"."""

    answer_format: str = "multiple_choice"

    def __post_init__(self):
        super().__post_init__()
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")


class AOKVQA(InstructBuilder):
    """A-OKVQA questions with 4 choices and 10 direct answers."""

    BUILDER_CONFIG_CLASS = AOKVQAConfig
    DATASET_NAME = "aokvqa"
    HOMEPAGE = "https://allenai.org/project/a-okvqa/home"
    CITATION = """@inproceedings{schwenk2022okvqa,
  title={A-OKVQA: A Benchmark for Visual Question Answering using World Knowledge},
  author={Schwenk, Dustin and Khandelwal, Apoorv and Clark, Christopher and Marino, Kenneth and Mottaghi, Roozbeh},
  booktitle={ECCV}, year={2022}}"""
    FILES = FILES
    NEEDS_ANSWERS = False

    def _split_generators(self, dl_manager):
        available = [s for s in SPLITS if s != "test" or not self.NEEDS_ANSWERS]
        generators = []
        for split in self.wanted_splits(available):
            questions, image_folder = SPLITS[split]
            paths = self.require_files({rel: FILES[rel] for rel in (questions, image_folder)})
            generators.append(self.split_generator(split, path=paths[questions], image_dir=paths[image_folder]))
        return generators

    def _iter_raw(self, split, path, image_dir):
        for index, item in enumerate(iter_json_array(path)):
            question_id = item.get("question_id") if isinstance(item, dict) else None
            yield path, f"#{index} (question_id={question_id})", (item, image_dir)

    def qa_fields(self, raw) -> dict:
        """The record fields of one question, checked; target per `answer_format`."""
        item, image_dir = raw
        question_id = field(item, "question_id", str)
        image_id = field(item, "image_id", int)
        choices = check_items(field(item, "choices", list), str, "choices")
        answer_index = field(item, "correct_choice_idx", int) if "correct_choice_idx" in item else -1
        answers = check_items(field(item, "direct_answers", list), str, "direct_answers") if "direct_answers" in item else []
        multiple_choice = self.config.answer_format == "multiple_choice"
        if multiple_choice:
            target = choices[answer_index] if answer_index >= 0 else ""
        else:
            target = most_common(answers)
        return {
            "id": question_id,
            "image": f"{image_dir}/{image_id:012d}.jpg",
            "question": field(item, "question", str),
            "question_id": question_id,
            "image_id": image_id,
            "choices": choices,
            "answer_index": answer_index,
            "answers": answers,
            "target": target,
            "template_family": VQA_MULTIPLE_CHOICE if multiple_choice else VQA,
            "subset": "difficult" if item.get("difficult_direct_answer") else "",
        }

    def _records(self, raw, split):
        return self.make(split, **self.qa_fields(raw))


class AOKVQAQuestionGeneration(AOKVQA):
    """A-OKVQA turned around: given the image and the answer (correct choice), generate the question."""

    DATASET_NAME = "aokvqa_qg"
    NEEDS_ANSWERS = True

    def _records(self, raw, split):
        fields = as_question_generation(self.qa_fields(raw))
        return self.make(split, **{**fields, "template_family": QG, "choices": [], "answer_index": -1})


BUILDERS = {cls.DATASET_NAME: cls for cls in (AOKVQA, AOKVQAQuestionGeneration)}
