"""TextCaps (held-in, captioning with reading comprehension).

Official release (https://textvqa.org/textcaps/dataset), into one folder:

    TextCaps_0.1_train.json, TextCaps_0.1_val.json, TextCaps_0.1_test.json
        <- https://dl.fbaipublicfiles.com/textvqa/data/textcaps/TextCaps_0.1_<split>.json
    TextVQA_Rosetta_OCR_v0.2_train.json, ..._val.json, ..._test.json   (TextCaps uses TextVQA's
        images and OCR) <- https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_Rosetta_OCR_v0.2_<split>.json
    train_images/<image_id>.jpg   <- https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip
    test_images/<image_id>.jpg    <- https://dl.fbaipublicfiles.com/textvqa/images/test_images.zip

Captions: {"dataset_type", "dataset_name", "dataset_version", "data": [{"image_id": str,
"image_classes", "flickr_original_url", "flickr_300k_url", "image_width", "image_height",
"set_name", "image_name", "image_path", "caption_id": int, "caption_str": str,
"caption_tokens", "reference_strs": [str], "reference_tokens"}]} (one entry per caption;
test: one per image, no captions).

Training yields one record per caption; validation and test one per image (`answers` =
reference_strs). Instructions are captioning templates after "OCR tokens: {first 30}. ".
"""

from ._base import InstructBuilder, check_items, field, iter_json_array
from .schema import CAPTION
from .textvqa import FILES as TEXTVQA_FILES
from .textvqa import OCR_FILES, load_rosetta_ocr

_URL = "https://dl.fbaipublicfiles.com/textvqa/data/textcaps/"
SPLITS = {  # split -> (captions file, OCR file, image folder)
    "train": ("TextCaps_0.1_train.json", OCR_FILES["train"], "train_images"),
    "validation": ("TextCaps_0.1_val.json", OCR_FILES["val"], "train_images"),
    "test": ("TextCaps_0.1_test.json", OCR_FILES["test"], "test_images"),
}
FILES = {
    **{captions: _URL + captions for captions, _, _ in SPLITS.values()},
    **{rel: url for rel, url in TEXTVQA_FILES.items() if rel in OCR_FILES.values() or rel.endswith("_images")},
}


class TextCaps(InstructBuilder):
    """TextCaps captions with OCR tokens, instructions from the paper's captioning templates."""

    DATASET_NAME = "textcaps"
    TEMPLATE_FAMILY = CAPTION
    HOMEPAGE = "https://textvqa.org/textcaps"
    CITATION = """@inproceedings{sidorov2020textcaps,
  title={TextCaps: a Dataset for Image Captioning with Reading Comprehension},
  author={Sidorov, Oleksii and Hu, Ronghang and Rohrbach, Marcus and Singh, Amanpreet},
  booktitle={ECCV}, year={2020}}"""
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            paths = self.require_files({rel: FILES[rel] for rel in SPLITS[split]})
            captions, ocr, images = (paths[rel] for rel in SPLITS[split])
            generators.append(self.split_generator(split, captions=captions, ocr=ocr, image_dir=images))
        return generators

    def _iter_raw(self, split, captions, ocr, image_dir):
        ocr_tokens = load_rosetta_ocr(ocr)
        per_image = split != "train"
        seen = set()
        for index, item in enumerate(iter_json_array(captions, key="data")):
            image_id = item.get("image_id") if isinstance(item, dict) else None
            if per_image and image_id is not None:
                if image_id in seen:
                    continue
                seen.add(image_id)
            yield captions, f"#{index} (image_id={image_id})", (item, ocr_tokens.get(image_id, []), image_dir, per_image)

    def _records(self, raw, split):
        item, ocr_tokens, image_dir, per_image = raw
        image_id = field(item, "image_id", str)
        references = check_items(field(item, "reference_strs", list), str, "reference_strs") if "reference_strs" in item else []
        if per_image:
            record_id, target = image_id, references[0] if references else ""
        else:
            record_id, target = f"{image_id}_{field(item, 'caption_id', int)}", field(item, "caption_str", str)
        return self.make(
            split,
            id=record_id,
            image=f"{image_dir}/{image_id}.jpg",
            image_id=image_id,
            ocr_tokens=ocr_tokens,
            target=target,
            answers=references,
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (TextCaps,)}
