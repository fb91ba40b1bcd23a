"""LAVIS checkpoints -> our folder: files synthesised in LAVIS's layout from a tiny model must convert
into a model with the same outputs; unknown keys and unsafe pickles are refused."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from tests.helpers import randomize_, with_image_token

from modeling_instructblip import InstructBlipForConditionalGeneration, tiny
from modeling_instructblip.convert import (
    convert_lavis_key,
    convert_lavis_state_dict,
    load_pickled_state_dict,
    prepare_llm_tokenizer,
)
from modeling_instructblip.processing_instructblip import InstructBlipProcessor


# LAVIS name -> ours, written from the modules' names in LAVIS (lavis/models/eva_vit.py, lavis/models/blip2_models/
# blip2_{vicuna,t5}_instruct.py) and in transformers' models/instructblip/modeling_instructblip.py (independently of
# the converter's code)
KEY_TABLE = [
    ("query_tokens", "query_tokens"),
    ("ln_vision.weight", "vision_model.post_layernorm.weight"),
    ("llm_proj.bias", "language_projection.bias"),
    ("t5_proj.weight", "language_projection.weight"),
    ("llm_model.model.layers.3.self_attn.q_proj.weight", "language_model.model.layers.3.self_attn.q_proj.weight"),
    ("t5_model.encoder.block.0.layer.0.SelfAttention.q.weight", "language_model.encoder.block.0.layer.0.SelfAttention.q.weight"),
    ("Qformer.bert.embeddings.LayerNorm.bias", "qformer.embeddings.layernorm.bias"),
    ("Qformer.bert.embeddings.word_embeddings.weight", "qformer.embeddings.word_embeddings.weight"),
    ("Qformer.bert.encoder.layer.4.attention.self.key.weight", "qformer.encoder.layer.4.attention.attention.key.weight"),
    ("Qformer.bert.encoder.layer.4.attention.output.LayerNorm.weight", "qformer.encoder.layer.4.attention.output.LayerNorm.weight"),
    ("Qformer.bert.encoder.layer.2.crossattention.self.value.bias", "qformer.encoder.layer.2.crossattention.attention.value.bias"),
    ("Qformer.bert.encoder.layer.2.crossattention.output.dense.weight", "qformer.encoder.layer.2.crossattention.output.dense.weight"),
    ("Qformer.bert.encoder.layer.7.intermediate_query.dense.weight", "qformer.encoder.layer.7.intermediate_query.dense.weight"),
    ("Qformer.bert.encoder.layer.7.output.LayerNorm.bias", "qformer.encoder.layer.7.output.LayerNorm.bias"),
]


@pytest.mark.parametrize("lavis, ours", KEY_TABLE)
def test_key_mapping(lavis, ours):
    assert convert_lavis_key(lavis) == ours


VISION_EMBEDDINGS = {
    "vision_model.embeddings.class_embedding": "cls_token",
    "vision_model.embeddings.position_embedding": "pos_embed",
    "vision_model.embeddings.patch_embedding.weight": "patch_embed.proj.weight",
    "vision_model.embeddings.patch_embedding.bias": "patch_embed.proj.bias",
}


def to_lavis(model, extra_vision_block=True):
    """Our tiny model's weights laid out as LAVIS ships them: (eva_vit_g.pth dict, trimmed checkpoint)."""
    state = model.state_dict()
    vision, trimmed = {}, {}
    for name, tensor in state.items():
        if name in VISION_EMBEDDINGS:
            vision[VISION_EMBEDDINGS[name]] = tensor
        elif name.startswith("vision_model.encoder.layers."):
            _, _, _, block, *rest = name.split(".")
            part = ".".join(rest)
            if part == "self_attn.qkv.bias":
                q, _, v = tensor.chunk(3)
                vision[f"blocks.{block}.attn.q_bias"], vision[f"blocks.{block}.attn.v_bias"] = q, v
                continue
            part = part.replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
            part = part.replace("self_attn.qkv", "attn.qkv").replace("self_attn.projection", "attn.proj")
            vision[f"blocks.{block}.{part}"] = tensor
        elif name.startswith("vision_model.post_layernorm."):
            trimmed["ln_vision." + name.split(".")[-1]] = tensor
        elif name.startswith("qformer."):
            lavis = "Qformer.bert." + name[len("qformer."):]
            lavis = lavis.replace("embeddings.layernorm", "embeddings.LayerNorm")
            lavis = lavis.replace("attention.attention.", "attention.self.").replace("crossattention.attention.", "crossattention.self.")
            trimmed[lavis] = tensor
        elif name.startswith("language_projection."):
            prefix = "llm_proj." if model.config.use_decoder_only_language_model else "t5_proj."
            trimmed[prefix + name.split(".")[-1]] = tensor
        elif name == "query_tokens":
            trimmed[name] = tensor
    # what the real files also hold, and InstructBLIP does not use
    trimmed["Qformer.bert.embeddings.position_ids"] = torch.arange(8)[None]
    trimmed["Qformer.cls.predictions.bias"] = torch.zeros(4)
    if extra_vision_block:  # eva_vit_g.pth has 40 blocks; InstructBLIP uses 39
        last = max(int(k.split(".")[1]) for k in vision if k.startswith("blocks."))
        vision.update({k.replace(f"blocks.{last}.", f"blocks.{last + 1}."): v.clone()
                       for k, v in vision.items() if k.startswith(f"blocks.{last}.")})
        vision["norm.weight"] = torch.ones(4)
        vision["head.weight"] = torch.ones(2, 4)
    return vision, trimmed


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_converted_checkpoint_gives_the_same_outputs(kind, llama_tokenizer, t5_tokenizer, bert_tokenizer, tmp_path):
    base = prepare_llm_tokenizer(copy.deepcopy(llama_tokenizer), False) if kind == "llama" else copy.deepcopy(t5_tokenizer)
    tokenizer = with_image_token(base)
    config = tiny.tiny_config(kind, tokenizer=tokenizer, qformer_vocab_size=len(bert_tokenizer) + 1)  # + [DEC]
    original = randomize_(InstructBlipForConditionalGeneration(config)).eval()
    with torch.no_grad():  # EVA has no key bias
        for layer in original.vision_model.encoder.layers:
            layer.self_attn.qkv.bias[32:64] = 0

    vision, trimmed = to_lavis(original)
    torch.save(vision, tmp_path / "eva_vit_g.pth")
    torch.save({"model": trimmed, "epoch": 3}, tmp_path / "instruct_blip_trimmed.pth")
    original.language_model.save_pretrained(tmp_path / "llm")
    base.save_pretrained(tmp_path / "llm")
    if kind == "t5":  # transformers' FlanT5 configs say gelu_new; LAVIS (and so the conversion) uses exact gelu
        llm_config = json.loads((tmp_path / "llm" / "config.json").read_text())
        llm_config["dense_act_fn"] = "gelu_new"
        (tmp_path / "llm" / "config.json").write_text(json.dumps(llm_config))
    copy.deepcopy(bert_tokenizer).save_pretrained(tmp_path / "bert")

    command = [
        sys.executable, "-m", "modeling_instructblip.convert",
        "--lavis-checkpoint", str(tmp_path / "instruct_blip_trimmed.pth"),
        "--vision-checkpoint", str(tmp_path / "eva_vit_g.pth"),
        "--llm", str(tmp_path / "llm"),
        "--qformer-tokenizer", str(tmp_path / "bert"),
        "--output", str(tmp_path / "out"),
        "--num-vision-layers", "2", "--vision-head-dim", "8", "--qformer-head-dim", "8",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stdout

    converted = InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    processor = InstructBlipProcessor.from_pretrained(tmp_path / "out")
    assert processor.image_token_id == original.config.image_token_index == converted.config.image_token_index
    assert converted.generation_config.num_beams == 5 and converted.generation_config.repetition_penalty == 1.5
    if kind == "t5":
        assert converted.config.text_config.dense_act_fn == "gelu"
    report = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    skipped = [key for keys in report["skipped"].values() for key in keys]
    assert {"Qformer.bert.embeddings.position_ids", "Qformer.cls.predictions.bias", "norm.weight", "head.weight"} <= set(skipped)
    assert any(key.startswith("blocks.2.") for key in skipped)  # the ViT's last block is not used

    from PIL import Image

    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 40), (20, 30, 230))]
    inputs = processor(images=images, text=["A short image caption:", "What color is it?"], padding=True, return_tensors="pt")
    inputs["pixel_values"] = torch.nn.functional.interpolate(inputs["pixel_values"], size=(28, 28))
    with torch.no_grad():
        expected, got = original(**inputs).logits, converted(**inputs).logits
    vocab = expected.shape[-1]
    torch.testing.assert_close(got[..., :vocab], expected, atol=1e-5, rtol=0)


def test_vicuna_tokenizer_quirk(llama_tokenizer):
    """The released Vicuna checkpoints: [PAD] added; BOS, EOS and UNK all `</s>` (id 2)."""
    tokenizer = prepare_llm_tokenizer(copy.deepcopy(llama_tokenizer), is_encoder_decoder=False)
    assert tokenizer.pad_token == "[PAD]" and tokenizer.pad_token_id == len(llama_tokenizer)
    assert tokenizer.bos_token == tokenizer.eos_token == tokenizer.unk_token == "</s>"
    assert tokenizer("a photo").input_ids[0] == 2
    # LAVIS applies it whatever the tokenizer had: one that already has a pad token gets it too
    padded = copy.deepcopy(llama_tokenizer)
    padded.pad_token = padded.unk_token
    padded = prepare_llm_tokenizer(padded, is_encoder_decoder=False)
    assert padded.pad_token == "[PAD]" and padded.bos_token == padded.eos_token == padded.unk_token == "</s>"
    assert padded("a photo").input_ids[0] == 2


def test_unknown_keys_are_refused():
    with pytest.raises(KeyError, match="unrecognised key 'mystery.weight'"):
        convert_lavis_state_dict({"mystery.weight": torch.zeros(1)}, num_vision_layers=39)


class NotATensor:
    pass


def test_pickles_that_need_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"query_tokens": torch.zeros(1)}, "payload": NotATensor()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_pickled_state_dict(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_pickled_state_dict(tmp_path / "missing.pth")
