"""VQAv2 (held-in, image QA) and VQAv2-QG (held-in, question generation) from the official release.

Official release (https://visualqa.org/download.html), unzipped into one folder:

    v2_OpenEnded_mscoco_train2014_questions.json    <- v2_Questions_Train_mscoco.zip
    v2_mscoco_train2014_annotations.json            <- v2_Annotations_Train_mscoco.zip
    v2_OpenEnded_mscoco_val2014_questions.json      <- v2_Questions_Val_mscoco.zip
    v2_mscoco_val2014_annotations.json              <- v2_Annotations_Val_mscoco.zip
    v2_OpenEnded_mscoco_test2015_questions.json     <- v2_Questions_Test_mscoco.zip (also holds
    v2_OpenEnded_mscoco_test-dev2015_questions.json     the test-dev questions)
    train2014/COCO_train2014_000000000009.jpg ...   <- COCO train2014.zip
    val2014/COCO_val2014_000000000042.jpg ...       <- COCO val2014.zip
    test2015/COCO_test2015_000000000001.jpg ...     <- COCO test2015.zip

Questions file: {"info", "task_type", "data_type", "data_subtype", "license",
"questions": [{"image_id": int, "question": str, "question_id": int}]}.
Annotations file: {..., "annotations": [{"question_id": int, "image_id": int, "question_type",
"answer_type", "multiple_choice_answer": str, "answers": [{"answer": str, "answer_confidence",
"answer_id"}] (10 per question)}]}.

Records: `answers` holds the 10 human answers (with repeats, for the VQA accuracy), `target` the
consensus answer (`multiple_choice_answer`). VQAv2-QG swaps them: the instruction gives the answer
and the target is the question. Questions are streamed; annotations are indexed by question_id.
OK-VQA (okvqa.py) shares this format and subclasses these builders.
"""

from ._base import MALFORMED_RECORD, InstructBuilder, RecordError, check_items, field, iter_json_array, load_json
from .schema import QG, VQA

_VQA_URL = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/"
_COCO_URL = "http://images.cocodataset.org/zips/"

# split -> (questions file, annotations file or None, image folder / COCO subset)
SPLITS = {
    "train": ("v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json", "train2014"),
    "validation": ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json", "val2014"),
    "test": ("v2_OpenEnded_mscoco_test2015_questions.json", None, "test2015"),
    "test_dev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None, "test2015"),
}
FILES = {
    "v2_OpenEnded_mscoco_train2014_questions.json": _VQA_URL + "v2_Questions_Train_mscoco.zip",
    "v2_mscoco_train2014_annotations.json": _VQA_URL + "v2_Annotations_Train_mscoco.zip",
    "v2_OpenEnded_mscoco_val2014_questions.json": _VQA_URL + "v2_Questions_Val_mscoco.zip",
    "v2_mscoco_val2014_annotations.json": _VQA_URL + "v2_Annotations_Val_mscoco.zip",
    "v2_OpenEnded_mscoco_test2015_questions.json": _VQA_URL + "v2_Questions_Test_mscoco.zip",
    "v2_OpenEnded_mscoco_test-dev2015_questions.json": _VQA_URL + "v2_Questions_Test_mscoco.zip",
    "train2014": _COCO_URL + "train2014.zip",
    "val2014": _COCO_URL + "val2014.zip",
    "test2015": _COCO_URL + "test2015.zip",
}

_CITATION = """@inproceedings{goyal2017making,
  title={Making the {V} in {VQA} Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={CVPR}, year={2017}}"""


class VQAv2(InstructBuilder):
    """VQAv2 questions with their 10 human answers, instructions from the paper's VQA templates."""

    DATASET_NAME = "vqav2"
    TEMPLATE_FAMILY = VQA
    HOMEPAGE = "https://visualqa.org"
    CITATION = _CITATION
    FILES = FILES
    SPLITS = SPLITS
    IMAGE_PREFIX = "COCO_"
    NEEDS_ANSWERS = False  # QG builders only build the annotated splits

    def _split_generators(self, dl_manager):
        available = [s for s, (_, ann, _) in self.SPLITS.items() if ann is not None or not self.NEEDS_ANSWERS]
        generators = []
        for split in self.wanted_splits(available):
            questions, annotations, image_folder = self.SPLITS[split]
            needed = [questions, image_folder] + ([annotations] if annotations else [])
            paths = self.require_files({rel: self.FILES[rel] for rel in needed})
            # COCO file names: <folder>/COCO_<folder>_<12-digit id>.jpg
            image_prefix = f"{paths[image_folder]}/{self.IMAGE_PREFIX}{image_folder}_"
            generators.append(
                self.split_generator(
                    split, questions=paths[questions], annotations=paths.get(annotations), image_prefix=image_prefix
                )
            )
        return generators

    def _iter_raw(self, split, questions, annotations, image_prefix):
        by_question_id = {}
        if annotations is not None:
            # an annotation that is not an object, or whose id is not a number, matches no question:
            # its question is then reported as having no annotation (one record, not the whole file)
            for annotation in load_json(annotations)["annotations"]:
                key = annotation.get("question_id") if isinstance(annotation, dict) else None
                if isinstance(key, (int, str)) and not isinstance(key, bool):
                    by_question_id[key] = annotation
        for index, question in enumerate(iter_json_array(questions, key="questions")):
            question_id = question.get("question_id") if isinstance(question, dict) else None
            ref = f"#{index} (question_id={question_id})"
            annotation = by_question_id.get(question_id) if isinstance(question_id, (int, str)) else None
            yield questions, ref, (question, annotation, annotations is not None, image_prefix)

    def target(self, annotation: dict, answers: list[str]) -> str:
        """The consensus answer used as the training target."""
        return field(annotation, "multiple_choice_answer", str)

    def qa_fields(self, raw) -> dict:
        """The record fields of one question (checked): id, image, question, ids, answers, target, subset."""
        question, annotation, annotated, image_prefix = raw
        text = field(question, "question", str)
        question_id = field(question, "question_id", int)
        image_id = field(question, "image_id", int)
        answers, target, answer_type = [], "", ""
        if annotated:
            if annotation is None:
                raise RecordError(MALFORMED_RECORD, f"no annotation for question_id {question_id}")
            answers = check_items([answer["answer"] for answer in field(annotation, "answers", list)], str, "answer")
            target = self.target(annotation, answers)
            answer_type = annotation.get("answer_type", "")
        return {
            "id": question_id,
            "image": f"{image_prefix}{image_id:012d}.jpg",
            "question": text,
            "question_id": question_id,
            "image_id": image_id,
            "answers": answers,
            "target": target,
            "subset": answer_type,
        }

    def _records(self, raw, split):
        return self.make(split, **self.qa_fields(raw))


def as_question_generation(fields: dict) -> dict:
    """QA record fields turned into QG fields: the answer goes to the instruction, the question
    becomes the target (and the only reference)."""
    return {**fields, "answer": fields["target"], "target": fields["question"], "answers": [fields["question"]]}


class VQAv2QuestionGeneration(VQAv2):
    """VQAv2 turned around: given the image and an answer, generate the question (paper's QG templates)."""

    DATASET_NAME = "vqav2_qg"
    TEMPLATE_FAMILY = QG
    NEEDS_ANSWERS = True

    def _records(self, raw, split):
        return self.make(split, **as_question_generation(self.qa_fields(raw)))


BUILDERS = {cls.DATASET_NAME: cls for cls in (VQAv2, VQAv2QuestionGeneration)}
