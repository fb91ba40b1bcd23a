"""The training image augmentation, the one implementation (training/): the paper's random resized crop and
flip (the collator's `train_view`), and RandAugment (LAVIS's blip_image_train, the FlanT5 models' training
transform): each operation against an independent formulation, the draws, and the collator's use of it."""

import collections

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import torch

from training import randaugment as ra
from training.data import CROP_RATIO, CROP_SCALE, random_resized_crop_box


def image(seed=0, size=(40, 52)):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 220, (8, 8, 3)).astype(np.uint8)  # smooth enough for bilinear checks
    return np.asarray(PIL.Image.fromarray(coarse).resize(size[::-1], PIL.Image.Resampling.BICUBIC))


def opencv_warp(source, matrix):
    """OpenCV's warpAffine in float: output (x, y) = bilinear source at matrix^-1 (x, y), grey outside.
    Returns the values and where all four neighbours lie inside the image."""
    inverse = np.linalg.inv(np.vstack([np.asarray(matrix, float), [0, 0, 1]]))
    height, width = source.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    inside = (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)
    x0, y0 = np.clip(np.floor(sx).astype(int), 0, width - 2), np.clip(np.floor(sy).astype(int), 0, height - 2)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    s = source.astype(float)
    values = ((1 - fx) * (1 - fy) * s[y0, x0] + fx * (1 - fy) * s[y0, x0 + 1]
              + (1 - fx) * fy * s[y0 + 1, x0] + fx * fy * s[y0 + 1, x0 + 1])
    outside = (sx < -1) | (sx > width) | (sy < -1) | (sy > height)
    return values, inside, outside


def test_autocontrast_and_equalize_are_pils():
    for seed in range(3):
        img, rng = image(seed), np.random.default_rng(seed)
        assert np.array_equal(ra.apply(img, "AutoContrast", 5, rng),
                              np.asarray(PIL.ImageOps.autocontrast(PIL.Image.fromarray(img))))
        assert np.array_equal(ra.apply(img, "Equalize", 5, rng), np.asarray(PIL.ImageOps.equalize(PIL.Image.fromarray(img))))
        stretched = ra.apply(img, "AutoContrast", 5, rng).reshape(-1, 3)
        assert (stretched.min(0) == 0).all() and (stretched.max(0) >= 254).all()  # PIL truncates its table
    flat = np.full((6, 6, 3), 77, np.uint8)  # nothing to stretch or equalise
    assert np.array_equal(ra.autocontrast(flat), flat) and np.array_equal(ra.equalize(flat), flat)


def test_brightness_and_sharpness():
    img = image()
    assert np.array_equal(ra.brightness(img, 1.0), img) and np.array_equal(ra.sharpness(img, 1.0), img)
    assert np.array_equal(ra.brightness(img, 2.0), np.clip(img.astype(int) * 2, 0, 255).astype(np.uint8))
    smoothed = ra.sharpness(img, 0.0)  # the smoothing kernel alone, borders kept
    assert np.array_equal(smoothed[0], img[0]) and np.array_equal(smoothed[:, -1], img[:, -1])
    window = img[4:7, 9:12, 1].astype(float)
    assert smoothed[5, 10, 1] == np.rint((window.sum() + 4 * window[1, 1]) / 13)


@pytest.mark.parametrize("matrix", [
    [[1, 0.15, 0], [0, 1, 0]], [[1, 0, 0], [-0.15, 1, 0]], [[1, 0, -5], [0, 1, 0]],
    ra.rotation_matrix(52, 40, 15), ra.rotation_matrix(52, 40, -15),
], ids=["shear x", "shear y", "translate x", "rotate", "rotate back"])
def test_geometric_operations_follow_opencvs_warp(matrix):
    img = image()
    expected, inside, outside = opencv_warp(img, matrix)
    got = ra.warp(img, matrix)
    assert inside.mean() > 0.7 and outside.any() or np.allclose(matrix, [[1, 0, -5], [0, 1, 0]])
    assert np.abs(got[inside].astype(float) - expected[inside]).max() < 1 + 1e-9  # rounding only
    assert (got[outside] == 128).all()


def test_rotation_is_opencvs_counter_clockwise_about_the_centre():
    matrix = ra.rotation_matrix(52, 40, 90)
    # OpenCV's forward map: the centre stays, a point right of the centre goes up (y decreases)
    np.testing.assert_allclose(matrix @ [26, 20, 1], [26, 20], atol=1e-9)
    np.testing.assert_allclose(matrix @ [36, 20, 1], [26, 10], atol=1e-9)
    translated = ra.warp(image(), [[1, 0, -5], [0, 1, 0]])
    assert np.array_equal(translated[:, :-5], image()[:, 5:]) and (translated[:, -5:] == 128).all()


def test_draws_follow_lavis_and_the_seed():
    img = image()
    assert np.array_equal(ra.random_augment(img, np.random.default_rng(7)), ra.random_augment(img, np.random.default_rng(7)))
    applied = collections.Counter()
    changed = 0
    for seed in range(400):
        # LAVIS's order: both operations drawn first, then for each whether it applies (p = 0.5), then
        # its sign; the implementation's view must be this replay's
        rng, expected = np.random.default_rng(seed), img
        for index in rng.integers(0, len(ra.OPERATIONS), size=2):
            if rng.random() <= 0.5:
                applied[ra.OPERATIONS[index]] += 1
                expected = ra.apply(expected, ra.OPERATIONS[index], 5, rng)
        view = ra.random_augment(img, np.random.default_rng(seed))
        assert np.array_equal(view, expected), seed
        changed += not np.array_equal(view, img)
    # 800 draws, half applied, spread over the ten operations
    assert 330 < sum(applied.values()) < 470 and set(applied) == set(ra.OPERATIONS)
    assert all(15 < count < 70 for count in applied.values()), applied
    # Identity, Brightness and Sharpness (factor 1 at magnitude 5) change nothing: 3 of 10 operations
    assert 0.45 < changed / 400 < 0.75
    with pytest.raises(ValueError, match="uint8"):
        ra.random_augment(img.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown RandAugment operation 'Solarise'"):
        ra.apply(img, "Solarise", 5, np.random.default_rng(0))


def test_random_resized_crop_box_follows_torchvision_rules():
    rng = np.random.default_rng(0)
    for _ in range(300):
        left, top, right, bottom = random_resized_crop_box(200, 150, (0.5, 1.0), (3 / 4, 4 / 3), rng)
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= 200 and bottom <= 150
        assert 0.5 * 200 * 150 * 0.97 <= w * h <= 200 * 150
        assert 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03
    # no box with area >= half the image fits a 1000x10 strip in ratio [3/4, 4/3]: largest centred box
    assert random_resized_crop_box(1000, 10, (0.5, 1.0), (3 / 4, 4 / 3), rng) == (493, 0, 506, 10)
    assert random_resized_crop_box(10, 1000, (0.5, 1.0), (3 / 4, 4 / 3), rng) == (0, 493, 10, 506)


def test_train_view_is_the_papers_crop_and_flip_drawn_from_the_seed(monkeypatch):
    """A view is a function of its seed alone; a crop of the whole image is the eval resize, the flip mirrors it;
    the image processor's RGB conversion, size and resampling hold; training batches get the view normalised."""
    from modeling_instructblip import tiny
    from training import data

    _, processor = tiny.build("llama", image_size=56)
    collator = data.InstructBlipCollator(processor)
    photo = PIL.Image.fromarray(image(size=(120, 160))).convert("RGBA")
    views = [collator.train_view(photo, seed) for seed in (7, 7, 8)]
    assert views[0].shape == (56, 56, 3) and views[0].dtype == np.uint8
    assert np.array_equal(views[0], views[1]) and not np.array_equal(views[0], views[2])
    monkeypatch.setattr(data, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(data, "CROP_RATIO", (4 / 3, 4 / 3))  # the photo's own: the crop is the whole photo
    eval_view = np.asarray(photo.convert("RGB").resize((56, 56), PIL.Image.Resampling.BICUBIC))
    for probability, expected in ((0.0, eval_view), (1.0, eval_view[:, ::-1])):
        monkeypatch.setattr(data, "FLIP_PROBABILITY", probability)
        assert np.array_equal(collator.train_view(photo, 3), expected)
    sample = {"image": photo, "instruction": "What is this?", "target": "a test", "seed": 3, "train": True, "skipped": 0}
    batch = collator([sample])
    expected = processor.image_processor(expected, return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], expected)


def test_collator_adds_randaugment_after_crop_and_flip():
    from modeling_instructblip import tiny
    from training.data import InstructBlipCollator

    _, processor = tiny.build("llama")
    photo = PIL.Image.fromarray(image(size=(120, 160)))
    plain, augmented = InstructBlipCollator(processor), InstructBlipCollator(processor, randaugment=True)
    views = [(plain.train_view(photo, seed), augmented.train_view(photo, seed)) for seed in range(12)]
    assert all(a.shape == b.shape and b.dtype == np.uint8 for a, b in views)
    assert sum(not np.array_equal(a, b) for a, b in views) >= 4  # some draws change the view
    for seed, (crop, view) in enumerate(views):  # the same crop and flip, then the generator's next draws
        rng = np.random.default_rng(seed)
        random_resized_crop_box(photo.width, photo.height, CROP_SCALE, CROP_RATIO, rng)
        rng.random()
        assert np.array_equal(view, ra.random_augment(crop, rng))
    sample = {"image": photo, "instruction": "What is this?", "target": "a test", "seed": 3, "train": True, "skipped": 0}
    assert augmented([sample, dict(sample, seed=4)])["pixel_values"].shape[0] == 2


def test_train_py_flag_reaches_the_run_and_its_card(held_in_corpus, tmp_path, monkeypatch):
    """`train.py --train_randaugment true` trains with it and the model card says so; without the
    crop and flip it is refused."""
    from tests.helpers import small_run_args, train_script

    train = train_script()
    output = tmp_path / "out"
    made = []

    class Collator(train.InstructBlipCollator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.randaugment)

    monkeypatch.setattr(train, "InstructBlipCollator", Collator)
    results = train.main(small_run_args(held_in_corpus, output, train_randaugment="true", max_steps=2,
                                        save_strategy="no"))
    assert made == [True]  # the training batches get it
    assert results["train"]["train_loss"] > 0
    assert "horizontal flip + RandAugment (2 operations, magnitude 5)" in (output / "README.md").read_text()
    with pytest.raises(ValueError, match="needs train_augmentation true"):
        train.parse_args(small_run_args(held_in_corpus, tmp_path / "x", train_randaugment="true",
                                               train_augmentation="false"))
