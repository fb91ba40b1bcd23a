"""transformers' model contract, where its tooling touches our class: what transformers'
`InstructBlipForConditionalGeneration` returns and accepts (its own test suite, run with our class in
its place, found each of these), checked here against transformers' class on the same weights."""

import copy
import os

import pytest
import torch
from tests.helpers import randomize_
from tests.modeling_instructblip.model_inputs import batch, labels_for, real_positions

from modeling_instructblip import InstructBlipConfig, InstructBlipForConditionalGeneration, tiny


ATOL = 1e-5


def image_inputs(inputs):
    return {k: inputs[k] for k in ("pixel_values", "qformer_input_ids", "qformer_attention_mask")}


def test_get_image_features_returns_what_transformers_returns(reference_pair, llm_tokenizers, bert_tokenizer, tmp_path):
    reference, _, folder = reference_pair("llama")
    ours = InstructBlipForConditionalGeneration.from_pretrained(
        folder, match_lavis=False, attn_implementation="eager"
    ).eval()
    reference = reference.__class__.from_pretrained(folder, attn_implementation="eager").eval()
    # transformers' port: its post-ViT LayerNorm takes the vision blocks' eps
    assert ours.vision_model.post_layernorm.eps == reference.vision_model.post_layernorm.eps == 1e-6
    inputs = image_inputs(batch("llama", llm_tokenizers, bert_tokenizer))
    with torch.no_grad():
        expected = reference.get_image_features(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours.get_image_features(**inputs, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=ATOL, rtol=0)
    # over [queries ; instruction]; padded instruction positions are numbered differently (ours count
    # real tokens), and nothing reads them
    real = torch.cat([torch.ones_like(inputs["qformer_attention_mask"][:, :1]).expand(-1, ours.config.num_query_tokens),
                      inputs["qformer_attention_mask"]], dim=1).bool()
    torch.testing.assert_close(
        got.qformer_outputs.last_hidden_state[real], expected.qformer_outputs.last_hidden_state[real], atol=ATOL, rtol=0
    )
    layers = ours.config.vision_config.num_hidden_layers
    assert len(got.hidden_states) == len(expected.hidden_states) == layers + 1
    for mine, theirs in zip(got.hidden_states, expected.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=ATOL, rtol=0)
    assert len(got.attentions) == len(expected.attentions) == layers
    for mine, theirs in zip(got.attentions, expected.attentions):
        torch.testing.assert_close(mine, theirs, atol=ATOL, rtol=0)
    qformer_layers = ours.config.qformer_config.num_hidden_layers
    assert len(got.qformer_outputs.hidden_states) == qformer_layers + 1
    assert len(got.qformer_outputs.attentions) == qformer_layers
    width = real.shape[1]
    assert all(a.shape == (2, ours.config.qformer_config.num_attention_heads, width, width) for a in got.qformer_outputs.attentions)
    assert len(got.qformer_outputs.cross_attentions) == len(range(0, qformer_layers, ours.config.qformer_config.cross_attention_frequency))
    assert got.vision_outputs.last_hidden_state is got.last_hidden_state
    # a tuple without return_dict, the fields in order
    as_tuple = ours.get_image_features(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], got.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], got.pooler_output)


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_forward_return_dict_false_gives_the_fields_as_a_tuple(kind, reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair(kind)
    inputs = batch(kind, llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for(kind, llm_tokenizers, inputs)
    with torch.no_grad():
        as_dict = ours(**inputs, labels=labels)
        as_tuple = ours(**inputs, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)


def test_shift_labels_replace_labels(reference_pair, llm_tokenizers, bert_tokenizer):
    """Sequence/context-parallel training passes targets already shifted: the loss must be the one of
    the labels they came from, in eval (all logits) and in training (logits at supervised rows only)."""
    _, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for("llama", llm_tokenizers, inputs)
    shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    with torch.no_grad():
        expected = ours(**inputs, labels=labels).loss
        got = ours(**inputs, shift_labels=shifted).loss
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        # a different target changes the loss: the argument is read
        other = shifted.clone()
        other[shifted != -100] = 5
        assert not torch.allclose(ours(**inputs, shift_labels=other).loss, expected)
    config = copy.deepcopy(ours.config)
    config.qformer_config.attention_probs_dropout_prob = 0.0
    model = InstructBlipForConditionalGeneration(config)
    model.load_state_dict(ours.state_dict())
    model.freeze_for_instruction_tuning().train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.testing.assert_close(model(**inputs, shift_labels=shifted).loss, model(**inputs, labels=labels).loss, atol=1e-6, rtol=0)


def test_shift_labels_are_refused_for_an_encoder_decoder_llm(reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair("t5")
    inputs = batch("t5", llm_tokenizers, bert_tokenizer)
    with pytest.raises(ValueError, match="shift_labels applies to a decoder-only LLM"):
        ours(**inputs, shift_labels=torch.zeros_like(inputs["input_ids"]))


def test_attention_flags_and_dynamic_switching(reference_pair):
    """The flags transformers reads before it accepts an implementation, and `set_attn_implementation`
    reaching our vision tower and Q-Former (plain modules, which transformers' own walk skips)."""
    cls = InstructBlipForConditionalGeneration
    assert cls._supports_flash_attn and cls._supports_flex_attn and cls._supports_sdpa and cls._can_compile_fullgraph
    _, _, folder = reference_pair("llama")
    model = cls.from_pretrained(folder)
    model.set_attn_implementation("eager")
    assert model.config.qformer_config._attn_implementation == model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config._attn_implementation == "eager"
    model.set_attn_implementation({"qformer_config": "sdpa", "vision_config": "eager", "text_config": "sdpa"})
    assert model.config.qformer_config._attn_implementation == "sdpa"
    assert model.config.vision_config._attn_implementation == "eager"


@pytest.mark.slow
def test_flex_attention_runs_on_cpu_and_agrees(reference_pair, llm_tokenizers, bert_tokenizer):
    """flex attention (compiled on the CPU) in every part: the vision tower, the Q-Former with a padded
    instruction (a block mask from transformers' masking utilities) and the LLM."""
    _, _, folder = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    assert not inputs["qformer_attention_mask"].all()
    outputs = {}
    for implementation in ("sdpa", "flex_attention"):
        model = InstructBlipForConditionalGeneration.from_pretrained(folder, attn_implementation=implementation).eval()
        assert model.config.qformer_config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = model(**inputs).logits
    real = real_positions("llama", inputs)
    torch.testing.assert_close(outputs["flex_attention"][real], outputs["sdpa"][real], atol=1e-4, rtol=0)


def test_transformers_config_objects_load(tmp_path):
    """transformers' own InstructBlipConfig object, and an InstructBlipVideo config folder (its
    placeholder named `video_token_index`), build our model with the EVA tower."""
    from transformers import InstructBlipConfig as TransformersConfig
    from transformers import InstructBlipVideoConfig

    sizes = dict(
        vision_config=dict(tiny.TINY_VISION), qformer_config=dict(tiny.TINY_QFORMER),
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, vocab_size=120),
        num_query_tokens=4,
    )
    video = InstructBlipVideoConfig(**sizes, video_token_index=110)
    video.save_pretrained(tmp_path)
    config = InstructBlipConfig.from_pretrained(tmp_path)
    assert config.model_type == "instructblip_hub" and config.uses_eva_vision and config.image_token_index == 110
    model = InstructBlipForConditionalGeneration(config)
    assert type(model.vision_model).__name__ == "InstructBlipVisionModel"
    frames = torch.randn(1, 4, 3, tiny.TINY_VISION["image_size"], tiny.TINY_VISION["image_size"])
    ids = torch.tensor([[110] * 4 * 4 + [5, 6]])
    with torch.no_grad():
        out = model(pixel_values=frames, qformer_input_ids=torch.tensor([[1, 2]]), input_ids=ids)
    assert out.logits.shape == (1, ids.shape[1], 120)
    from_object = InstructBlipForConditionalGeneration(TransformersConfig(**sizes, image_token_index=100))
    assert isinstance(from_object.config, InstructBlipConfig) and from_object.config.uses_eva_vision


@pytest.mark.slow
def test_two_rank_ddp_with_activation_checkpointing(llm_tokenizers, bert_tokenizer, tmp_path):
    """Two gloo ranks, the paper's freezing, activation checkpointing and DDP without
    find_unused_parameters (what the Trainer picks with checkpointing on): every trainable tensor must
    get a gradient on every step, or the second step fails; the ranks end with equal weights."""
    import subprocess
    import sys
    from pathlib import Path

    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    randomize_(InstructBlipForConditionalGeneration(config), std=0.05).save_pretrained(tmp_path)
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, prompts=["What is it?", "How many?"] * 2, padding_side="right")
    inputs["labels"] = labels_for("llama", llm_tokenizers, inputs)
    torch.save(inputs, tmp_path / "batch.pt")
    result = tmp_path / "result.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tests.modeling_instructblip.ddp_worker", str(tmp_path), "4", str(result)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2], env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = torch.load(result, weights_only=True)
    assert len(out["losses"]) == 4
    torch.testing.assert_close(out["gathered"][0], out["gathered"][1], atol=0, rtol=0)
    assert out["moved"] > out["trainable"] // 2  # it trained: most trainable tensors moved


def test_a_placeholder_label_is_no_target(reference_pair, llm_tokenizers, bert_tokenizer):
    """With `match_lavis` the `<image>` placeholder takes no probability, so a label left on a
    placeholder position (transformers' tests supervise every input id) is ignored like -100 instead
    of giving an infinite loss; transformers' behaviour (`match_lavis=False`) scores it."""
    _, _, folder = reference_pair("llama")
    model = InstructBlipForConditionalGeneration.from_pretrained(folder).eval()
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for("llama", llm_tokenizers, inputs)
    on_placeholders = labels.clone()
    on_placeholders[:, 1:4] = model.config.image_token_index  # positions that hold the visual tokens
    with torch.no_grad():
        expected = model(**inputs, labels=labels).loss
        got = model(**inputs, labels=on_placeholders).loss
        torch.testing.assert_close(got, expected)
        port = InstructBlipForConditionalGeneration.from_pretrained(folder, match_lavis=False).eval()
        assert torch.isfinite(port(**inputs, labels=on_placeholders).loss)
        assert not torch.allclose(port(**inputs, labels=on_placeholders).loss, port(**inputs, labels=labels).loss)
