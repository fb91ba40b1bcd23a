"""InstructBlipImageProcessor and InstructBlipProcessor: transformers parity, the paper's layouts, what transformers'
own processor tests ask of a processor (kwargs, tokenizer defaults, loading options, call signature), errors, saving."""

import copy
import inspect
import json
import os
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import BlipImageProcessorPil
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from modeling_instructblip.processing_instructblip import (
    IGNORE_INDEX,
    InstructBlipImageProcessor,
    InstructBlipProcessor,
    frame_indices,
    sample_frames,
)


N = 32  # num_query_tokens
PROMPTS = ["Question: what color is the square? Short answer:", "A photo of"]
MEAN = np.array(OPENAI_CLIP_MEAN, dtype=np.float32)[:, None, None]
STD = np.array(OPENAI_CLIP_STD, dtype=np.float32)[:, None, None]


def random_image(height, width, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    image = PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "RGBA":
        alpha = PIL.Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
        image = image.copy()
        image.putalpha(alpha)
        return image
    if mode == "LA":
        return random_image(height, width, "RGBA", seed).convert("LA")
    if mode == "P":
        return image.convert("P")  # web palette, dithered
    return image.convert(mode)


def normalized(rgb_uint8_hwc):
    """The expected pixel values of an already-sized RGB uint8 image."""
    return (np.moveaxis(rgb_uint8_hwc, -1, 0).astype(np.float32) / 255 - MEAN) / STD


@pytest.fixture
def image_processor():
    return InstructBlipImageProcessor()


@pytest.fixture
def reference_image_processor():
    # transformers' PIL BLIP image processor with InstructBLIP's settings (the Salesforce repos' config)
    return BlipImageProcessorPil(
        size={"height": 224, "width": 224},
        resample=PIL.Image.Resampling.BICUBIC,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )


def _llm_tokenizer(kind, llama_tokenizer, t5_tokenizer, pad=True):
    tokenizer = copy.deepcopy(llama_tokenizer if kind == "llama" else t5_tokenizer)
    if kind == "llama" and pad:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})  # Vicuna's released tokenizer has [PAD] too
    return tokenizer


def make_processor(kind, llama_tokenizer, t5_tokenizer, bert_tokenizer, image_processor=None, **kwargs):
    kwargs.setdefault("is_encoder_decoder", kind == "t5")
    return InstructBlipProcessor(
        image_processor or InstructBlipImageProcessor(),
        _llm_tokenizer(kind, llama_tokenizer, t5_tokenizer),
        copy.deepcopy(bert_tokenizer),
        num_query_tokens=N,
        **kwargs,
    )


def make_reference(kind, llama_tokenizer, t5_tokenizer, bert_tokenizer, reference_image_processor):
    return transformers.InstructBlipProcessor(
        image_processor=reference_image_processor,
        tokenizer=_llm_tokenizer(kind, llama_tokenizer, t5_tokenizer),
        qformer_tokenizer=copy.deepcopy(bert_tokenizer),
        num_query_tokens=N,
    )


@pytest.fixture
def build(llama_tokenizer, t5_tokenizer, bert_tokenizer):
    """build("llama" | "t5", **processor_kwargs) -> our processor on fresh tokenizer copies."""
    return lambda kind, **kwargs: make_processor(kind, llama_tokenizer, t5_tokenizer, bert_tokenizer, **kwargs)


@pytest.fixture
def build_reference(llama_tokenizer, t5_tokenizer, bert_tokenizer, reference_image_processor):
    """build_reference("llama" | "t5") -> transformers' InstructBlipProcessor on fresh tokenizer copies."""
    return lambda kind: make_reference(kind, llama_tokenizer, t5_tokenizer, bert_tokenizer, reference_image_processor)


@pytest.fixture
def llama_processor(build):
    return build("llama")


@pytest.fixture
def t5_processor(build):
    return build("t5")


def assert_same_batch(ours, reference):
    assert set(ours.keys()) == set(reference.keys())
    for key in reference:
        if key == "pixel_values":
            assert ours[key].dtype == torch.float32
            torch.testing.assert_close(ours[key], reference[key].float(), atol=1e-5, rtol=0)
        else:
            assert ours[key].tolist() == reference[key].tolist(), key


# ---------------------------------------------------------------------------------------------------------------
# Image processor: transformers' BLIP one, InstructBLIP's settings, the PIL modes PIL's convert gets wrong
# ---------------------------------------------------------------------------------------------------------------


def test_image_processor_is_transformers_blip_with_the_papers_settings(image_processor):
    assert isinstance(image_processor, BlipImageProcessorPil)
    assert dict(image_processor.size) == {"height": 224, "width": 224}
    assert image_processor.resample == PIL.Image.Resampling.BICUBIC
    assert tuple(image_processor.image_mean) == tuple(OPENAI_CLIP_MEAN)
    assert tuple(image_processor.image_std) == tuple(OPENAI_CLIP_STD)
    assert image_processor.do_resize and image_processor.do_rescale and image_processor.do_normalize
    assert image_processor.do_convert_rgb


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "1"])
def test_eval_transform_matches_transformers_blip(mode, image_processor, reference_image_processor):
    sizes = [(17, 33), (224, 224), (300, 200), (97, 401)]
    images = [random_image(h, w, mode, seed=i) for i, (h, w) in enumerate(sizes)]
    ours = image_processor(images, return_tensors="pt")["pixel_values"]
    reference = reference_image_processor(images, return_tensors="pt")["pixel_values"]
    assert ours.shape == (4, 3, 224, 224) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_eval_transform_is_straight_bicubic_resize_and_clip_normalisation(image_processor):
    image = random_image(40, 90)
    expected = normalized(np.asarray(image.resize((224, 224), PIL.Image.Resampling.BICUBIC)))
    np.testing.assert_allclose(image_processor(image, return_tensors="np")["pixel_values"][0], expected, atol=1e-5)


def test_transformers_options_are_honoured(image_processor):
    image = random_image(64, 48)
    assert InstructBlipImageProcessor(size={"height": 32, "width": 48})(image, return_tensors="np")[
        "pixel_values"].shape == (1, 3, 32, 48)
    assert image_processor(image, size={"height": 16, "width": 16}, return_tensors="np")["pixel_values"].shape == (
        1, 3, 16, 16)
    raw = image_processor(image, do_resize=False, do_rescale=False, do_normalize=False, return_tensors="np")
    np.testing.assert_array_equal(raw["pixel_values"][0], np.moveaxis(np.asarray(image), -1, 0))


def test_numpy_and_torch_inputs_match_pil(image_processor):
    image = random_image(50, 70)
    hwc = np.asarray(image)
    expected = image_processor(image, return_tensors="np")["pixel_values"]
    chw = np.ascontiguousarray(np.moveaxis(hwc, -1, 0))
    variants = {
        "numpy HWC uint8": ({}, hwc),
        "numpy CHW uint8": ({}, chw),
        "torch CHW uint8": ({}, torch.from_numpy(chw.copy())),
        # already in [0, 1]: transformers' rule is do_rescale=False
        "torch CHW float in [0, 1]": ({"do_rescale": False}, torch.from_numpy(chw.copy()).float() / 255),
        "numpy HWC float in [0, 1]": ({"do_rescale": False}, hwc.astype(np.float32) / 255),
    }
    for name, (options, variant) in variants.items():
        got = image_processor(variant, return_tensors="np", **options)["pixel_values"]
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=name)


def test_rgba_and_transparency_are_composited_on_white(image_processor):
    transparent = np.zeros((8, 8, 4), dtype=np.uint8)  # black, fully transparent
    white = (1.0 - MEAN[:, 0, 0]) / STD[:, 0, 0]
    for image in (transparent, PIL.Image.fromarray(transparent)):
        pixels = image_processor(image, return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(pixels, np.broadcast_to(white[:, None, None], pixels.shape), atol=1e-5)


def test_premultiplied_alpha_is_composited_and_high_bit_depth_scaled_not_clipped(image_processor):
    """The modes whose PIL `convert("RGB")` is wrong: transformers' BLIP processor fails on La, drops RGBa's
    transparency, and clips 16-bit and [0, 1] float greyscale to 255."""
    values16 = np.array([[0, 32896, 65535, 257]], dtype=np.uint16).repeat(4, axis=0)
    values8 = np.array([[0, 128, 255, 1]], dtype=np.uint8).repeat(4, axis=0)
    small = {"size": {"height": 4, "width": 4}, "return_tensors": "np"}
    expected = image_processor(PIL.Image.fromarray(values8), **small)["pixel_values"]
    inputs = {
        "I;16": PIL.Image.fromarray(values16),
        "I": PIL.Image.fromarray(values16.astype(np.int32)),
        "F in [0, 1]": PIL.Image.fromarray(values8.astype(np.float32) / 255),
        "F in [0, 255]": PIL.Image.fromarray(values8.astype(np.float32)),
    }
    assert [image.mode for image in inputs.values()] == ["I;16", "I", "F", "F"]
    for name, image in inputs.items():
        np.testing.assert_allclose(image_processor(image, **small)["pixel_values"], expected, atol=1e-5, err_msg=name)
    clipped = BlipImageProcessorPil(size=small["size"])(inputs["I;16"], return_tensors="np")["pixel_values"]
    assert not np.allclose(clipped, expected, atol=1e-5)  # transformers' own clips 16-bit values to 255
    rgba = random_image(20, 20, "RGBA")
    for premultiplied, plain in (("RGBa", rgba), ("La", rgba.convert("LA"))):
        np.testing.assert_allclose(image_processor(plain.convert(premultiplied), return_tensors="np")["pixel_values"],
                                   image_processor(plain, return_tensors="np")["pixel_values"], atol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# Processor: parity with transformers' InstructBlipProcessor
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_single_sample_matches_transformers(kind, build, build_reference):
    ours, reference = build(kind), build_reference(kind)
    image = random_image(60, 80)
    expected = reference(images=image, text=PROMPTS[0], return_tensors="pt")
    assert_same_batch(ours(images=image, text=PROMPTS[0], return_tensors="pt"), expected)
    assert ours.image_token_id == reference.tokenizer.convert_tokens_to_ids("<image>")
    assert expected["input_ids"][0, :N].tolist() == [ours.image_token_id] * N


@pytest.mark.parametrize("kind", ["llama", "t5"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_transformers(kind, side, build, build_reference):
    """`padding_side` pads the LLM input; the Q-Former input keeps its tokenizer's side (right, as LAVIS
    does: transformers' processor would left-pad it too, and transformers' Q-Former numbers those pads)."""
    ours, reference = build(kind), build_reference(kind)
    images = [random_image(60, 80, seed=0), random_image(300, 120, "RGBA", seed=1)]
    reference.tokenizer.padding_side = side
    expected = reference(images=images, text=PROMPTS, padding=True, return_tensors="pt")
    assert reference.qformer_tokenizer.padding_side == "right"
    assert_same_batch(ours(images=images, text=PROMPTS, padding_side=side, return_tensors="pt"), expected)
    # without padding_side each tokenizer pads on its own side, as transformers does
    ours.tokenizer.padding_side = side
    assert_same_batch(ours(images=images, text=PROMPTS, return_tensors="pt"), expected)
    ours.qformer_tokenizer.padding_side = reference.qformer_tokenizer.padding_side = side
    expected = reference(images=images, text=PROMPTS, padding=True, return_tensors="pt")
    assert_same_batch(ours(images=images, text=PROMPTS, padding_side=side, return_tensors="pt"), expected)


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_text_only_and_images_only_match_transformers(kind, build, build_reference):
    ours, reference = build(kind), build_reference(kind)
    assert_same_batch(
        ours(text=PROMPTS, padding_side="right", return_tensors="pt"),
        reference(text=PROMPTS, padding=True, padding_side="right", return_tensors="pt"),
    )
    images = [random_image(30, 30), random_image(50, 20)]
    assert_same_batch(ours(images=images, return_tensors="pt"), reference(images=images, return_tensors="pt"))


def test_transformers_blip_image_processor_plugs_in(build, build_reference, reference_image_processor):
    """The Salesforce repos name transformers' BlipImageProcessor: our processor takes it as it is."""
    ours, reference = build("llama", image_processor=reference_image_processor), build_reference("llama")
    images = [random_image(30, 40), random_image(50, 50, "L")]
    assert_same_batch(ours(images=images, text=PROMPTS, return_tensors="pt"),
                      reference(images=images, text=PROMPTS, padding=True, return_tensors="pt"))
    frames = [random_image(30, 30, seed=t) for t in range(4)]
    assert ours(videos=[frames], text=PROMPTS[0], return_tensors="pt")["pixel_values"].shape == (1, 4, 3, 224, 224)


def test_left_padding_layout_for_generation(llama_processor):
    llama_processor.tokenizer.padding_side = "right"  # the helper must not depend on the tokenizer default
    batch = llama_processor(images=[random_image(20, 20)] * 2, text=PROMPTS, padding_side="left", return_tensors="pt")
    tok = llama_processor.tokenizer
    short = tok(PROMPTS[1]).input_ids
    long = tok(PROMPTS[0]).input_ids
    pad = tok.pad_token_id
    img = llama_processor.image_token_id
    assert batch["input_ids"][1].tolist() == [img] * N + [pad] * (len(long) - len(short)) + short
    assert batch["attention_mask"][1].tolist() == [1] * N + [0] * (len(long) - len(short)) + [1] * len(short)
    assert batch["input_ids"][0].tolist() == [img] * N + long
    assert short[0] == tok.bos_token_id


def test_image_token_added_once_and_reused(llama_tokenizer, bert_tokenizer):
    tokenizer = copy.deepcopy(llama_tokenizer)
    size = len(tokenizer)
    processor = InstructBlipProcessor(InstructBlipImageProcessor(), tokenizer, copy.deepcopy(bert_tokenizer))
    assert processor.image_token == "<image>" and processor.image_token_id == size and len(tokenizer) == size + 1
    assert tokenizer.convert_ids_to_tokens(processor.image_token_id) == "<image>"
    assert processor.num_query_tokens == 32  # the paper's default
    InstructBlipProcessor(InstructBlipImageProcessor(), tokenizer, copy.deepcopy(bert_tokenizer))
    assert len(tokenizer) == size + 1


def test_a_prompt_may_mark_its_image_once(llama_processor):
    """The paper's templates mark the visual input with `<Image>`: the placeholder is taken out of the text and the
    image tokens go in front, as always; twice, or with no image, is an error."""
    image = random_image(16, 16)
    plain = llama_processor(images=[image] * 2, text=PROMPTS, return_tensors="pt")
    marked = llama_processor(images=[image] * 2, text=["<image> " + PROMPTS[0], PROMPTS[1] + " <image>"],
                             return_tensors="pt")
    assert_same_batch(marked, plain)
    with pytest.raises(ValueError, match=r"text\[0\] holds the image placeholder '<image>' 2 times"):
        llama_processor(images=image, text="<image> A photo <image> of")
    with pytest.raises(ValueError, match="but no images, videos or vision_features were given"):
        llama_processor(text="<image> A photo of")


# ---------------------------------------------------------------------------------------------------------------
# Processor: what transformers' processor tests ask (tools/transformers_suite/run_processor.sh runs them all)
# ---------------------------------------------------------------------------------------------------------------


def test_flat_grouped_and_common_kwargs_reach_their_part(llama_processor):
    image = random_image(30, 30)
    expected_flat = llama_processor(images=image, text=PROMPTS[0], do_rescale=True, rescale_factor=-1.0,
                                    padding="max_length", max_length=N + 20, return_tensors="pt")
    grouped = llama_processor(images=image, text=PROMPTS[0], images_kwargs={"do_rescale": True, "rescale_factor": -1.0},
                              text_kwargs={"padding": "max_length", "max_length": N + 20},
                              common_kwargs={"return_tensors": "pt"})
    assert_same_batch(grouped, expected_flat)
    assert expected_flat["input_ids"].shape == (1, N + 20)
    assert expected_flat["pixel_values"][0, 0].mean() <= 0  # rescale_factor -1 was applied
    with pytest.raises(ValueError, match="passed two times"):
        llama_processor(images=image, text="x", images_kwargs={"do_rescale": True}, do_rescale=True)
    with pytest.raises(ValueError, match="passed two times"):
        llama_processor(images=image, text="x", text_kwargs={"padding": "do_not_pad"}, padding="max_length")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['paddding'\]"):
        llama_processor(text="x", paddding=True)


def test_tokenizer_saved_defaults_hold_unless_a_call_overrides_them(build, tmp_path):
    processor = build("llama")
    processor.tokenizer.save_pretrained(tmp_path)
    tokenizer = type(processor.tokenizer).from_pretrained(tmp_path, padding="max_length", max_length=117)
    ours = InstructBlipProcessor(InstructBlipImageProcessor(), tokenizer, processor.qformer_tokenizer,
                                 num_query_tokens=1)
    assert len(ours(images=random_image(20, 20), text="lower newer")["input_ids"][0]) == 117
    assert len(ours(images=random_image(20, 20), text="lower newer", max_length=76)["input_ids"][0]) == 76
    assert len(ours(text="lower newer", padding=False)["input_ids"][0]) < 10


def test_from_pretrained_options_reach_the_parts(llama_processor, tmp_path):
    llama_processor.save_pretrained(tmp_path)
    loaded = InstructBlipProcessor.from_pretrained(tmp_path, do_normalize=False, size={"height": 32, "width": 32},
                                                   cls_token="(CLS)")
    assert loaded.image_processor.do_normalize is False and dict(loaded.image_processor.size) == {"height": 32,
                                                                                                 "width": 32}
    assert loaded.tokenizer.cls_token == "(CLS)"
    assert InstructBlipProcessor.from_pretrained(tmp_path).image_processor.do_normalize is True


def test_call_signature_follows_the_processor_rules():
    """transformers' rules: explicit `__call__` arguments are runtime inputs only (default None, not processor
    attributes, not processor kwargs), `__init__` arguments are not class attributes or processor kwargs."""
    call = inspect.signature(InstructBlipProcessor.__call__).parameters
    explicit = [name for name, p in call.items() if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert explicit == ["images", "text", "videos", "targets", "vision_features"]
    assert all(call[name].default is None for name in explicit)
    kwargs_names = set()
    for name, typed in InstructBlipProcessor.valid_processor_kwargs.__annotations__.items():
        kwargs_names |= {name, *getattr(typed, "__annotations__", {})}
    init = [name for name in inspect.signature(InstructBlipProcessor.__init__).parameters if name not in ("self", "kwargs")]
    assert not set(explicit) & kwargs_names and not set(init) & kwargs_names
    assert not [name for name in init if hasattr(InstructBlipProcessor, name)]


def test_save_load_round_trip_is_the_same_processor(llama_processor, tmp_path):
    llama_processor.save_pretrained(tmp_path / "a")
    first = InstructBlipProcessor.from_pretrained(tmp_path / "a")
    first.save_pretrained(tmp_path / "b")
    second = InstructBlipProcessor.from_pretrained(tmp_path / "b")
    assert first.to_dict() == second.to_dict()
    assert repr(first.image_processor) == repr(second.image_processor)


def test_loading_never_asks_to_trust_remote_code(tmp_path, monkeypatch):
    """A model folder's config.json names our remote code: loading the processor by its class must not go near it
    (transformers would prompt on a terminal, and fail without one)."""
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    import transformers.dynamic_module_utils as dynamic

    asked = []
    monkeypatch.setattr(dynamic, "resolve_trust_remote_code", lambda *a, **k: asked.append(a) or False)
    for module in ("configuration_auto", "tokenization_auto", "image_processing_auto", "processing_auto"):
        monkeypatch.setattr(f"transformers.models.auto.{module}.resolve_trust_remote_code",
                            lambda *a, **k: asked.append(a) or False, raising=False)
    loaded = InstructBlipProcessor.from_pretrained(tmp_path)
    assert asked == [] and type(loaded.image_processor) is InstructBlipImageProcessor


# ---------------------------------------------------------------------------------------------------------------
# Processor: videos
# ---------------------------------------------------------------------------------------------------------------


def test_videos_get_a_frames_axis_and_image_tokens_per_frame(llama_processor):
    frames = [random_image(30, 30, seed=t) for t in range(4)]
    batch = llama_processor(videos=[frames, frames[::-1]], text=PROMPTS, return_tensors="pt")
    per_frame = llama_processor.image_processor(frames, return_tensors="np")["pixel_values"]
    assert batch["pixel_values"].shape == (2, 4, 3, 224, 224)
    np.testing.assert_allclose(batch["pixel_values"][0].numpy(), per_frame, atol=1e-6)
    np.testing.assert_allclose(batch["pixel_values"][1].numpy(), per_frame[::-1], atol=1e-6)
    as_array = llama_processor(videos=np.stack([np.asarray(f) for f in frames]), text=PROMPTS[0], return_tensors="pt")
    np.testing.assert_allclose(as_array["pixel_values"][0].numpy(), per_frame, atol=1e-6)
    img = llama_processor.image_token_id
    for row, prompt in zip(batch["input_ids"].tolist(), PROMPTS):
        assert row[: 4 * N] == [img] * (4 * N) and img not in row[4 * N :]
    assert batch["input_ids"][0, 4 * N :].tolist() == llama_processor.tokenizer(PROMPTS[0]).input_ids
    with pytest.raises(ValueError, match="same number of frames"):
        llama_processor(videos=[frames, frames[:3]], text=PROMPTS)


def test_videos_sample_the_papers_frames(llama_processor, tmp_path):
    """A video file gets 4 evenly spaced frames (first and last included), decoded frames only when asked:
    `do_sample_frames=True` or `num_frames`."""
    from tests.dataset_builders.fixtures_heldout import write_video

    assert frame_indices(7) == [0, 2, 4, 6] and frame_indices(100, 3) == [0, 50, 99] and frame_indices(9, 1) == [0]
    path = write_video(str(tmp_path / "clip.mp4"), num_frames=7)
    from_file = llama_processor(videos=path, text="What happens?", return_tensors="pt")
    assert from_file["pixel_values"].shape == (1, 4, 3, 224, 224) and from_file["input_ids"].shape[1] > 4 * N
    decoded = sample_frames(path)
    assert_same_batch(llama_processor(videos=[decoded], text="What happens?", return_tensors="pt"), from_file)
    frames = [random_image(20, 20, seed=t) for t in range(10)]
    kept = llama_processor(videos=[frames], text="x", do_sample_frames=False, return_tensors="np")["pixel_values"]
    sampled = llama_processor(videos=[frames], text="x", do_sample_frames=True, return_tensors="np")["pixel_values"]
    three = llama_processor(videos=[frames], text="x", num_frames=3, return_tensors="np")["pixel_values"]
    assert kept.shape[1] == 10 and three.shape[1] == 3
    np.testing.assert_array_equal(sampled[0], kept[0, [0, 3, 6, 9]])
    with pytest.raises(ValueError, match="fps is not supported"):
        llama_processor(videos=[frames], text="x", fps=2)
    with pytest.raises(ValueError, match=r"missing video: .*nothing.mp4 \(file not found\)"):
        llama_processor(videos=str(tmp_path / "nothing.mp4"), text="x")


# ---------------------------------------------------------------------------------------------------------------
# Processor: truncation
# ---------------------------------------------------------------------------------------------------------------


def test_instructions_are_left_truncated_to_128_for_both_tokenizers(llama_processor):
    long_prompt = " ".join(f"numbers {i % 10} yes no" for i in range(120)) + " Question: what color? Short answer:"
    batch = llama_processor(images=random_image(16, 16), text=long_prompt)
    llm_full = llama_processor.tokenizer(long_prompt, add_special_tokens=False, truncation=False).input_ids
    bert_full = llama_processor.qformer_tokenizer(long_prompt, add_special_tokens=False, truncation=False).input_ids
    assert len(llm_full) > 200 and len(bert_full) > 200
    bos = llama_processor.tokenizer.bos_token_id
    cls, sep = llama_processor.qformer_tokenizer.cls_token_id, llama_processor.qformer_tokenizer.sep_token_id
    assert batch["input_ids"][0][N:] == [bos] + llm_full[-127:]  # the end of the instruction is kept
    assert batch["qformer_input_ids"][0] == [cls] + bert_full[-126:] + [sep]
    llama_processor.instruction_max_length = 10
    shorter = llama_processor(text=long_prompt)
    assert shorter["input_ids"][0] == [bos] + llm_full[-9:]
    assert shorter["qformer_input_ids"][0] == [cls] + bert_full[-8:] + [sep]
    untouched = llama_processor(text=long_prompt, truncation=False)
    assert untouched["input_ids"][0] == [bos] + llm_full


def test_truncation_is_the_tokenizers_own_on_its_saved_side(build, llama_tokenizer, bert_tokenizer, tmp_path):
    """The processor gives a tokenizer without a saved side the paper's ("left"), keeps a saved one (so a tokenizer
    saved with "right" cuts on the right), and cuts exactly as the tokenizer's own truncation does."""
    processor = build("llama")
    assert processor.tokenizer.truncation_side == processor.qformer_tokenizer.truncation_side == "left"
    processor.tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["truncation_side"] == "left"
    right = copy.deepcopy(llama_tokenizer)
    right.add_special_tokens({"pad_token": "[PAD]"})
    right.save_pretrained(tmp_path / "right")
    right = type(right).from_pretrained(tmp_path / "right", truncation_side="right")
    ours = InstructBlipProcessor(InstructBlipImageProcessor(), right, copy.deepcopy(bert_tokenizer),
                                 instruction_max_length=6)
    text = ["numbers 1 2 3 yes no left right up down Question: what color?", "A photo of"]
    assert ours.tokenizer.truncation_side == "right"
    assert ours(text=text, padding=False)["input_ids"] == right(text, truncation=True, max_length=6).input_ids
    assert ours(text=text, padding=False)["qformer_input_ids"] == ours.qformer_tokenizer(
        text, truncation=True, max_length=6).input_ids


def test_max_length_bounds_the_whole_llm_sequence_at_inference(llama_processor):
    full = llama_processor.tokenizer(PROMPTS[0]).input_ids
    batch = llama_processor(images=random_image(16, 16), text=PROMPTS[0], max_length=N + 5)
    assert batch["input_ids"][0] == [llama_processor.image_token_id] * N + [full[0]] + full[-4:]
    padded = llama_processor(images=[random_image(16, 16)] * 2, text=PROMPTS, max_length=N + 40, padding="max_length")
    assert [len(row) for row in padded["input_ids"]] == [N + 40, N + 40]
    assert [len(row) for row in padded["qformer_input_ids"]] == [128, 128]
    with pytest.raises(ValueError, match="no room for the instruction"):
        llama_processor(images=random_image(16, 16), text=PROMPTS[0], max_length=N + 1)
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        llama_processor(text=PROMPTS[0], padding="max_length")


# ---------------------------------------------------------------------------------------------------------------
# Processor: training batches
# ---------------------------------------------------------------------------------------------------------------


def test_decoder_only_training_labels_token_by_token(llama_processor):
    tok = llama_processor.tokenizer
    targets = ["red", "a cat sitting on a mat"]
    batch = llama_processor(images=[random_image(20, 20)] * 2, text=PROMPTS, targets=targets, return_tensors="pt")
    img, pad, eos = llama_processor.image_token_id, tok.pad_token_id, tok.eos_token_id
    rows = []
    for prompt, target in zip(PROMPTS, targets):
        instruction = tok(prompt).input_ids  # BOS + instruction
        answer = tok(target, add_special_tokens=False).input_ids + [eos]
        rows.append((instruction, answer))
    length = max(len(i) + len(a) for i, a in rows)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, N + length)
    for b, (instruction, answer) in enumerate(rows):
        n_pad = length - len(instruction) - len(answer)
        assert batch["input_ids"][b].tolist() == [img] * N + instruction + answer + [pad] * n_pad  # right-padded
        assert batch["attention_mask"][b].tolist() == [1] * (N + len(instruction) + len(answer)) + [0] * n_pad
        assert batch["labels"][b].tolist() == [IGNORE_INDEX] * (N + len(instruction)) + answer + [IGNORE_INDEX] * n_pad
    assert instruction[0] == tok.bos_token_id and eos not in instruction
    # the tokenizer's own padding side (left here) does not change the training layout; an explicit one does
    assert tok.padding_side == "left"
    left = llama_processor(text=PROMPTS, targets=targets, padding_side="left", return_tensors="pt")
    assert left["labels"][1].tolist()[-len(rows[1][1]):] == rows[1][1]
    assert left["labels"][0, 0] == IGNORE_INDEX and left["attention_mask"][0, 0] == 0


def test_encoder_decoder_training_labels_token_by_token(t5_processor):
    tok = t5_processor.tokenizer
    targets = ["red", "a dog on a beach"]
    batch = t5_processor(images=[random_image(20, 20)] * 2, text=PROMPTS, targets=targets, return_tensors="pt")
    img, pad, eos = t5_processor.image_token_id, tok.pad_token_id, tok.eos_token_id
    instructions = [tok(p).input_ids for p in PROMPTS]
    answers = [tok(t).input_ids for t in targets]
    assert all(i[-1] == eos for i in instructions) and all(a[-1] == eos for a in answers)
    width = max(len(i) for i in instructions)
    label_width = max(len(a) for a in answers)
    for b in range(2):
        assert batch["input_ids"][b].tolist() == [img] * N + instructions[b] + [pad] * (width - len(instructions[b]))
        assert batch["labels"][b].tolist() == answers[b] + [IGNORE_INDEX] * (label_width - len(answers[b]))
    assert "decoder_input_ids" not in batch


def test_targets_are_right_truncated_with_eos_kept(build):
    long_target = "the quick brown fox jumps over the lazy dog while three green apples fall from the tree"
    for kind in ("llama", "t5"):
        processor = build(kind, target_max_length=5)
        tok = processor.tokenizer
        answer = tok(long_target, add_special_tokens=False).input_ids[:4] + [tok.eos_token_id]
        batch = processor(text="A photo of", targets=long_target)
        labels = [i for i in batch["labels"][0] if i != IGNORE_INDEX]
        assert labels == answer, kind
        default = build(kind)
        assert default.target_max_length == 256
        very_long = " ".join([long_target] * 30)
        labels = [i for i in default(text="A photo of", targets=very_long)["labels"][0] if i != IGNORE_INDEX]
        assert len(labels) == 256 and labels[-1] == tok.eos_token_id
        assert labels[:-1] == tok(very_long, add_special_tokens=False).input_ids[:255]


def test_training_max_length_cuts_target_and_names_sample_without_room(llama_processor):
    tok = llama_processor.tokenizer
    instruction = tok(PROMPTS[1]).input_ids
    batch = llama_processor(text=[PROMPTS[1]], targets=["a cat sitting on a mat"], max_length=len(instruction) + 3)
    answer = tok("a cat sitting on a mat", add_special_tokens=False).input_ids
    assert batch["input_ids"][0] == instruction + answer[:2] + [tok.eos_token_id]
    with pytest.raises(ValueError, match=r"sample 1: 32 image tokens \+ \d+ instruction tokens leave"):
        llama_processor(
            images=[random_image(8, 8)] * 2,
            text=["A photo of", PROMPTS[0]],
            targets=["red", "blue"],
            max_length=N + len(tok(PROMPTS[0]).input_ids) + 1,
        )


def test_vision_features_stand_in_for_images(llama_processor):
    features = [torch.randn(5, 16), torch.randn(5, 16)]
    batch = llama_processor(vision_features=features, text=PROMPTS, targets=["red", "a cat"], return_tensors="pt")
    assert torch.equal(batch["vision_features"], torch.stack(features)) and "pixel_values" not in batch
    assert (batch["input_ids"][:, :N] == llama_processor.image_token_id).all()
    with pytest.raises(ValueError, match="one \\[tokens, hidden\\] tensor per image"):
        llama_processor(vision_features=[torch.randn(5, 16), torch.randn(4, 16)], text=PROMPTS)


def test_is_encoder_decoder_is_saved_and_required_for_training(build, tmp_path):
    processor = build("t5", is_encoder_decoder=None)
    with pytest.raises(ValueError, match="is_encoder_decoder"):
        processor(text="A photo of", targets="a cat")
    processor.is_encoder_decoder = True
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["is_encoder_decoder"] is True and config["num_query_tokens"] == N
    assert InstructBlipProcessor.from_pretrained(tmp_path).is_encoder_decoder is True


# ---------------------------------------------------------------------------------------------------------------
# Processor: errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, error, match",
    [
        ("not an image", TypeError, "images: expected a PIL.Image.Image"),
        ([random_image(8, 8), 3], TypeError, r"images\[1\]: expected a PIL.Image.Image"),
        ([[random_image(8, 8)] * 2], ValueError, r"images\[0\] holds 2 images"),
        ([], ValueError, "images is an empty list"),
        (np.zeros((8,), dtype=np.uint8), ValueError, r"images: expected a non-empty image of shape"),
        (np.zeros((0, 8, 3), dtype=np.uint8), ValueError, "non-empty"),
    ],
)
def test_image_input_errors_name_the_input(images, error, match, llama_processor):
    with pytest.raises(error, match=match):
        llama_processor(images=images)


def test_processor_errors(llama_processor):
    image = random_image(8, 8)
    with pytest.raises(ValueError, match="got 2 images and 1 prompts"):
        llama_processor(images=[image, image], text="A photo of")
    with pytest.raises(ValueError, match="got 1 videos and 2 prompts"):
        llama_processor(videos=[[image]], text=PROMPTS)
    with pytest.raises(ValueError, match="text must be a string or a list of strings, got an empty list"):
        llama_processor(text=[])
    with pytest.raises(ValueError, match="at least images, videos, vision_features or text"):
        llama_processor()
    with pytest.raises(TypeError, match=r"text\[1\] must be a string, got int"):
        llama_processor(text=["A photo of", 3])
    with pytest.raises(TypeError, match="text must be a string or a list of strings"):
        llama_processor(text=3)
    with pytest.raises(ValueError, match="got 2 prompts and 1 targets"):
        llama_processor(text=PROMPTS, targets=["red"])
    with pytest.raises(TypeError, match=r"targets\[0\] must be a string"):
        llama_processor(text=["A photo of"], targets=[None])
    with pytest.raises(ValueError, match="targets need prompts"):
        llama_processor(images=image, targets="red")
    with pytest.raises(ValueError, match="not several \(got images and videos\)"):
        llama_processor(images=image, videos=[[image]], text="x")
    with pytest.raises(ValueError, match="videos: expected one video per prompt, got an empty list"):
        llama_processor(videos=[], text="x")
    with pytest.raises(ValueError, match=r"videos\[0\] has no frames"):
        llama_processor(videos=[[]], text="x")
    with pytest.raises(ValueError, match=r"\[.offset_mapping.\]: not supported"):
        llama_processor(text="x", return_offsets_mapping=True)
    with pytest.raises(ValueError, match=r"targets\[0\] contains the image placeholder"):
        llama_processor(text="x", targets="<image> red")


# ---------------------------------------------------------------------------------------------------------------
# Processor: ranking and decoding
# ---------------------------------------------------------------------------------------------------------------


def test_tokenize_candidates(llama_processor):
    tok = llama_processor.tokenizer
    candidates = [["yes", "no", "true"], ["a cat sitting on a mat"]]
    out = llama_processor.tokenize_candidates(candidates)
    ids, mask = out["candidate_input_ids"], out["candidate_attention_mask"]
    assert ids.dtype == torch.long and ids.shape == mask.shape and ids.shape[:2] == (2, 3)
    for b, options in enumerate(candidates):
        for k, option in enumerate(options):
            expected = tok(option, add_special_tokens=False).input_ids + [tok.eos_token_id]
            n = len(expected)
            assert ids[b, k, :n].tolist() == expected  # exactly like a training target
            assert mask[b, k].tolist() == [1] * n + [0] * (ids.shape[2] - n)
            assert ids[b, k, n:].eq(tok.pad_token_id).all()
    assert mask[1, 1:].sum() == 0  # missing candidates
    targets = llama_processor(text="x", targets="a cat sitting on a mat")["labels"][0]
    assert [t for t in targets if t != IGNORE_INDEX] == ids[1, 0, : int(mask[1, 0].sum())].tolist()
    with pytest.raises(ValueError, match=r"candidates\[1\] is an empty list"):
        llama_processor.tokenize_candidates([["yes"], []])
    with pytest.raises(ValueError, match="candidates is an empty list"):
        llama_processor.tokenize_candidates([])
    with pytest.raises(TypeError, match=r"candidates\[0\] must be a list"):
        llama_processor.tokenize_candidates(["yes", "no"])


def test_post_process_generation_strips_prompt_for_decoder_only(llama_processor):
    tok = llama_processor.tokenizer
    batch = llama_processor(images=[random_image(8, 8)] * 2, text=PROMPTS, padding_side="left", return_tensors="pt")
    answers = [tok("red", add_special_tokens=False).input_ids, tok("a cat", add_special_tokens=False).input_ids]
    width = max(len(a) for a in answers) + 1
    new = [a + [tok.eos_token_id] + [tok.pad_token_id] * (width - len(a) - 1) for a in answers]
    generated = torch.cat([batch["input_ids"], torch.tensor(new)], dim=1)
    assert llama_processor.post_process_generation(generated, batch["input_ids"]) == ["red", "a cat"]
    # new tokens only (no prompt in front): nothing to strip
    assert llama_processor.post_process_generation(torch.tensor(new), batch["input_ids"]) == ["red", "a cat"]
    # num_return_sequences=2: rows 0-1 belong to prompt 0, rows 2-3 to prompt 1
    repeated = generated.repeat_interleave(2, dim=0)
    assert llama_processor.post_process_generation(repeated, batch["input_ids"]) == ["red", "red", "a cat", "a cat"]
    # without input_ids the prompt text comes back too (image tokens are special, so skipped)
    assert llama_processor.post_process_generation(generated[:1]) == [f"{PROMPTS[0]} red"]
    assert llama_processor.batch_decode(generated[:, -width:], skip_special_tokens=True) == ["red", "a cat"]


def test_post_process_generation_keeps_encoder_decoder_output(t5_processor):
    tok = t5_processor.tokenizer
    batch = t5_processor(images=random_image(8, 8), text=PROMPTS[0], return_tensors="pt")
    decoder_output = torch.tensor([[tok.pad_token_id] + tok("red").input_ids])
    assert t5_processor.post_process_generation(decoder_output, batch["input_ids"]) == ["red"]
    assert t5_processor.post_process_generation(decoder_output) == ["red"]


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------------


def test_save_and_load_with_auto_processor(llama_processor, tmp_path):
    llama_processor.is_encoder_decoder = False
    llama_processor.target_max_length = 64
    llama_processor.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"processing_instructblip.py", "processor_config.json", "qformer_tokenizer"} <= files
    assert (tmp_path / "qformer_tokenizer" / "tokenizer_config.json").exists()
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_instructblip.InstructBlipProcessor"
    assert config["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "processing_instructblip.InstructBlipImageProcessor"
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = transformers.AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
        image_processor = transformers.AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    direct = InstructBlipProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "InstructBlipProcessor"
    assert type(loaded.image_processor).__name__ == type(image_processor).__name__ == "InstructBlipImageProcessor"
    assert type(direct) is InstructBlipProcessor

    images = [random_image(30, 50), random_image(90, 20, "P")]
    kwargs = dict(images=images, text=PROMPTS, targets=["red", "a cat"], return_tensors="pt")
    expected = llama_processor(**kwargs)
    for other in (loaded, direct):
        assert other.num_query_tokens == N and other.is_encoder_decoder is False and other.target_max_length == 64
        assert other.image_token_id == llama_processor.image_token_id
        batch = other(**kwargs)
        assert set(batch) == set(expected)
        for key in expected:
            assert torch.equal(batch[key], expected[key]), key
    np.testing.assert_array_equal(
        image_processor(images, return_tensors="np")["pixel_values"],
        llama_processor.image_processor(images, return_tensors="np")["pixel_values"],
    )


def test_loads_a_folder_saved_by_transformers(build_reference, tmp_path):
    # the layout of the Salesforce/instructblip-* repos: BlipImageProcessor config, qformer_tokenizer/ subfolder
    reference = build_reference("llama")
    reference.save_pretrained(tmp_path)
    ours = InstructBlipProcessor.from_pretrained(tmp_path, is_encoder_decoder=False)
    assert ours.is_encoder_decoder is False and ours.num_query_tokens == N
    assert "is_encoder_decoder" not in ours.tokenizer.init_kwargs
    assert type(ours.image_processor).__name__.startswith("BlipImageProcessor")  # the class the folder names
    images = [random_image(30, 40), random_image(50, 50, "L")]
    assert_same_batch(
        ours(images=images, text=PROMPTS, return_tensors="pt"),
        reference(images=images, text=PROMPTS, padding=True, return_tensors="pt"),
    )


def test_missing_qformer_tokenizer_is_an_error_not_the_llms(llama_processor, tmp_path):
    import shutil

    llama_processor.save_pretrained(tmp_path)
    shutil.rmtree(tmp_path / "qformer_tokenizer")
    with pytest.raises(OSError, match="qformer_tokenizer/tokenizer_config.json"):
        InstructBlipProcessor.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Property: any image and any string give a valid batch or a clear error
# ---------------------------------------------------------------------------------------------------------------

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"]
MODES += ["I", "I;16", "F"]


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba = PIL.Image.fromarray(data)
    image = rgba.convert("RGB")
    if mode == "I;16":
        return PIL.Image.fromarray(data[..., 0].astype(np.uint16) * 257)
    if mode in ("I", "F"):
        return image.convert("L").convert(mode)
    if mode in ("La", "PA", "RGBa", "LA"):
        return rgba.convert("LA").convert("La") if mode == "La" else rgba.convert(mode)
    if mode in ("LAB", "HSV"):  # any bytes are a valid LAB / HSV image
        return PIL.Image.frombytes(mode, image.size, image.tobytes())
    return image.convert(mode)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(st.tuples(pil_images(), st.text(max_size=60)), min_size=1, max_size=3))
def test_any_image_mode_and_string_give_a_valid_batch(samples, llama_processor):
    images, texts = [image for image, _ in samples], [text.replace("<image>", "") for _, text in samples]
    batch = llama_processor(images=images, text=texts, return_tensors="pt")
    B = len(samples)
    assert batch["pixel_values"].shape == (B, 3, 224, 224)
    assert torch.isfinite(batch["pixel_values"]).all()
    assert batch["input_ids"].shape[0] == batch["qformer_input_ids"].shape[0] == B
    assert (batch["input_ids"][:, :N] == llama_processor.image_token_id).all()
    assert batch["attention_mask"][:, :N].eq(1).all()
    assert batch["attention_mask"].sum(1).tolist() == [N + len(llama_processor.tokenizer(t).input_ids) for t in texts]


JUNK = st.one_of(
    st.none(),
    st.integers(),
    st.just("an image path"),
    st.just(np.zeros((3, 5), np.float64) + 2),
    st.just(np.zeros((2, 6, 6, 5), np.uint8)),
    st.just(torch.zeros(7, 7, 7)),
    st.just([PIL.Image.new("RGB", (4, 4))]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    images=st.lists(st.one_of(pil_images(), JUNK), max_size=3),
    texts=st.lists(st.one_of(st.text(max_size=30), st.none(), st.integers()), max_size=3),
)
def test_any_input_gives_a_batch_or_the_error_naming_the_bad_argument(images, texts, llama_processor):
    expected = expected_input_error(images, texts)
    if expected is None:
        batch = llama_processor(images=images, text=texts, return_tensors="pt")
        assert batch["pixel_values"].shape == (len(texts), 3, 224, 224)
        assert batch["input_ids"].shape[0] == len(texts)
        return
    error_type, message = expected
    with pytest.raises(error_type, match=message):
        llama_processor(images=images, text=texts, return_tensors="pt")


def expected_input_error(images, texts):
    """(error class, message pattern) the processor must raise for these `images=` and `text=` lists, in the
    order it checks them (the images, then the prompts, then their counts), or None for a valid batch."""
    if not images:
        return ValueError, "images is an empty list"
    for index, image in enumerate(images):
        image = image[0] if isinstance(image, list) else image
        if not isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor)):
            return TypeError, rf"images\[{index}\]: expected a PIL.Image.Image, a numpy array or a torch tensor"
        if not isinstance(image, PIL.Image.Image) and image.ndim not in (2, 3):
            return ValueError, rf"images\[{index}\]: expected a non-empty image of shape"
    # a [7, 7, 7] tensor passes the processor's own check; transformers' image processor then cannot tell its
    # channel axis and raises without naming the argument (the processor could name images[i] itself)
    if any(isinstance(image, torch.Tensor) and image.shape == (7, 7, 7) for image in images):
        return ValueError, "Unable to infer channel dimension format"
    if not texts:
        return ValueError, "text must be a string or a list of strings, got an empty list"
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            return TypeError, rf"text\[{index}\] must be a string, got {type(text).__name__}"
    if len(images) != len(texts):
        return ValueError, f"got {len(images)} images and {len(texts)} prompts: pass one image per prompt"
    for index, text in enumerate(texts):
        if text.count("<image>") > 1:
            return ValueError, rf"text\[{index}\] holds the image placeholder"
    return None


def test_an_empty_target_is_its_eos(llama_processor, t5_processor):
    for processor in (llama_processor, t5_processor):
        labels = [i for i in processor(text="A photo of", targets="")["labels"][0] if i != IGNORE_INDEX]
        assert labels == [processor.tokenizer.eos_token_id]
