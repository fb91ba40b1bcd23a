"""Web CapFilt (held-in, image captioning): BLIP's CapFilt captions of web images (CC3M + CC12M +
SBU, ~14M pairs, synthetic captions filtered by ViT-L).

Official release, into one folder:

    ccs_synthetic_filtered_large.json
        <- https://storage.googleapis.com/sfr-vision-language-research/BLIP/datasets/ccs_synthetic_filtered_large.json
    images/...   the web images, downloaded by the user (the release holds only URLs)

The JSON is one list of pairs. The release's pairs are {"url": str, "caption": str}; images
fetched with img2dataset's "files" output land at images/<row // 10000 as 5 digits>/<row as 9
digits>.jpg, which is where this builder looks for row `row`. Pairs already rewritten to local
files, {"image": path relative to data_dir (or absolute), "caption": str} (the form BLIP's
pre-training configs read), are used as they are. Dead URLs are missing images: count them with
errors="skip". The list is streamed (memory stays flat for 14M pairs); one split, train.
`annotation_file` picks another CapFilt list (e.g. laion_synthetic_filtered_large.json).
"""

import os
from dataclasses import dataclass

from ._base import MALFORMED_RECORD, InstructConfig, InstructBuilder, RecordError, field, iter_json_array
from .schema import CAPTION

_URL = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/datasets/"
IMAGE_FOLDER = "images"
IMG2DATASET_SHARD_SIZE = 10_000  # img2dataset's default number_sample_per_shard


@dataclass
class WebCapFiltConfig(InstructConfig):
    """Adds `annotation_file` (default ccs_synthetic_filtered_large.json)."""

    annotation_file: str = "ccs_synthetic_filtered_large.json"


def img2dataset_path(row: int) -> str:
    """Where img2dataset ("files" output, default shard size) stores the image of input row `row`."""
    return f"{row // IMG2DATASET_SHARD_SIZE:05d}/{row:09d}.jpg"


class WebCapFilt(InstructBuilder):
    """BLIP CapFilt web image-caption pairs, instructions from the paper's captioning templates."""

    BUILDER_CONFIG_CLASS = WebCapFiltConfig
    DATASET_NAME = "web_capfilt"
    TEMPLATE_FAMILY = CAPTION
    HOMEPAGE = "https://github.com/salesforce/BLIP"
    CITATION = """@inproceedings{li2022blip,
  title={{BLIP}: Bootstrapping Language-Image Pre-training for Unified Vision-Language Understanding and Generation},
  author={Li, Junnan and Li, Dongxu and Xiong, Caiming and Hoi, Steven}, booktitle={ICML}, year={2022}}"""

    def _split_generators(self, dl_manager):
        annotation = self.config.annotation_file
        paths = self.require_files({annotation: _URL + annotation})
        return [self.split_generator(split, path=paths[annotation]) for split in self.wanted_splits(("train",))]

    def _iter_raw(self, split, path):
        for row, pair in enumerate(iter_json_array(path)):
            yield path, f"#{row}", (row, pair)

    def _records(self, raw, split):
        row, pair = raw
        caption = field(pair, "caption", str).strip()
        if "image" in pair:
            image = field(pair, "image", str)
            image = image if os.path.isabs(image) else self.path(image)
        elif "url" in pair:
            image = self.path(IMAGE_FOLDER, img2dataset_path(row))
        else:
            raise RecordError(MALFORMED_RECORD, "pair has neither 'image' nor 'url'")
        return self.make(split, id=row, image=image, image_id=row, target=caption, answers=[caption])


BUILDERS = {cls.DATASET_NAME: cls for cls in (WebCapFilt,)}
