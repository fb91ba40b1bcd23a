"""The bundled synthetic corpus builds through the real builders, and its labels match its pixels."""

import numpy as np
from PIL import Image

from dataset_builders import sample_data
from dataset_builders.sample_data import COLORS, Scene, draw_scene


def test_sample_corpus_builds_through_the_real_builders(tmp_path, build):
    dirs = sample_data.write_sample_corpus(str(tmp_path / "sample"), num_images=12)
    captions = build("coco_caption", dirs["coco_caption"], "train")
    vqa = build("vqav2", dirs["vqav2"], "validation")
    qg = build("vqav2_qg", dirs["vqav2_qg"], "train")
    gqa = build("gqa", dirs["gqa"], "test_dev")
    # Karpathy train = 8 train2014 images + 1 restval image of the 4 val2014 ones
    assert len(captions) == (8 + 1) * 5 and len(vqa) == 4 * 5 and len(qg) == 8 * 5 and len(gqa) == 4 * 3
    assert vqa[0]["image"].size == (128, 128)
    assert gqa[0]["instruction"] == f"Question: {gqa[0]['question']} Short answer:"


def test_scene_pixels_carry_the_labels(tmp_path):
    path = str(tmp_path / "x.png")
    draw_scene(Scene("square", "blue", 2, "left", "stop", (245, 245, 245)), path)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = (np.abs(pixels - np.array(COLORS["blue"])).sum(-1) < 30)
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 200 and xs.mean() < 64  # blue shapes, on the left half
