"""COCO Caption, Karpathy splits (held-in, image captioning), and the Karpathy-format reader that
flickr30k.py shares.

Official release, into one folder:

    dataset_coco.json        <- https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip
    train2014/COCO_train2014_<12-digit id>.jpg   <- http://images.cocodataset.org/zips/train2014.zip
    val2014/COCO_val2014_<12-digit id>.jpg       <- http://images.cocodataset.org/zips/val2014.zip

dataset_coco.json: {"dataset": "coco", "images": [{"filepath": "train2014"|"val2014",
"filename": str, "imgid": int, "cocoid": int, "split": "train"|"restval"|"val"|"test",
"sentids": [int], "sentences": [{"raw": str, "tokens": [str], "imgid": int, "sentid": int}]}]}.

Splits: train = Karpathy "train" + "restval" (113K images; `restval_in_train=False` drops
restval), validation = "val" (5K), test = "test" (5K). Training yields one record per caption
(target = that caption); validation and test one record per image (target = first caption,
`answers` = all captions, for CIDEr/BLEU). The image list is streamed from the JSON.
"""

from dataclasses import dataclass

from ._base import InstructConfig, InstructBuilder, check_items, field, iter_json_array
from .schema import CAPTION

KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
_COCO_URL = "http://images.cocodataset.org/zips/"

FILES = {
    "dataset_coco.json": KARPATHY_URL,
    "train2014": _COCO_URL + "train2014.zip",
    "val2014": _COCO_URL + "val2014.zip",
}


@dataclass
class KarpathyConfig(InstructConfig):
    """Adds `restval_in_train` (default True, as BLIP/LAVIS train on train + restval)."""

    restval_in_train: bool = True


class KarpathyCaptions(InstructBuilder):
    """Reader of Karpathy's caption_datasets JSON files; subclasses name the file and image folder."""

    BUILDER_CONFIG_CLASS = KarpathyConfig
    TEMPLATE_FAMILY = CAPTION
    ANNOTATION_FILE = ""
    IMAGE_FOLDER = None  # None: the image's own "filepath" field names its folder
    PER_CAPTION_SPLITS = ("train",)  # splits with one record per caption

    def _split_generators(self, dl_manager):
        paths = self.require_files()
        return [
            self.split_generator(split, path=paths[self.ANNOTATION_FILE])
            for split in self.wanted_splits(("train", "validation", "test"))
        ]

    def karpathy_splits(self, split: str) -> set:
        """The Karpathy "split" values that make up `split`."""
        if split == "train":
            return {"train", "restval"} if self.config.restval_in_train else {"train"}
        return {"validation": {"val"}, "test": {"test"}}[split]

    def _iter_raw(self, split, path):
        wanted = self.karpathy_splits(split)
        for index, image in enumerate(iter_json_array(path, key="images")):
            if isinstance(image, dict) and image.get("split") not in wanted:
                continue
            yield path, f"#{index} (filename={image.get('filename') if isinstance(image, dict) else None})", image

    def image_path(self, image: dict) -> str:
        """Absolute path of an image entry's file."""
        folder = self.IMAGE_FOLDER if self.IMAGE_FOLDER is not None else field(image, "filepath", str)
        return self.path(folder, field(image, "filename", str))

    def _records(self, image, split):
        path = self.image_path(image)
        image_id = image.get("cocoid", image.get("imgid", ""))
        sentences = field(image, "sentences", list)
        captions = check_items([sentence["raw"].strip() for sentence in sentences], str, "raw")
        sentence_ids = [sentence.get("sentid", i) for i, sentence in enumerate(sentences)]
        common = {"image": path, "image_id": image_id, "answers": captions}
        if split in self.PER_CAPTION_SPLITS:
            return [
                self.make(split, id=f"{image_id}_{sid}", target=caption, **common)
                for caption, sid in zip(captions, sentence_ids)
            ]
        return self.make(split, id=image_id, target=captions[0] if captions else "", **common)


class COCOCaption(KarpathyCaptions):
    """COCO captions on the Karpathy splits, instructions from the paper's captioning templates."""

    DATASET_NAME = "coco_caption"
    HOMEPAGE = "https://cocodataset.org"
    CITATION = """@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li}, booktitle={CVPR}, year={2015}}"""
    FILES = FILES
    ANNOTATION_FILE = "dataset_coco.json"


BUILDERS = {cls.DATASET_NAME: cls for cls in (COCOCaption,)}
