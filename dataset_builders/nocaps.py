"""NoCaps (held-out, image captioning; the paper evaluates the validation set).

Official release (https://nocaps.org/download), into one folder:

    nocaps_val_4500_captions.json   <- https://s3.amazonaws.com/nocaps/nocaps_val_4500_captions.json
    nocaps_test_image_info.json     <- https://s3.amazonaws.com/nocaps/nocaps_test_image_info.json (test only)
    val/<file_name>                 <- the Open Images validation images listed in the JSON
                                       (https://s3.amazonaws.com/nocaps/val/<file_name>)
    test/<file_name>                <- likewise for test

The JSON is COCO-captions style: {"licenses", "info", "images": [{"id": int, "open_images_id",
"file_name", "coco_url", "height", "width", "domain": "in-domain"|"near-domain"|"out-domain",
"date_captured", "license"}], "annotations": [{"image_id": int, "id": int, "caption": str}]}
(test: no annotations). One record per image: `answers` holds its 10 captions, `subset` its
domain (NoCaps reports CIDEr per domain), the instruction the paper's zero-shot prompt.
"""

from collections import defaultdict

from ._base import InstructBuilder, field, load_json
from .templates import ZERO_SHOT_PROMPTS

_URL = "https://s3.amazonaws.com/nocaps/"
SPLITS = {"validation": ("nocaps_val_4500_captions.json", "val"), "test": ("nocaps_test_image_info.json", "test")}
FILES = {
    "nocaps_val_4500_captions.json": _URL + "nocaps_val_4500_captions.json",
    "nocaps_test_image_info.json": _URL + "nocaps_test_image_info.json",
    "val": _URL + "val/<file_name> (Open Images validation images)",
    "test": _URL + "test/<file_name> (Open Images test images)",
}


class NoCaps(InstructBuilder):
    """NoCaps images with their 10 reference captions; zero-shot prompt "A short image description:"."""

    DATASET_NAME = "nocaps"
    HOMEPAGE = "https://nocaps.org"
    CITATION = """@inproceedings{agrawal2019nocaps,
  title={nocaps: novel object captioning at scale},
  author={Agrawal, Harsh and Desai, Karan and Wang, Yufei and Chen, Xinlei and Jain, Rishabh and Johnson, Mark and Batra, Dhruv and Parikh, Devi and Lee, Stefan and Anderson, Peter},
  booktitle={ICCV}, year={2019}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            annotation, image_folder = SPLITS[split]
            paths = self.require_files({rel: FILES[rel] for rel in (annotation, image_folder)})
            generators.append(self.split_generator(split, path=paths[annotation], image_dir=paths[image_folder]))
        return generators

    def _iter_raw(self, split, path, image_dir):
        data = load_json(path)
        captions = defaultdict(list)
        for annotation in data.get("annotations", []):
            captions[annotation.get("image_id")].append(annotation)
        for index, image in enumerate(data["images"]):
            image_id = image.get("id") if isinstance(image, dict) else None
            yield path, f"images #{index} (id={image_id})", (image, captions.get(image_id, []), image_dir)

    def _records(self, raw, split):
        image, annotations, image_dir = raw
        image_id = field(image, "id", int)
        captions = [field(annotation, "caption", str).strip() for annotation in annotations]
        return self.make(
            split,
            id=image_id,
            image=f"{image_dir}/{field(image, 'file_name', str)}",
            image_id=image_id,
            instruction=ZERO_SHOT_PROMPTS["nocaps"],
            target=captions[0] if captions else "",
            answers=captions,
            subset=image.get("domain", ""),
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (NoCaps,)}
