"""VizWiz-VQA (held-out, image QA; the paper reports test-dev, scored by the evaluation server).

Official release (https://vizwiz.org/tasks-and-datasets/vqa/), into one folder:

    Annotations/train.json, Annotations/val.json, Annotations/test.json
        <- https://vizwiz.cs.colorado.edu/VizWiz_final/vqa_data/Annotations.zip
    train/VizWiz_train_<8 digits>.jpg   <- https://vizwiz.cs.colorado.edu/VizWiz_final/images/train.zip
    val/VizWiz_val_<8 digits>.jpg       <- .../images/val.zip
    test/VizWiz_test_<8 digits>.jpg     <- .../images/test.zip

Each annotation file is a JSON list of {"image": file name, "question": str, "answers":
[{"answer": str, "answer_confidence": "yes"|"maybe"|"no"}] (10), "answer_type": str,
"answerable": 0|1} (test: only image and question). One record per question; `question_id`
is the image file name (what the server's result file keys on), `subset` the answer type;
the instruction is the paper's zero-shot prompt "Question: {} Short answer:".
"""

from ._base import InstructBuilder, check_items, field, iter_json_array, most_common
from .templates import ZERO_SHOT_PROMPTS

_URL = "https://vizwiz.cs.colorado.edu/VizWiz_final/"
SPLITS = {
    "train": ("Annotations/train.json", "train"),
    "validation": ("Annotations/val.json", "val"),
    "test": ("Annotations/test.json", "test"),
}
FILES = {
    **{annotations: _URL + "vqa_data/Annotations.zip" for annotations, _ in SPLITS.values()},
    **{folder: _URL + f"images/{folder}.zip" for _, folder in SPLITS.values()},
}


class VizWiz(InstructBuilder):
    """VizWiz questions from blind users with 10 answers; zero-shot prompt "Question: {} Short answer:"."""

    DATASET_NAME = "vizwiz"
    HOMEPAGE = "https://vizwiz.org"
    CITATION = """@inproceedings{gurari2018vizwiz,
  title={VizWiz Grand Challenge: Answering Visual Questions from Blind People},
  author={Gurari, Danna and Li, Qing and Stangl, Abigale J and Guo, Anhong and Lin, Chi and Grauman, Kristen and Luo, Jiebo and Bigham, Jeffrey P},
  booktitle={CVPR}, year={2018}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            annotations, folder = SPLITS[split]
            paths = self.require_files({rel: FILES[rel] for rel in (annotations, folder)})
            generators.append(self.split_generator(split, path=paths[annotations], image_dir=paths[folder]))
        return generators

    def _iter_raw(self, split, path, image_dir):
        for index, item in enumerate(iter_json_array(path)):
            yield path, f"#{index} (image={item.get('image') if isinstance(item, dict) else None})", (item, image_dir)

    def _records(self, raw, split):
        item, image_dir = raw
        image = field(item, "image", str)
        question = field(item, "question", str)
        answers = []
        if "answers" in item:
            answers = check_items([answer["answer"] for answer in field(item, "answers", list)], str, "answer")
        return self.make(
            split,
            id=image,
            image=f"{image_dir}/{image}",
            image_id=image,
            question_id=image,
            question=question,
            instruction=ZERO_SHOT_PROMPTS["vizwiz"].format(question),
            answers=answers,
            target=most_common(answers),
            subset=item.get("answer_type", ""),
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (VizWiz,)}
