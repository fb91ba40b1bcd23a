"""GQA (held-out, visual reasoning; the paper evaluates the balanced test-dev split).

Official release (https://cs.stanford.edu/people/dorarad/gqa/download.html), into one folder:

    testdev_balanced_questions.json   <- https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip
    images/<imageId>.jpg              <- https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip

The questions file is one JSON object {"<question id>": {"question": str, "imageId": str,
"answer": str, "fullAnswer": str, "isBalanced": bool, "types": {"structural", "semantic",
"detailed"}, "groups", "semantic", "semanticStr", "entailed", "equivalent", "annotations"}}.
One record per question: target and single reference `answer` (GQA accuracy is exact match),
`subset` the structural type; instruction: the paper's zero-shot "Question: {} Short answer:".
"""

from ._base import InstructBuilder, field, load_json
from .templates import ZERO_SHOT_PROMPTS

_URL = "https://downloads.cs.stanford.edu/nlp/data/gqa/"
SPLITS = {"test_dev": "testdev_balanced_questions.json"}
FILES = {"testdev_balanced_questions.json": _URL + "questions1.2.zip", "images": _URL + "images.zip"}


class GQA(InstructBuilder):
    """GQA balanced test-dev questions; zero-shot prompt "Question: {} Short answer:"."""

    DATASET_NAME = "gqa"
    HOMEPAGE = "https://cs.stanford.edu/people/dorarad/gqa"
    CITATION = """@inproceedings{hudson2019gqa,
  title={{GQA}: A New Dataset for Real-World Visual Reasoning and Compositional Question Answering},
  author={Hudson, Drew A and Manning, Christopher D}, booktitle={CVPR}, year={2019}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        paths = self.require_files()
        return [
            self.split_generator(split, path=paths[SPLITS[split]], image_dir=paths["images"])
            for split in self.wanted_splits(SPLITS)
        ]

    def _iter_raw(self, split, path, image_dir):
        for question_id, item in load_json(path).items():  # test-dev balanced: 12.6K questions
            yield path, f"question {question_id}", (question_id, item, image_dir)

    def _records(self, raw, split):
        question_id, item, image_dir = raw
        question = field(item, "question", str)
        image_id = field(item, "imageId", str)
        answer = field(item, "answer", str)
        types = item.get("types")
        return self.make(
            split,
            id=question_id,
            image=f"{image_dir}/{image_id}.jpg",
            image_id=image_id,
            question_id=question_id,
            question=question,
            instruction=ZERO_SHOT_PROMPTS["gqa"].format(question),
            target=answer,
            answers=[answer],
            subset=types.get("structural", "") if isinstance(types, dict) else "",
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (GQA,)}
