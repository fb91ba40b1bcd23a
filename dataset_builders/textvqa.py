"""TextVQA (held-out, image QA with reading comprehension; the paper evaluates the val split), and
the Rosetta OCR reader that textcaps.py shares.

Official release (https://textvqa.org/dataset), into one folder:

    TextVQA_0.5.1_train.json, TextVQA_0.5.1_val.json, TextVQA_0.5.1_test.json
        <- https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_<split>.json
    TextVQA_Rosetta_OCR_v0.2_train.json, ..._val.json, ..._test.json
        <- https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_Rosetta_OCR_v0.2_<split>.json
    train_images/<image_id>.jpg   <- https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip
    test_images/<image_id>.jpg    <- https://dl.fbaipublicfiles.com/textvqa/images/test_images.zip

Questions: {"dataset_type", "dataset_name", "dataset_version", "data": [{"question": str,
"question_id": int, "image_id": str, "answers": [10 str] (not in test), "image_classes",
"flickr_original_url", "flickr_300k_url", "image_width", "image_height", "set_name"}]}.
OCR: {"data": [{"image_id": str, "ocr_tokens": [str], "ocr_info": [{"word": str, ...}]}]}.

Records carry all OCR tokens in `ocr_tokens`; the instruction is the paper's prompt
"OCR tokens: {first 30 joined by ', '}. Question: {} Short answer:".
"""

from ._base import InstructBuilder, check_items, field, iter_json_array, load_json, most_common
from .templates import TEXTVQA_PROMPT, format_ocr_tokens

_URL = "https://dl.fbaipublicfiles.com/textvqa/"
OCR_FILES = {split: f"TextVQA_Rosetta_OCR_v0.2_{split}.json" for split in ("train", "val", "test")}
IMAGE_FOLDERS = {"train_images": _URL + "images/train_val_images.zip", "test_images": _URL + "images/test_images.zip"}

SPLITS = {  # split -> (questions file, OCR file, image folder)
    "train": ("TextVQA_0.5.1_train.json", OCR_FILES["train"], "train_images"),
    "validation": ("TextVQA_0.5.1_val.json", OCR_FILES["val"], "train_images"),
    "test": ("TextVQA_0.5.1_test.json", OCR_FILES["test"], "test_images"),
}
FILES = {
    **{questions: _URL + "data/" + questions for questions, _, _ in SPLITS.values()},
    **{ocr: _URL + "data/" + ocr for ocr in OCR_FILES.values()},
    **IMAGE_FOLDERS,
}


def load_rosetta_ocr(path: str) -> dict:
    """{image_id: OCR tokens} from a TextVQA_Rosetta_OCR file (its `ocr_tokens`, else the words of `ocr_info`)."""
    tokens = {}
    for entry in load_json(path)["data"]:
        words = entry.get("ocr_tokens")
        if words is None:
            words = [info.get("word", "") for info in entry.get("ocr_info", [])]
        tokens[entry.get("image_id")] = [str(word) for word in words]
    return tokens


class TextVQA(InstructBuilder):
    """TextVQA questions with OCR tokens and 10 answers; the paper's zero-shot TextVQA prompt."""

    DATASET_NAME = "textvqa"
    HOMEPAGE = "https://textvqa.org"
    CITATION = """@inproceedings{singh2019towards,
  title={Towards {VQA} Models That Can Read},
  author={Singh, Amanpreet and Natarajan, Vivek and Shah, Meet and Jiang, Yu and Chen, Xinlei and Batra, Dhruv and Parikh, Devi and Rohrbach, Marcus},
  booktitle={CVPR}, year={2019}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            paths = self.require_files({rel: FILES[rel] for rel in SPLITS[split]})
            questions, ocr, images = (paths[rel] for rel in SPLITS[split])
            generators.append(self.split_generator(split, questions=questions, ocr=ocr, image_dir=images))
        return generators

    def _iter_raw(self, split, questions, ocr, image_dir):
        ocr_tokens = load_rosetta_ocr(ocr)
        for index, item in enumerate(iter_json_array(questions, key="data")):
            question_id = item.get("question_id") if isinstance(item, dict) else None
            image_tokens = ocr_tokens.get(item.get("image_id"), []) if isinstance(item, dict) else []
            yield questions, f"#{index} (question_id={question_id})", (item, image_tokens, image_dir)

    def _records(self, raw, split):
        item, ocr_tokens, image_dir = raw
        question = field(item, "question", str)
        image_id = field(item, "image_id", str)
        answers = check_items(field(item, "answers", list), str, "answers") if "answers" in item else []
        return self.make(
            split,
            id=field(item, "question_id", int),
            image=f"{image_dir}/{image_id}.jpg",
            question=question,
            question_id=item["question_id"],
            image_id=image_id,
            ocr_tokens=ocr_tokens,
            instruction=TEXTVQA_PROMPT.format(format_ocr_tokens(ocr_tokens), question),
            answers=answers,
            target=most_common(answers),
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (TextVQA,)}
