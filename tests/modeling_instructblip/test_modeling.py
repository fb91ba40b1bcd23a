"""The model against transformers' InstructBlipForConditionalGeneration (same weights, fp32), and the
behaviours training and evaluation rely on: video, candidate ranking, freezing, other towers and LLMs."""

import pytest
import torch

from modeling_instructblip import InstructBlipConfig, InstructBlipForConditionalGeneration, tiny
from tests.helpers import NUM_QUERY_TOKENS, randomize_
from tests.modeling_instructblip.model_inputs import PROMPTS, batch, labels_for, real_positions

ATOL = 1e-5


def training_step(model, inputs, call=None):
    """One forward + backward of `model` on `inputs` (through `call`, e.g. a compiled wrapper of it):
    (the output, {name: gradient} of the parameters that got one)."""
    model.zero_grad()
    out = (model if call is None else call)(**inputs)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


KINDS = ["llama", "t5"]


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_names_are_transformers_names(kind, reference_pair):
    reference, ours, _ = reference_pair(kind)
    reference_state, our_state = reference.state_dict(), ours.state_dict()
    assert set(our_state) == set(reference_state)
    for name, tensor in reference_state.items():
        assert our_state[name].shape == tensor.shape, name
        assert torch.equal(our_state[name], tensor), name


@pytest.mark.parametrize("kind", KINDS)
def test_features_logits_and_loss_match_transformers(kind, reference_pair, llm_tokenizers, bert_tokenizer):
    reference, ours, _ = reference_pair(kind)
    # right padding, the training layout: transformers numbers left pads as positions in a forward pass
    inputs = batch(kind, llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for(kind, llm_tokenizers, inputs)
    image_inputs = {k: inputs[k] for k in ("pixel_values", "qformer_input_ids", "qformer_attention_mask")}
    with torch.no_grad():
        expected = reference.get_image_features(**image_inputs)
        got = ours.get_image_features(**image_inputs)
        torch.testing.assert_close(got.image_embeds, expected.vision_outputs.last_hidden_state, atol=ATOL, rtol=0)
        expected_queries = expected.qformer_outputs.last_hidden_state[:, :NUM_QUERY_TOKENS]
        torch.testing.assert_close(got.query_output, expected_queries, atol=ATOL, rtol=0)
        torch.testing.assert_close(got.language_model_inputs, expected.pooler_output, atol=ATOL, rtol=0)

        expected_out = reference(**inputs, labels=labels)
        got_out = ours(**inputs, labels=labels)
    real = real_positions(kind, inputs)
    torch.testing.assert_close(got_out.logits[real], expected_out.logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(got_out.loss, expected_out.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("decoding", [dict(num_beams=1), dict(num_beams=3)], ids=["greedy", "beam3"])
def test_generate_ids_identical_to_transformers(kind, decoding, reference_pair, llm_tokenizers, bert_tokenizer):
    reference, ours, _ = reference_pair(kind)
    inputs = batch(kind, llm_tokenizers, bert_tokenizer)
    settings = dict(do_sample=False, max_new_tokens=10, min_new_tokens=10, **decoding)
    expected = reference.generate(**inputs, **settings)
    got = ours.generate(**inputs, **settings)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "decoding",
    [dict(num_beams=4), dict(num_beams=3, num_return_sequences=2), dict(do_sample=True, top_k=20, num_return_sequences=3)],
    ids=["beam4", "beam3-return2", "sample-return3"],
)
def test_several_sequences_per_prompt_run_the_prompt_once(decoding, reference_pair, llm_tokenizers, bert_tokenizer):
    """Beams and samples of a decoder-only LLM share one pass over each prompt (transformers runs it
    per beam): the sequences stay transformers' own, token for token, left padding included."""
    reference, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    assert not inputs["attention_mask"].all()  # left-padded
    settings = dict(max_new_tokens=6, min_new_tokens=6, **decoding)
    torch.manual_seed(0)
    expected = reference.generate(**inputs, **settings)
    widths = []
    hook = ours.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(
            next(tuple(v.shape[:2]) for k, v in kwargs.items() if k in ("inputs_embeds", "input_ids") and v is not None)
        ),
        with_kwargs=True,
    )
    try:
        torch.manual_seed(0)
        got = ours.generate(**inputs, **settings)
    finally:
        hook.remove()
    assert torch.equal(got, expected)
    prompt = inputs["input_ids"].shape
    assert widths[0] == (prompt[0], prompt[1] - 1)  # the prompt but its last token, once per sample
    assert all(width[1] == 1 for width in widths[1:])  # then one token per step for every beam


@pytest.mark.parametrize("kind", KINDS)
def test_padded_batch_equals_each_sample_alone(kind, reference_pair, llm_tokenizers, bert_tokenizer):
    """Different prompt lengths in one batch (left-padded for the decoder-only LLM): every sample's
    logits (forward) and generated ids equal those of the sample run alone."""
    _, ours, _ = reference_pair(kind)
    prompts = ["A short image caption:", "Question: what color is the big square on the left? Short answer:"]
    inputs = batch(kind, llm_tokenizers, bert_tokenizer, prompts=prompts)
    settings = dict(do_sample=False, max_new_tokens=6, min_new_tokens=6)
    with torch.no_grad():
        batched_logits = ours(**inputs).logits
        batched_ids = ours.generate(**inputs, **settings)
    for i, prompt in enumerate(prompts):
        alone = batch(kind, llm_tokenizers, bert_tokenizer, prompts=[prompt])
        alone["pixel_values"] = inputs["pixel_values"][i : i + 1]
        with torch.no_grad():
            logits = ours(**alone).logits[0]
            ids = ours.generate(**alone, **settings)[0]
        real = inputs["attention_mask"][i].bool() if kind == "llama" else slice(None)
        torch.testing.assert_close(batched_logits[i][real], logits, atol=ATOL, rtol=0)
        new_tokens = batched_ids[i, -6:] if kind == "llama" else batched_ids[i]
        assert torch.equal(new_tokens, ids[-6:] if kind == "llama" else ids)


def test_eager_and_sdpa_attention_agree(reference_pair, llm_tokenizers, bert_tokenizer):
    _, _, folder = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    eager = InstructBlipForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    sdpa = InstructBlipForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa").eval()
    assert eager.config.vision_config._attn_implementation == "eager"
    assert eager.config.qformer_config._attn_implementation == "eager"
    assert sdpa.config.qformer_config._attn_implementation == "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(eager(**inputs).logits, sdpa(**inputs).logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_our_saved_model_loads_in_transformers(kind, reference_pair, llm_tokenizers, bert_tokenizer, tmp_path):
    from transformers import InstructBlipForConditionalGeneration as Reference

    reference, ours, _ = reference_pair(kind)
    ours.save_pretrained(tmp_path)
    config = ours.config.to_dict()
    assert config["model_type"] == "instructblip_hub"
    assert config["auto_map"]["AutoModel"] == "modeling_instructblip.InstructBlipForConditionalGeneration"
    assert config["auto_map"]["AutoModelForImageTextToText"] == config["auto_map"]["AutoModel"]
    reloaded = Reference.from_pretrained(tmp_path, config=reference.config).eval()
    inputs = batch(kind, llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for(kind, llm_tokenizers, inputs)
    real = real_positions(kind, inputs)
    with torch.no_grad():
        expected, got = reloaded(**inputs, labels=labels), ours(**inputs, labels=labels)
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=ATOL, rtol=0)


def test_position_embedding_interpolation_matches_transformers(reference_pair, llm_tokenizers, bert_tokenizer):
    reference, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    pixel_values = torch.randn(2, 3, 42, 35)  # a 6x5 patch grid instead of 4x4
    with torch.no_grad():
        expected = reference.get_image_features(
            pixel_values, inputs["qformer_input_ids"], inputs["qformer_attention_mask"], interpolate_pos_encoding=True
        )
        got = ours.get_image_features(pixel_values, inputs["qformer_input_ids"], inputs["qformer_attention_mask"])
    assert got.image_embeds.shape == (2, 31, 32)
    torch.testing.assert_close(got.image_embeds, expected.vision_outputs.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.language_model_inputs, expected.pooler_output, atol=ATOL, rtol=0)


def test_video_matches_transformers_instructblipvideo(reference_pair, llm_tokenizers, bert_tokenizer, tmp_path):
    """[batch, frames, 3, H, W]: each frame through the Q-Former with the same instruction, the frames'
    visual tokens concatenated (32*T tokens); transformers' InstructBlipVideo is the reference."""
    from transformers import InstructBlipVideoConfig, InstructBlipVideoForConditionalGeneration

    _, ours, _ = reference_pair("llama")
    frames = 4
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, frames=frames)
    config = ours.config.to_dict()
    video_config = InstructBlipVideoConfig(
        vision_config={k: v for k, v in config["vision_config"].items() if k != "model_type"},
        qformer_config={k: v for k, v in config["qformer_config"].items() if k != "model_type"},
        text_config=config["text_config"],
        num_query_tokens=NUM_QUERY_TOKENS,
        video_token_index=ours.config.image_token_index,
    )
    reference = InstructBlipVideoForConditionalGeneration(video_config).eval()
    inputs_right = batch("llama", llm_tokenizers, bert_tokenizer, frames=frames, padding_side="right")
    missing, unexpected = reference.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected
    with torch.no_grad():
        features = ours.get_image_features(
            inputs["pixel_values"], inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
        )
        assert features.language_model_inputs.shape == (2, frames * NUM_QUERY_TOKENS, 48)
        real = inputs_right["attention_mask"].bool()
        expected = reference(**inputs_right).logits[real]
        torch.testing.assert_close(ours(**inputs_right).logits[real], expected, atol=ATOL, rtol=0)
    settings = dict(do_sample=False, max_new_tokens=5, min_new_tokens=5)
    assert torch.equal(ours.generate(**inputs, **settings), reference.generate(**inputs, **settings))


def naive_candidate_logprobs(model, kind, tokenizer, inputs, candidates):
    """One full forward pass per (sample, candidate), read off the loss: what ranking must equal."""
    scores = []
    for b, sample_candidates in enumerate(candidates):
        row = []
        keep = inputs["attention_mask"][b].bool()
        for candidate in sample_candidates:
            target = tokenizer(candidate, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            one = {k: inputs[k][b : b + 1] for k in ("pixel_values", "qformer_input_ids", "qformer_attention_mask")}
            if kind == "llama":
                prompt = inputs["input_ids"][b][keep].tolist()
                one["input_ids"] = torch.tensor([prompt + target])
                labels = torch.tensor([[-100] * len(prompt) + target])
            else:
                one["input_ids"] = inputs["input_ids"][b : b + 1][:, keep]
                labels = torch.tensor([target])
            with torch.no_grad():
                loss = model(**one, labels=labels).loss
            row.append(-loss.item() * len(target))
        scores.append(row)
    return scores


def tokenize_candidates(tokenizer, candidates):
    rows = [[tokenizer(c, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for c in cs] for cs in candidates]
    num, width = max(map(len, rows)), max(len(t) for cs in rows for t in cs)
    ids = torch.zeros(len(rows), num, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, cs in enumerate(rows):
        for k, tokens in enumerate(cs):
            ids[b, k, : len(tokens)] = torch.tensor(tokens)
            mask[b, k, : len(tokens)] = 1
    return ids, mask


@pytest.mark.parametrize("kind", KINDS)
def test_rank_candidates_equals_naive_forward_passes(kind, reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair(kind)
    tokenizer = llm_tokenizers[kind]
    prompts = ["Is it hateful? Answer:", "Question: which object is a plant? Options: (a) tree (b) rock. Answer:"]
    inputs = batch(kind, llm_tokenizers, bert_tokenizer, prompts=prompts)
    candidates = [["yes", "no", "true", "false"], ["tree", "a large rock"]]  # different counts per sample
    ids, mask = tokenize_candidates(tokenizer, candidates)
    expected = naive_candidate_logprobs(ours, kind, tokenizer, inputs, candidates)
    for chunk in (None, 1, 3):
        ranked = ours.rank_candidates(ids, mask, candidate_batch_size=chunk, **inputs)
        for b, row in enumerate(expected):
            got = ranked.sum_logprobs[b, : len(row)]
            torch.testing.assert_close(got, torch.tensor(row), atol=ATOL, rtol=0)
            lengths = mask[b, : len(row)].sum(-1)
            torch.testing.assert_close(ranked.mean_logprobs[b, : len(row)], got / lengths, atol=ATOL, rtol=0)
    assert ranked.sum_logprobs[1, 2:].eq(float("-inf")).all()  # absent candidates never win


def test_rank_candidates_encodes_image_and_prompt_once_per_sample(reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    ids, mask = tokenize_candidates(llm_tokenizers["llama"], [["yes", "no", "maybe"]] * 2)
    calls = {"vision": 0, "llm_tokens": []}
    vision_hook = ours.vision_model.register_forward_hook(lambda *a: calls.__setitem__("vision", calls["vision"] + 1))
    llm_hook = ours.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: calls["llm_tokens"].append(
            (kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]).shape[:2]
        ),
        with_kwargs=True,
    )
    try:
        ours.rank_candidates(ids, mask, **inputs)
    finally:
        vision_hook.remove()
        llm_hook.remove()
    assert calls["vision"] == 1
    prefix_calls = [shape for shape in calls["llm_tokens"] if shape[1] > ids.shape[-1]]
    assert len(prefix_calls) == 2 and all(shape[0] == 1 for shape in prefix_calls)  # one prefix pass per sample
    candidate_calls = [shape for shape in calls["llm_tokens"] if shape[1] <= ids.shape[-1]]
    assert candidate_calls and all(shape[0] == 3 for shape in candidate_calls)  # all 3 candidates in one batch


def test_vision_features_can_be_reused_across_prompts(reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    with torch.no_grad():
        features = ours.get_vision_features(inputs["pixel_values"])
        reused = dict(inputs, pixel_values=None, vision_features=features)
        torch.testing.assert_close(ours(**reused).logits, ours(**inputs).logits, atol=0, rtol=0)
    settings = dict(do_sample=False, max_new_tokens=4)
    assert torch.equal(ours.generate(**reused, **settings), ours.generate(**inputs, **settings))


def test_freezing_follows_the_paper(llm_tokenizers, bert_tokenizer):
    model = InstructBlipForConditionalGeneration(tiny.tiny_config("t5", tokenizer=llm_tokenizers["t5"]))
    model.freeze_for_instruction_tuning().train()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trains"
    for name in trainable:
        assert name.startswith(("qformer.", "query_tokens", "language_projection.", "vision_model.post_layernorm."))
    assert "query_tokens" in trainable and "vision_model.post_layernorm.weight" in trainable
    assert any(n.startswith("qformer.encoder.layer.0.intermediate_query") for n in trainable)
    assert any(n.startswith("qformer.embeddings.word_embeddings") for n in trainable)
    # with LoRA on the LLM, the LLM's flags and train mode are left to the adapters
    lora_style = InstructBlipForConditionalGeneration(model.config).freeze_for_instruction_tuning(train_language_model=True)
    lora_style.train()
    assert lora_style.language_model.training and not lora_style.vision_model.encoder.training
    assert all(p.requires_grad for p in lora_style.language_model.parameters())
    # a model built from scratch may train its vision tower too
    scratch = InstructBlipForConditionalGeneration(model.config).freeze_for_instruction_tuning(train_vision_model=True)
    scratch.train()
    assert scratch.vision_model.encoder.training and all(p.requires_grad for p in scratch.vision_model.parameters())
    assert not scratch.language_model.training and not any(p.requires_grad for p in scratch.language_model.parameters())
    features = scratch.get_vision_features(batch("t5", llm_tokenizers, bert_tokenizer)["pixel_values"])
    assert features.requires_grad  # the tower now keeps its autograd graph
    # frozen towers stay in eval mode (no dropout) while the model trains
    assert model.training and model.qformer.training
    assert not model.language_model.training and not model.vision_model.encoder.training
    # gradients reach exactly the trainable tensors; the frozen ViT keeps no autograd graph
    inputs = batch("t5", llm_tokenizers, bert_tokenizer)
    vision_features = model.get_vision_features(inputs["pixel_values"])
    assert not vision_features.requires_grad
    model(**inputs, labels=labels_for("t5", llm_tokenizers, inputs)).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    # every trainable tensor gets a gradient, the last Q-Former layer's text feed-forward block too
    # (zero: its output is not used, as in LAVIS), so DDP needs no find_unused_parameters
    assert with_grad == trainable
    last = f"qformer.encoder.layer.{len(model.qformer.encoder.layer) - 1}."
    text_block = [p.grad for n, p in model.named_parameters() if n.startswith((last + "intermediate.", last + "output."))]
    assert len(text_block) == 6 and all(not g.any() for g in text_block)


def test_loss_normalised_by_num_items_in_batch(reference_pair, llm_tokenizers, bert_tokenizer):
    """Gradient accumulation: with `num_items_in_batch`, the loss is the batch's summed token loss over
    that count, so micro-batches of different sizes weigh every token the same."""
    _, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    labels = labels_for("llama", llm_tokenizers, inputs)
    n = int((labels[:, 1:] != -100).sum())
    with torch.no_grad():
        mean = ours(**inputs, labels=labels).loss
        scaled = ours(**inputs, labels=labels, num_items_in_batch=torch.tensor(4 * n)).loss
    torch.testing.assert_close(scaled * 4, mean, atol=ATOL, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients(llm_tokenizers, bert_tokenizer):
    torch.manual_seed(0)
    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    model = randomize_(InstructBlipForConditionalGeneration(config), std=0.05).freeze_for_instruction_tuning()
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    labels = labels_for("llama", llm_tokenizers, inputs)

    def grads():
        model.zero_grad()
        model.train()
        model(**inputs, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable()
    assert model.qformer.encoder.layer[0].gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_bfloat16_loading(reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, folder = reference_pair("llama")
    model = InstructBlipForConditionalGeneration.from_pretrained(
        folder, dtype=torch.bfloat16, match_lavis=False
    ).eval()
    assert model.language_model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model.query_tokens.dtype == torch.bfloat16  # as transformers: only fp16 keeps them in fp32
    half = InstructBlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float16)
    assert half.query_tokens.dtype == torch.float32 and half.qformer.encoder.layer[0].output.dense.weight.dtype == torch.float16
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    with torch.no_grad():
        logits = model(**inputs).logits
        reference = ours(**inputs).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.25 * reference.abs().max()
    assert model.generate(**inputs, do_sample=False, max_new_tokens=3).shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("kind", ["opt", "gpt2", "qwen2", "mistral"])
def test_any_causal_lm_trains_generates_and_round_trips(kind, llm_tokenizers, bert_tokenizer, tmp_path):
    config = tiny.tiny_config(kind, tokenizer=llm_tokenizers["llama"])
    model = InstructBlipForConditionalGeneration(config).eval()
    assert config.use_decoder_only_language_model
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    labels = labels_for("llama", llm_tokenizers, inputs)
    out = model(**inputs, labels=labels)
    assert out.logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(out.loss)
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=4, min_new_tokens=4)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 4)
    model.save_pretrained(tmp_path)
    reloaded = InstructBlipForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.text_config.model_type == kind
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("vision", ["clip_vision_model", "siglip_vision_model"])
def test_other_vision_towers(vision, llm_tokenizers, bert_tokenizer, tmp_path):
    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"], vision=vision, vision_feature_layer=-2)
    model = InstructBlipForConditionalGeneration(config).eval()
    assert type(model.vision_model).__name__ in ("CLIPVisionModel", "SiglipVisionModel")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    with torch.no_grad():
        features = model.get_vision_features(inputs["pixel_values"])
        all_layers = model.vision_model(pixel_values=inputs["pixel_values"], output_hidden_states=True).hidden_states
    torch.testing.assert_close(features, all_layers[-2], atol=0, rtol=0)
    assert model(**inputs).logits.shape[:2] == inputs["input_ids"].shape
    model.freeze_for_instruction_tuning()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "vision_layernorm.weight" in trainable and not any(n.startswith("vision_model.") for n in trainable)
    model.save_pretrained(tmp_path)
    reloaded = InstructBlipForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.vision_config.model_type == vision and reloaded.config.vision_feature_layer == -2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


def test_clear_errors(reference_pair, llm_tokenizers, bert_tokenizer):
    _, ours, _ = reference_pair("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    too_few = dict(inputs, input_ids=inputs["input_ids"][:, 1:], attention_mask=inputs["attention_mask"][:, 1:])
    with pytest.raises(ValueError, match="needs 8 `<image>` placeholder tokens.*found \\[7, 7\\]"):
        ours(**too_few)
    with pytest.raises(ValueError, match="pixel_values must be"):
        ours(**dict(inputs, pixel_values=torch.randn(2, 28, 28)))
    with pytest.raises(ValueError, match="qformer_input_ids has 1 rows for 2 images"):
        ours(**dict(inputs, qformer_input_ids=inputs["qformer_input_ids"][:1], qformer_attention_mask=None))
    with pytest.raises(ValueError, match="candidate_input_ids must be"):
        ours.rank_candidates(torch.zeros(2, 3, dtype=torch.long), **inputs)
    config = tiny.tiny_config("llama")
    assert config.image_token_index is None
    with pytest.raises(ValueError, match="image_token_index is not set"):
        InstructBlipForConditionalGeneration(config)(**inputs)
    with pytest.raises(ValueError, match="vision_config.model_type.*'not_a_tower'"):
        InstructBlipConfig(vision_config={"model_type": "not_a_tower"})


def test_training_forward_computes_logits_only_where_supervised(llm_tokenizers, bert_tokenizer):
    """The fast path (LM head on supervised positions only) gives the loss and gradients of the full one."""
    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    model = randomize_(InstructBlipForConditionalGeneration(config), std=0.05).freeze_for_instruction_tuning().train()
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, padding_side="right")
    labels = labels_for("llama", llm_tokenizers, inputs)

    def run(**extra):
        return training_step(model, dict(inputs, labels=labels, **extra))

    fast, fast_grads = run()
    full, full_grads = run(logits_to_keep=0)
    supervised = int((labels[:, 1:] != -100).sum())
    assert fast.logits.shape == (supervised, full.logits.shape[-1])
    assert full.logits.shape[:2] == inputs["input_ids"].shape
    torch.testing.assert_close(fast.logits, full.logits[:, :-1][labels[:, 1:] != -100], atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.loss, full.loss, atol=1e-6, rtol=0)
    assert fast_grads.keys() == full_grads.keys()
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], atol=1e-6, rtol=1e-5)
    model.eval()
    with torch.no_grad():  # eval mode keeps transformers' full logits
        assert model(**inputs, labels=labels).logits.shape[:2] == inputs["input_ids"].shape


@pytest.mark.parametrize("how", ["whole model", "regions"])
def test_compiled_training_step_captures_without_graph_breaks(how, llm_tokenizers, bert_tokenizer, monkeypatch):
    """`torch.compile` of a training step (the `aot_eager` backend: TorchDynamo's capture and
    AOTAutograd's backward, without inductor's code generation) on a padded batch: the whole model
    goes into one graph (the eager shortcuts for unpadded batches and the supervised-row selection
    are data-dependent and step aside); per block (accelerate's regional compilation, what
    `train.py --torch_compile` uses) the blocks capture whole and the logits are still kept at the
    supervised positions only. Both give eager's loss and gradients, and a malformed batch still fails
    with the message."""
    import torch._dynamo
    from accelerate.utils import compile_regions

    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    model = randomize_(InstructBlipForConditionalGeneration(config), std=0.2).freeze_for_instruction_tuning().train()
    prompts = PROMPTS + ["Describe the picture in a few words, please."]
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, prompts=prompts, padding_side="left")
    inputs["labels"] = labels_for("llama", llm_tokenizers, inputs)
    assert not inputs["attention_mask"].all() and not inputs["qformer_attention_mask"].all()

    eager, eager_grads = training_step(model, inputs)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    if how == "regions":
        compiled = compile_regions(model, backend="aot_eager")
        assert type(compiled.language_model.model.layers[-1]).__name__ == "OptimizedModule"
    else:
        compiled = torch.compile(model, backend="aot_eager")
    out, grads = training_step(model, inputs, call=compiled)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 1  # it was compiled
    assert not counters["graph_break"], dict(counters["graph_break"])
    if how == "regions":  # eager training's logits at the supervised positions, around the compiled blocks
        assert out.logits.shape == eager.logits.shape == (int((inputs["labels"] != -100).sum()), config.text_config.vocab_size)
    else:  # one static graph: all positions' logits
        assert out.logits.shape == (*inputs["input_ids"].shape, config.text_config.vocab_size)
    torch.testing.assert_close(out.loss, eager.loss, atol=1e-6, rtol=0)
    assert grads.keys() == eager_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], atol=1e-6, rtol=1e-5, msg=name)
    broken = dict(inputs, input_ids=inputs["input_ids"].masked_fill(inputs["input_ids"] == config.image_token_index, 5))
    with pytest.raises((ValueError, RuntimeError), match="placeholder tokens"):
        compiled(**broken)


@pytest.mark.slow
def test_inductor_compiles_the_training_blocks(llm_tokenizers, bert_tokenizer):
    """What a GPU runs under `train.py --torch_compile`: inductor's generated code for every block
    (here its C++ for the CPU). The step gives
    eager's loss and gradients up to the reordering of float sums."""
    import torch._dynamo
    from accelerate.utils import compile_regions

    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    model = randomize_(InstructBlipForConditionalGeneration(config), std=0.2).freeze_for_instruction_tuning().train()
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, padding_side="right")
    inputs["labels"] = labels_for("llama", llm_tokenizers, inputs)

    eager, eager_grads = training_step(model, inputs)
    torch._dynamo.reset()
    out, grads = training_step(model, inputs, call=compile_regions(model, backend="inductor"))
    torch.testing.assert_close(out.loss, eager.loss, atol=1e-5, rtol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_give_the_padded_batchs_loss_and_gradients(attention, llm_tokenizers, bert_tokenizer):
    """Samples packed into one row without padding (position_ids restarting per sample, no mask) train
    exactly as the right-padded batch: same loss, same gradients; the LLM keeps the samples apart."""
    from training.data import pack_batch

    config = tiny.tiny_config("llama", tokenizer=llm_tokenizers["llama"])
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    config._attn_implementation = attention
    model = randomize_(InstructBlipForConditionalGeneration(config), std=0.2).freeze_for_instruction_tuning().train()
    prompts = PROMPTS + ["Describe the picture in a few words, please."]
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, prompts=prompts, padding_side="right")
    inputs["labels"] = labels_for("llama", llm_tokenizers, inputs)
    packed = pack_batch(dict(inputs))
    assert packed["input_ids"].shape == (1, int(inputs["attention_mask"].sum())) and "attention_mask" not in packed

    padded, padded_grads = training_step(model, inputs)
    packed_out, packed_grads = training_step(model, packed)
    torch.testing.assert_close(packed_out.loss, padded.loss, atol=1e-5, rtol=0)
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    # without restarting positions the samples would see each other: refused, not silently mixed
    with pytest.raises(ValueError, match="position_ids that restart"):
        model(**{k: v for k, v in packed.items() if k != "position_ids"})


def test_loads_a_transformers_v4_era_config(reference_pair, llm_tokenizers, bert_tokenizer, tmp_path):
    """The Salesforce/instructblip-* repos were written by transformers 4.3x: legacy keys (torch_dtype,
    use_decoder_only_language_model, sub-config architectures/torch_dtype, ...) must load as well."""
    import json
    import shutil

    _, ours, folder = reference_pair("llama")
    shutil.copytree(folder, tmp_path / "v4", dirs_exist_ok=True)
    config = json.loads((tmp_path / "v4" / "config.json").read_text())
    config.update(architectures=["InstructBlipForConditionalGeneration"], torch_dtype="float32",
                  transformers_version="4.31.0.dev0", use_decoder_only_language_model=True, tie_word_embeddings=False)
    config.pop("dtype", None)
    config["text_config"].update(architectures=["LlamaForCausalLM"], torch_dtype="float16",
                                 _name_or_path="lmsys/vicuna-7b-v1.1", rms_norm_eps=1e-6)
    config["text_config"].pop("dtype", None)
    config["qformer_config"].update(position_embedding_type="absolute", classifier_dropout=None)
    config["vision_config"].update(initializer_factor=1.0, dropout=0.0)
    (tmp_path / "v4" / "config.json").write_text(json.dumps(config))
    loaded = InstructBlipForConditionalGeneration.from_pretrained(
        tmp_path / "v4", match_lavis=False
    ).eval()
    assert loaded.config.model_type == "instructblip_hub" and loaded.config.use_decoder_only_language_model
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, ours(**inputs).logits, atol=0, rtol=0)
    loaded.save_pretrained(tmp_path / "ours")  # and it saves in our format
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "instructblip_hub"


def test_pickled_weights_are_refused_with_the_reason(reference_pair, tmp_path):
    import shutil

    _, ours, folder = reference_pair("llama")
    shutil.copytree(folder, tmp_path / "pickled")
    (tmp_path / "pickled" / "model.safetensors").unlink()
    torch.save(ours.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled weights \\(pytorch_model.bin\\).*arbitrary code"):
        InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "pickled")
    with pytest.raises(ValueError, match="use_safetensors=False is refused"):
        InstructBlipForConditionalGeneration.from_pretrained(folder, use_safetensors=False)


def test_qformer_padding_side_does_not_change_the_visual_tokens(reference_pair, llm_tokenizers, bert_tokenizer):
    """Q-Former text positions count real tokens: a left-padded instruction gives the visual tokens of the
    right-padded one (transformers numbers the pads, so its scores depend on the rest of the batch)."""
    _, ours, _ = reference_pair("llama")
    prompts = ["A short image caption:", "Question: what color is the big square on the left? Short answer:"]
    inputs = batch("llama", llm_tokenizers, bert_tokenizer, prompts=prompts)
    right_ids, right_mask = inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
    left_ids, left_mask = torch.zeros_like(right_ids), torch.zeros_like(right_mask)
    for row, mask in enumerate(right_mask):
        n = int(mask.sum())
        left_ids[row, -n:], left_mask[row, -n:] = right_ids[row, :n], 1
    with torch.no_grad():
        right = ours.get_image_features(inputs["pixel_values"], right_ids, right_mask).language_model_inputs
        left = ours.get_image_features(inputs["pixel_values"], left_ids, left_mask).language_model_inputs
    torch.testing.assert_close(left, right, atol=ATOL, rtol=0)


def test_tiny_build_keeps_the_processor_at_the_towers_image_size():
    model, processor = tiny.build("llama", image_size=56)
    assert model.config.vision_config.image_size == 56
    assert processor.image_processor.size == {"height": 56, "width": 56}
    from PIL import Image

    inputs = processor(images=Image.new("RGB", (90, 70), (200, 0, 0)), text="A photo of", return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (56, 56)
    with torch.no_grad():  # 8x8 patches: the position embedding was built for this size, no interpolation
        assert model.get_vision_features(inputs["pixel_values"]).shape[1] == 65
