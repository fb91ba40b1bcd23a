"""Flickr30K, Karpathy splits (held-out, image captioning; the paper evaluates the 1K test split).

Official release, into one folder:

    dataset_flickr30k.json   <- https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip
    flickr30k-images/<filename>.jpg   <- flickr30k-images.tar.gz, by request form at
                                         https://shannon.cs.illinois.edu/DenotationGraph/

dataset_flickr30k.json has the Karpathy format of coco_caption.py without "filepath"/"cocoid".
Every split yields one record per image with all 5 captions in `answers` and the paper's
zero-shot prompt as the instruction.
"""

from .coco_caption import KARPATHY_URL, KarpathyCaptions
from .schema import ZERO_SHOT
from .templates import ZERO_SHOT_PROMPTS

FILES = {
    "dataset_flickr30k.json": KARPATHY_URL,
    "flickr30k-images": "https://shannon.cs.illinois.edu/DenotationGraph/ (request form)",
}


class Flickr30K(KarpathyCaptions):
    """Flickr30K captions (Karpathy splits), zero-shot prompt "A short image description:"."""

    DATASET_NAME = "flickr30k"
    TEMPLATE_FAMILY = ZERO_SHOT
    HOMEPAGE = "https://shannon.cs.illinois.edu/DenotationGraph/"
    CITATION = """@article{young2014image,
  title={From image descriptions to visual denotations},
  author={Young, Peter and Lai, Alice and Hodosh, Micah and Hockenmaier, Julia},
  journal={TACL}, year={2014}}"""
    FILES = FILES
    ANNOTATION_FILE = "dataset_flickr30k.json"
    IMAGE_FOLDER = "flickr30k-images"
    PER_CAPTION_SPLITS = ()

    def make(self, split, **fields):
        return super().make(split, instruction=ZERO_SHOT_PROMPTS["flickr30k"], **fields)


BUILDERS = {cls.DATASET_NAME: cls for cls in (Flickr30K,)}
