"""Our converter and model against LAVIS's own code, the code behind the paper's numbers.

The fixtures in tests/data/lavis/<kind>/ were made by LAVIS's real classes (`Blip2VicunaInstruct`,
`Blip2T5Instruct`, its Q-Former, EVA ViT, vendored Llama and T5; LAVIS commit 506965b, transformers
4.33.2, fp32 on CPU) with tools/lavis_reference/make_reference.py, in an environment of their own:
tiny random models, two images, and what LAVIS returned for them (LLM logits and loss of
`forward`, token ids of `generate` for greedy, 5 beams, 5 beams with length penalty 0, and both with
repetition penalty 1.5, at max_length 10 / min_length 1 and 30 / 8). Here the LAVIS weights, in each
layout LAVIS writes them (the whole state dict, the released trimmed files, the runner's
checkpoints), go through `python -m modeling_instructblip.convert` and must give LAVIS's numbers.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_instructblip import InstructBlipForConditionalGeneration
from modeling_instructblip.convert import convert
from modeling_instructblip.processing_instructblip import InstructBlipProcessor
from tests.helpers import LAVIS_DATA as DATA
from tests.helpers import loss_inputs
KINDS = ["vicuna", "t5"]
PREFIX = {"vicuna": "llm_model.", "t5": "t5_model."}
LOGITS_ATOL = 1e-4


def cases(kind):
    return torch.load(DATA / kind / "cases.pt", weights_only=True)


def lavis_layouts(kind) -> dict:
    """LAVIS's weights in the three layouts LAVIS writes: `full` (`model.state_dict()`), `trimmed`
    (the released `*_trimmed.pth`: no LLM tensors) and `runner` (what `RunnerBase._save_checkpoint`
    keeps: the state dict minus the parameters that do not require a gradient; buffers stay)."""
    saved = torch.load(DATA / kind / "lavis_state.pth", weights_only=True)
    llm = load_file(DATA / kind / "llm" / "model.safetensors")
    full = dict(saved["model"])
    for key in saved["omitted_llm_keys"]:  # the LLM tensors equal to llm/'s were left out of the fixture
        full[key] = llm[key[len(PREFIX[kind]):]]
    requires_grad = cases(kind)["meta"]["requires_grad"]
    runner = {k: v for k, v in full.items() if requires_grad.get(k, True)}  # buffers are not parameters
    trimmed = {k: v for k, v in full.items() if requires_grad.get(k, False)}
    return {"full": full, "trimmed": trimmed, "runner": runner}


def eva_checkpoint(kind) -> dict:
    """The ViT as `eva_vit_g.pth` holds it: unprefixed keys (what the two smaller layouts need beside them)."""
    full = lavis_layouts(kind)["full"]
    return {k[len("visual_encoder."):]: v for k, v in full.items() if k.startswith("visual_encoder.")}


def run_convert(kind, layout_state, folder: Path, extra=None, vision=None):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": layout_state, "epoch": 1, **(extra or {})}, folder / "lavis.pth")
    if vision is not None:
        torch.save(vision, folder / "eva_vit_g.pth")
    return convert(
        folder / "lavis.pth", folder / "eva_vit_g.pth" if vision is not None else None, DATA / kind / "llm",
        DATA / kind / "bert_tokenizer", folder / "out", num_vision_layers=2, vision_head_dim=12, qformer_head_dim=8,
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(kind):
        if kind not in cache:
            folder = tmp_path_factory.mktemp(f"lavis-{kind}")
            run_convert(kind, lavis_layouts(kind)["full"], folder)
            model = InstructBlipForConditionalGeneration.from_pretrained(folder / "out").eval()
            cache[kind] = (model, InstructBlipProcessor.from_pretrained(folder / "out"), folder / "out")
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_loss_equal_lavis(kind, converted):
    model, processor, _ = converted(kind)
    assert model.vision_model.post_layernorm.eps == 1e-5  # LAVIS's ln_vision: nn.LayerNorm's default
    reference = cases(kind)
    images = reference["images"]["pixel_values"]
    for case in reference["loss"]:
        inputs = loss_inputs(kind, case, processor, model, images)
        with torch.no_grad():
            out = model(**inputs)
        expected = case["llm_call"]["logits"]
        vocab = expected.shape[-1]
        real = inputs["attention_mask"].bool() if kind == "vicuna" else slice(None)
        torch.testing.assert_close(out.logits[..., :vocab][real], expected[real], atol=LOGITS_ATOL, rtol=0, msg=case["name"])
        # the `<image>` placeholder, which LAVIS's vocabulary lacks, takes no probability
        assert (out.logits[..., vocab:] == torch.finfo(out.logits.dtype).min).all()
        torch.testing.assert_close(out.loss, case["loss"], atol=1e-5, rtol=0, msg=case["name"])
        # the visual features on the way
        features = out.image_features
        intermediates = case["intermediates"]
        torch.testing.assert_close(features.image_embeds, intermediates["image_embeds"], atol=1e-5, rtol=0)
        torch.testing.assert_close(features.language_model_inputs, intermediates["proj_out"], atol=1e-5, rtol=0)


def our_settings(kind, lavis_kwargs) -> dict:
    """LAVIS's `generate` arguments -> ours (what evaluation/tasks.py does for the paper's tasks):
    Vicuna's max_length / min_length counted the BOS transformers 4.33 seeded the output with."""
    settings = dict(
        do_sample=False, num_beams=lavis_kwargs["num_beams"], repetition_penalty=lavis_kwargs["repetition_penalty"],
        length_penalty=lavis_kwargs["length_penalty"],
    )
    if kind == "vicuna":
        settings.update(max_new_tokens=lavis_kwargs["max_length"] - 1, min_new_tokens=lavis_kwargs["min_length"] - 1)
    else:
        settings.update(max_new_tokens=lavis_kwargs["max_length"], min_length=lavis_kwargs["min_length"], min_new_tokens=None)
    return settings


def answer(ids, eos: int) -> list[int]:
    """Generated ids up to and including the first EOS (what follows is padding)."""
    ids = [int(t) for t in ids]
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def generate_inputs(kind, case, processor, model, images):
    qformer, prompt = case["tokenizer_calls"][:2]
    image = [model.config.image_token_index] * model.config.num_query_tokens
    batch = len(case["sample_idx"])
    mask = torch.cat([torch.ones(batch, len(image), dtype=torch.long), prompt["attention_mask"]], dim=1)
    return dict(
        pixel_values=torch.cat([images[i] for i in case["sample_idx"]]),
        qformer_input_ids=qformer["input_ids"], qformer_attention_mask=qformer["attention_mask"],
        input_ids=torch.cat([torch.tensor([image] * batch), prompt["input_ids"]], dim=1), attention_mask=mask,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_generated_ids_equal_lavis(kind, converted):
    """All five decoding settings at both lengths, one image and a left-padded batch of two."""
    model, processor, _ = converted(kind)
    reference = cases(kind)
    images = reference["images"]["pixel_values"]
    eos = model.config.text_config.eos_token_id
    for case in reference["generate"]:
        inputs = generate_inputs(kind, case, processor, model, images)
        settings = our_settings(kind, case["llm_generate_kwargs"] | case["generate_kwargs"])
        generated = model.generate(**inputs, **settings)
        expected = case["raw_output_ids"]
        for row in range(expected.shape[0]):
            if kind == "vicuna":  # ours: prompt + answer; LAVIS's: the seeded BOS + answer
                got, want = generated[row, inputs["input_ids"].shape[1]:], expected[row, 1:]
            else:  # both: decoder start + answer
                got, want = generated[row], expected[row]
            assert answer(got, eos) == answer(want, eos), (case["name"], row)
        texts = processor.post_process_generation(generated, inputs["input_ids"])
        assert texts == case["output_text"], case["name"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_lavis_layout_converts_to_the_same_model(kind, tmp_path):
    """The released trimmed files and the runner's checkpoints (which keep buffers such as the vendored
    Llama's `rotary_emb.inv_freq`, and FlanT5's `embed_tokens` aliases) convert, and give the weights
    the whole state dict gives; what was skipped, and why, is in conversion_report.json."""
    layouts = lavis_layouts(kind)
    models, reports = {}, {}
    assert not any(k.startswith("visual_encoder.") for k in layouts["trimmed"]) and "query_tokens" in layouts["trimmed"]
    with pytest.raises(ValueError, match="--vision-checkpoint eva_vit_g.pth"):
        run_convert(kind, layouts["trimmed"], tmp_path / "no-vit")
    for name, state in layouts.items():
        run_convert(
            kind, state, tmp_path / name, vision=None if name == "full" else eva_checkpoint(kind),
            extra={"optimizer": {"state": {}, "param_groups": []}} if name == "runner" else None,
        )
        models[name] = InstructBlipForConditionalGeneration.from_pretrained(tmp_path / name / "out").state_dict()
        reports[name] = json.loads((tmp_path / name / "out" / "conversion_report.json").read_text())
    runner_skipped = {key for keys in reports["runner"]["skipped"].values() for key in keys}
    if kind == "vicuna":
        assert {"llm_model.model.layers.0.self_attn.rotary_emb.inv_freq", "llm_model.model.layers.1.self_attn.rotary_emb.inv_freq"} <= runner_skipped
        assert any("rotary" in reason for reason in reports["runner"]["skipped"])
    else:
        assert {"t5_model.encoder.embed_tokens.weight", "t5_model.decoder.embed_tokens.weight"} <= runner_skipped
    pad_rows = ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")
    for name in ("trimmed", "runner"):
        assert models[name].keys() == models["full"].keys()
        for key, tensor in models["full"].items():
            if kind == "vicuna" and key in pad_rows:
                # Vicuna's [PAD] row is drawn at random by every LAVIS start-up: only a file holding the
                # LLM has LAVIS's; the rows of the LLM's own vocabulary are the same everywhere
                vocab = load_file(DATA / kind / "llm" / "model.safetensors")[key[len("language_model."):]].shape[0]
                tensor, other = tensor[:vocab], models[name][key][:vocab]
            else:
                other = models[name][key]
            assert torch.equal(other, tensor), (name, key)


def test_flant5_keeps_its_own_lm_head(converted):
    """FlanT5's output layer is not its input embedding. transformers 5 builds T5 with them tied: the
    converted folder must still hold both, each equal to the LLM folder's own tensor (the reference is
    the file LAVIS read, not a model we construct)."""
    model, _, folder = converted("t5")
    llm = load_file(DATA / "t5" / "llm" / "model.safetensors")
    assert not torch.equal(llm["lm_head.weight"], llm["shared.weight"])
    vocab = llm["shared.weight"].shape[0]
    ours = model.language_model
    assert torch.equal(ours.lm_head.weight[:vocab], llm["lm_head.weight"])
    assert torch.equal(ours.shared.weight[:vocab], llm["shared.weight"])
    assert torch.equal(ours.get_encoder().embed_tokens.weight[:vocab], llm["shared.weight"])
    saved = load_file(folder / "model.safetensors")
    assert torch.equal(saved["language_model.lm_head.weight"][:vocab], llm["lm_head.weight"])


def test_vocabulary_is_not_padded(converted):
    """LAVIS resizes Vicuna's embeddings to its tokenizer exactly; padding rows would take part in
    every softmax. Ours: the tokenizer's size, plus the `<image>` placeholder (suppressed)."""
    model, processor, _ = converted("vicuna")
    assert model.get_input_embeddings().weight.shape[0] == len(processor.tokenizer) == 386  # 384 + [PAD] + <image>


def test_one_cross_attention_layer_gives_its_frequency(tmp_path):
    """A Q-Former whose only cross-attention layer is layer 0 (LAVIS built with one layer and
    cross_attention_freq=1 here): the converted config must build the same layers."""
    variant = torch.load(DATA / "vicuna" / "lavis_qformer1layer_xattn1.pth", weights_only=True)["model"]
    full = lavis_layouts("vicuna")["full"]
    state = dict(variant, **{k: v for k, v in full.items() if k.startswith("llm_model.")})
    run_convert("vicuna", state, tmp_path)
    model = InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    assert len(model.qformer.encoder.layer) == 1 and model.qformer.encoder.layer[0].has_cross_attention
    reference = cases("vicuna")["variant_qformer1_xattn1"]
    assert reference["qformer_num_hidden_layers"] == 1


def test_the_converter_cli_names_what_it_refuses(tmp_path):
    """A LAVIS file whose LLM weights are not the --llm folder's is refused, naming the key."""
    state = lavis_layouts("vicuna")["full"]
    key = "llm_model.model.layers.0.mlp.up_proj.weight"
    state[key] = state[key] + 1
    torch.save({"model": state}, tmp_path / "lavis.pth")
    command = [
        sys.executable, "-m", "modeling_instructblip.convert", "--lavis-checkpoint", str(tmp_path / "lavis.pth"),
        "--llm", str(DATA / "vicuna" / "llm"), "--qformer-tokenizer", str(DATA / "vicuna" / "bert_tokenizer"),
        "--output", str(tmp_path / "out"), "--num-vision-layers", "2", "--vision-head-dim", "12", "--qformer-head-dim", "8",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0 and key in result.stderr and "differs from the --llm folder" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
