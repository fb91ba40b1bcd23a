"""The vision feature cache (training/feature_cache.py): what it stores is the frozen tower's output,
each distinct image once; it refuses another tower's folder; the processor and the collator take
cached features in place of images; and a run from cached features trains to the weights of the
same run from images (without augmentation)."""

import json
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training import modeling  # noqa: E402
from training.data import NO_IMAGE, UNREADABLE_IMAGE, InstructBlipCollator, InstructionDataset, open_image  # noqa: E402
from training.feature_cache import INFO_FILENAME, VisionFeatureCache, image_key  # noqa: E402

NO_DROPOUT = "qformer_config.hidden_dropout_prob=0,qformer_config.attention_probs_dropout_prob=0"


@pytest.fixture(scope="module")
def tiny():
    model, processor = modeling.build_tiny("llama", seed=0, config_overrides=NO_DROPOUT)
    return modeling.freeze(model), processor


def write_image(path, seed, size=(40, 30)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return {"path": str(path), "bytes": None}


def tower_output(model, processor, image):
    pixel_values = torch.as_tensor(processor.image_processor(images=[open_image(image)])["pixel_values"])
    with torch.no_grad():
        return model.get_vision_features(pixel_values)[0]


def test_fill_stores_each_distinct_images_tower_output_once(tiny, tmp_path):
    model, processor = tiny
    a, b, c = (write_image(tmp_path / f"{name}.png", seed) for seed, name in enumerate("abc"))
    b_as_bytes = {"path": None, "bytes": Path(b["path"]).read_bytes()}  # same image, other form: same key
    (tmp_path / "cut.png").write_bytes(Path(c["path"]).read_bytes()[:40])
    images = [a, b, a, b_as_bytes, c, {"path": str(tmp_path / "missing.png"), "bytes": None},
              {"path": str(tmp_path / "cut.png"), "bytes": None}, None]
    cache = VisionFeatureCache(tmp_path / "cache", model, processor)
    report = cache.fill(model, processor, images, batch_size=2)
    assert report == {"computed": 3, "cached": 0, "repeats": 2, "unreadable": {UNREADABLE_IMAGE: 2, NO_IMAGE: 1}}
    assert image_key(b) == image_key(b_as_bytes)
    for image in (a, b, c):
        torch.testing.assert_close(cache.load(image_key(image)), tower_output(model, processor, image), atol=1e-5, rtol=0)
    with pytest.raises(OSError, match="not in the vision feature cache"):
        cache.load(image_key({"path": str(tmp_path / "cut.png"), "bytes": None}))
    # a second fill (a resumed or repeated run) computes nothing; no temporary files are left
    again = VisionFeatureCache(tmp_path / "cache", model, processor).fill(model, processor, images)
    assert again["computed"] == 0 and again["cached"] == 3
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    assert json.loads((tmp_path / "cache" / INFO_FILENAME).read_text())["dtype"] == "float32"


def test_a_folder_filled_by_another_tower_or_transform_is_refused(tiny, tmp_path):
    model, processor = tiny
    VisionFeatureCache(tmp_path / "cache", model, processor)
    other, _ = modeling.build_tiny("llama", seed=1, config_overrides=NO_DROPOUT)
    with pytest.raises(ValueError, match=r"another vision tower.*vision_tower"):
        VisionFeatureCache(tmp_path / "cache", other, processor)
    processor.image_processor.image_mean = [0.5, 0.5, 0.5]
    try:
        with pytest.raises(ValueError, match="eval_transform"):
            VisionFeatureCache(tmp_path / "cache", model, processor)
    finally:
        _, fresh = modeling.build_tiny("llama", seed=0, config_overrides=NO_DROPOUT)
        processor.image_processor.image_mean = fresh.image_processor.image_mean


def test_processor_and_collator_take_cached_features_in_place_of_images(tiny, tmp_path):
    model, processor = tiny
    images = [write_image(tmp_path / f"{i}.png", i) for i in range(3)]
    records = {"image": [i["path"] for i in images] + [str(tmp_path / "missing.png")],
               "frames": [[] for _ in range(4)],
               "instruction": ["What is it?", "Describe the image.", "Colour?", "Lost?"],
               "target": ["a square", "noise", "red", "?"]}
    features = datasets.Features({"image": datasets.Image(), "frames": datasets.List(datasets.Image()),
                                  "instruction": datasets.Value("string"), "target": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(records, features=features)
    cache = VisionFeatureCache(tmp_path / "cache", model, processor)
    cache.fill(model, processor, [{"path": i["path"], "bytes": None} for i in images])

    plain = InstructionDataset(dataset, train=False)
    cached = InstructionDataset(dataset, train=False, feature_cache=cache)
    # the uncached (unreadable) last record is replaced by the next one and counted, as without a cache
    assert cached[3]["skipped"] == 1 and plain[3]["skipped"] == 1
    collator = InstructBlipCollator(processor)
    from_images = collator([plain[i] for i in range(3)])
    from_cache = collator([cached[i] for i in range(3)])
    assert "pixel_values" not in from_cache and from_cache["vision_features"].shape[0] == 3
    for row, image in zip(from_cache["vision_features"], images):  # each sample carries its own image's features
        torch.testing.assert_close(row, tower_output(model, processor, image), atol=1e-5, rtol=0)
    for key in ("input_ids", "attention_mask", "labels", "qformer_input_ids", "qformer_attention_mask"):
        assert torch.equal(from_images[key], from_cache[key]), key
    model.train()
    with torch.no_grad():
        inputs = {k: v for k, v in from_images.items() if k != "num_skipped_records"}
        expected = model(**inputs).loss
        inputs = {k: v for k, v in from_cache.items() if k != "num_skipped_records"}
        torch.testing.assert_close(model(**inputs).loss, expected, atol=1e-5, rtol=0)
    model.eval()

    with pytest.raises(ValueError, match="not several"):
        processor(images=[open_image(images[0])], vision_features=[torch.zeros(2, 3)], text=["a"])
    with pytest.raises(ValueError, match=r"one \[tokens, hidden\] tensor per image"):
        processor(vision_features=[torch.zeros(2, 3), torch.zeros(3, 3)], text=["a", "b"])


def test_a_run_from_cached_features_trains_to_the_run_from_images(held_in_corpus, tmp_path):
    """train.py --vision_feature_cache (no augmentation) ends with the weights of the same run that
    decodes images and runs the frozen tower every step; the card and data report say so."""
    from tests.helpers import runs_end_alike, small_run_args, train_script

    train = train_script()
    runs = runs_end_alike(
        held_in_corpus, tmp_path, {"images": {}, "cached": {"vision_feature_cache": str(tmp_path / "features")}},
        train_augmentation="false", save_strategy="no",
    )
    report = runs["cached"]["data"]["vision feature cache"]
    assert report["computed"] > 0 and report["unreadable"] == {}
    assert "vision feature cache" not in runs["images"]["data"]
    assert "cached vision features" in (tmp_path / "cached" / "README.md").read_text()

    with pytest.raises(ValueError, match="train_augmentation false"):
        train.parse_args(small_run_args(held_in_corpus, tmp_path / "x", vision_feature_cache=str(tmp_path / "f")))
