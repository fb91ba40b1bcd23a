"""`make bench`: our model and processor at the paper's widths, against transformers'
InstructBlip* on the same weights and inputs (or against our own plain path where transformers has
no counterpart), timed alternately in one run; prints one table of ratios and writes it to
BENCHMARKS.md.

Widths are the paper's: EVA ViT-g (1408, 16 heads, MLP 6144, 224 px, 257 tokens), Q-Former 768 x 12
heads, Vicuna-7B (4096, 32 heads, MLP 11008, vocab 32064) and FlanT5-XL (d_model 2048, 32 heads,
d_ff 5120). Only a few layers of each are built (ViT 2, Q-Former 4, Vicuna 2, FlanT5 2 + 2), so it
runs on a 2-core CPU; frozen towers are in bf16 (training under bf16 autocast, as on a GPU).
Each case's ratio is measured at that built size and also estimated at the real layer counts (ViT
39, Q-Former 12, Vicuna-7B 32, FlanT5-XL 24 + 24): module hooks time every built layer in the same
run, and the missing layers are added at their measured cost. That is what decides whether a
saving matters (skipping the vision tower saves 2 layers here, 39 in the real model).

Cases:
  train step       forward + backward of the trainable part (Q-Former, queries, projection, post-ViT
                   LayerNorm), Vicuna, answer 10 tokens, batch 2; vs transformers' model
  cached features  the same step from `train.py --vision_feature_cache` features, Vicuna and FlanT5;
                   vs our step from pixels
  packing          4 samples, answers 5 / 10 / 30 / 100 tokens: packed into one row
                   (`InstructBlipCollator(pack=True)`) vs right-padded; ours
  ranking          k = 10, 100 candidates scored together vs one forward pass per candidate
                   (transformers' model), Vicuna and FlanT5
  generate         greedy and 5-beam, 10 new tokens, batch 1, bf16 weights; vs transformers' model
  repeated prompts 8 instructions about one image reusing the vision features vs recomputing
  preprocessing    640x480 JPEG files -> model inputs, ours vs transformers' InstructBlipProcessor
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modeling_instructblip import InstructBlipForConditionalGeneration, InstructBlipProcessor, tiny  # noqa: E402
from modeling_instructblip.configuration_instructblip import InstructBlipConfig  # noqa: E402
from modeling_instructblip.processing_instructblip import InstructBlipImageProcessor  # noqa: E402

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

# the paper's widths, a few layers of each
REAL = dict(
    vision=dict(hidden_size=1408, intermediate_size=6144, num_attention_heads=16, image_size=224, patch_size=14,
                layer_norm_eps=1e-6, num_hidden_layers=2),
    qformer=dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=4,
                 cross_attention_frequency=2, encoder_hidden_size=1408, vocab_size=30523),
    llama=dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
               num_hidden_layers=2, vocab_size=32064, max_position_embeddings=2048, rms_norm_eps=1e-6),
    t5=dict(d_model=2048, d_kv=64, num_heads=32, d_ff=5120, num_layers=2, num_decoder_layers=2, vocab_size=32128,
            feed_forward_proj="gated-gelu", dense_act_fn="gelu", tie_word_embeddings=False, decoder_start_token_id=0),
)
SMOKE = dict(
    vision=dict(tiny.TINY_VISION),
    qformer=dict(tiny.TINY_QFORMER, num_hidden_layers=4, vocab_size=300),
    llama=dict(tiny.TINY_TEXT["llama"], vocab_size=301),
    t5=dict(tiny.TINY_TEXT["t5"], vocab_size=301, decoder_start_token_id=0),
)
# the paper's layer counts: ViT-g without its last block, BERT-base, Vicuna-7B, FlanT5-XL
# the former tiny benchmark size, whose Llama bench_gpu_train.py still uses
SMALL = dict(llama=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8,
                        num_key_value_heads=8, vocab_size=32001, max_position_embeddings=1024))
REAL_LAYERS = dict(vision=39, qformer=12, llama=32, t5_encoder=24, t5_decoder=24)
LLM_NAMES = dict(llama="Vicuna-7B", t5="FlanT5-XL")


@dataclass
class Result:
    case: str
    what: str
    ours: list = field(default_factory=list)
    reference: list = field(default_factory=list)
    target: float | None = None  # ours / reference at the real layer counts must be <= target
    real: tuple[float, float] | None = None  # (ours, reference) seconds estimated at the real layer counts
    unit: str = "s"

    @property
    def ratio(self) -> float:
        """The median of the per-pair ratios: each pair ran back to back, so a machine that slows
        down or speeds up during the run (shared hosts do) shifts both sides of a pair alike."""
        return statistics.median(o / r for o, r in zip(self.ours, self.reference))

    @property
    def spread(self) -> tuple[float, float]:
        pairs = [o / r for o, r in zip(self.ours, self.reference)]
        return min(pairs), max(pairs)

    @property
    def real_ratio(self) -> float:
        return self.ratio if self.real is None else self.real[0] / self.real[1]

    @property
    def met(self) -> str:
        return "-" if self.target is None else ("yes" if self.real_ratio <= self.target else "NO")


def alternate(result: Result, ours, reference, repeats: int, warmup: int = 1) -> Result:
    """Time `ours` and `reference` alternately (warm-up runs first; which goes first swaps every pair)."""
    for _ in range(warmup):
        ours()
        reference()
    for i in range(repeats):
        order = [(ours, result.ours), (reference, result.reference)]
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return result


# ---- the real layer counts -----------------------------------------------------------------------------


class LayerClock:
    """Seconds each layer of a model spends per pass, forward and backward, from module hooks: a
    pre-hook starts a clock its hook stops (a CPU backward runs on one thread, module after module,
    so a module's backward lasts from its backward pre-hook to its backward hook). Calls within a
    pass add up (a `generate` calls every layer once per token)."""

    def __init__(self, model):
        self.groups = layer_groups(model)
        self.passes = []  # per pass: {group: seconds of all its layers}

    def run(self, fn, passes: int = 1):
        """Run `fn` `passes` times with every layer timed (the hooks are removed afterwards)."""
        for _ in range(passes):
            totals = dict.fromkeys(self.groups, 0.0)
            handles = []
            for group, layers in self.groups.items():
                for layer in layers:
                    started = []

                    def start(*_, started=started):
                        started.append(time.perf_counter())

                    def stop(*_, group=group, started=started):
                        totals[group] += time.perf_counter() - started.pop()

                    handles += [layer.register_forward_pre_hook(start), layer.register_forward_hook(stop)]
                    if torch.is_grad_enabled():
                        handles += [layer.register_full_backward_pre_hook(start), layer.register_full_backward_hook(stop)]
            try:
                fn()
            finally:
                for handle in handles:
                    handle.remove()
            self.passes.append(totals)
        return self

    def per_layer(self, group: str) -> float:
        """Seconds of one layer of `group` in a pass: the median over passes of the group's mean (0 where
        the group did not run)."""
        return statistics.median(totals[group] for totals in self.passes) / len(self.groups[group]) if self.passes else 0.0

    def at_real_size(self, measured: float, per_layer: dict | None = None) -> float:
        """`measured` (seconds of a pass at the built size) plus the missing layers at their cost
        (`per_layer` overrides this clock's figures for the groups it names)."""
        costs = {group: self.per_layer(group) for group in self.groups} | (per_layer or {})
        return measured + sum((REAL_LAYERS[group] - len(layers)) * costs[group] for group, layers in self.groups.items())


def layer_groups(model) -> dict:
    """The repeated layers of our model or transformers' (same module paths), by tower."""
    groups = dict(vision=list(model.vision_model.encoder.layers), qformer=list(model.qformer.encoder.layer))
    llm = model.language_model
    if model.config.use_decoder_only_language_model:
        groups["llama"] = list(llm.model.layers)
    else:
        groups.update(t5_encoder=list(llm.encoder.block), t5_decoder=list(llm.decoder.block))
    return groups


def timed_at_real_size(result: Result, ours, reference, models, repeats: int, warmup: int = 1, passes: int = 3,
                       shared: tuple = ()):
    """`alternate`, then each side's seconds estimated at the real layer counts (`models`: the model
    each side runs, whose layers are timed, a pass of each side in turn). `shared`: towers whose layers
    do the same work on both sides (same class, same inputs): their per-layer cost is the mean of both
    sides' measurements, so the noise of a shared machine does not pass for a difference."""
    alternate(result, ours, reference, repeats, warmup)
    clocks = LayerClock(models[0]), LayerClock(models[1])
    for _ in range(passes):
        clocks[0].run(ours)
        clocks[1].run(reference)
    pooled = {group: (clocks[0].per_layer(group) + clocks[1].per_layer(group)) / 2 for group in shared}
    result.real = tuple(clock.at_real_size(statistics.median(times), pooled)
                        for clock, times in zip(clocks, (result.ours, result.reference)))
    return result


# ---- models and inputs -----------------------------------------------------------------------------


def text_config(kind: str, sizes: dict) -> tuple[dict, int]:
    text = dict(sizes[kind], model_type=kind)
    image_token = {"llama": 32001, "t5": 32100}[kind] if text["vocab_size"] > 32100 else text["vocab_size"] - 1
    return text, image_token


def build_pair(kind: str, sizes: dict, num_query_tokens: int = 32):
    """Our model and transformers' reference with identical random weights, no dropout."""
    text, image_token = text_config(kind, sizes)
    qformer = dict(sizes["qformer"], vocab_size=sizes["qformer"].get("vocab_size", 30523))
    common = dict(vision_config=sizes["vision"], qformer_config=qformer, text_config=text,
                  num_query_tokens=num_query_tokens, image_token_index=image_token)
    # transformers' port exactly (its post-ViT LayerNorm eps, no LAVIS behaviour at the LLM seam), so
    # both sides compute the same thing
    config = InstructBlipConfig(**common, match_lavis=False)
    torch.manual_seed(0)
    ours = InstructBlipForConditionalGeneration(config)
    reference = transformers.InstructBlipForConditionalGeneration(transformers.InstructBlipConfig(**common))
    reference.load_state_dict(ours.state_dict())
    for model in (ours, reference):
        model.config.qformer_config.attention_probs_dropout_prob = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
                module.attention_dropout = 0.0
    return ours.eval(), reference.eval()


def frozen_in_bf16(model):
    """The frozen towers (the ViT's blocks and the LLM) in bf16, as the paper trains; the trainable
    part stays fp32 (bf16 autocast computes with it)."""
    model.vision_model.embeddings.to(torch.bfloat16)
    model.vision_model.encoder.to(torch.bfloat16)
    model.language_model.to(torch.bfloat16)
    return model


def freeze_like_the_paper(model):
    """transformers' model: only the Q-Former, query tokens, projection and post-ViT LayerNorm train;
    the frozen towers in eval mode (ours does this with `freeze_for_instruction_tuning`)."""
    trainable = ("qformer.", "query_tokens", "language_projection.", "vision_model.post_layernorm.")
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
    model.train()
    model.vision_model.eval()
    model.language_model.eval()
    return model


def for_training(model):
    """The paper's freezing, frozen towers in bf16."""
    if isinstance(model, InstructBlipForConditionalGeneration):
        model.freeze_for_instruction_tuning()
    return freeze_like_the_paper(frozen_in_bf16(model))


def make_inputs(config, batch, prompt_len, target_len, image_size, generator, labels=True):
    image_token, vocab = config.image_token_index, min(config.text_config.vocab_size - 2, 32000)
    queries = config.num_query_tokens
    bert_vocab = config.qformer_config.vocab_size
    prompt = torch.randint(3, vocab, (batch, prompt_len), generator=generator)
    inputs = dict(
        pixel_values=torch.randn(batch, 3, image_size, image_size, generator=generator),
        qformer_input_ids=torch.randint(min(1000, bert_vocab // 2), bert_vocab - 1, (batch, prompt_len), generator=generator),
        qformer_attention_mask=torch.ones(batch, prompt_len, dtype=torch.long),
    )
    if config.use_decoder_only_language_model:
        target = torch.randint(3, vocab, (batch, target_len), generator=generator)
        ids = torch.cat([torch.full((batch, queries), image_token), prompt, target if labels else prompt[:, :0]], 1)
        inputs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
        if labels:
            inputs["labels"] = torch.cat([torch.full((batch, queries + prompt_len), -100), target], 1)
    else:
        ids = torch.cat([torch.full((batch, queries), image_token), prompt], 1)
        inputs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
        if labels:
            inputs["labels"] = torch.randint(3, vocab, (batch, target_len), generator=generator)
    return inputs


def training_step(model, inputs):
    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        return loss.detach().float()
    return run


# ---- cases ---------------------------------------------------------------------------------------------


def bench_train_step(sizes, repeats, batch=2):
    ours, reference = (for_training(m) for m in build_pair("llama", sizes))
    inputs = make_inputs(ours.config, batch, 20, 10, sizes["vision"]["image_size"], torch.Generator().manual_seed(0))
    losses = [training_step(m, inputs)() for m in (ours, reference)]
    torch.testing.assert_close(losses[0], losses[1], rtol=2e-2, atol=1e-2)
    result = Result("train step", f"fwd+bwd, Vicuna, answer 10, batch {batch}; vs transformers'")
    return [timed_at_real_size(result, training_step(ours, inputs), training_step(reference, inputs),
                               (ours, reference), repeats, shared=("llama",))]


def bench_cached_features(sizes, repeats, batch=2):
    """`train.py --vision_feature_cache`: the frozen tower ran once per image before training, so a
    step starts from stored features; against our own step from pixels."""
    results = []
    for kind in ("llama", "t5"):
        model, _ = build_pair(kind, sizes)
        model = for_training(model)
        inputs = make_inputs(model.config, batch, 20, 10, sizes["vision"]["image_size"], torch.Generator().manual_seed(0))
        with torch.no_grad():
            features = model.get_vision_features(inputs["pixel_values"].to(torch.bfloat16))
        cached = {k: v for k, v in inputs.items() if k != "pixel_values"} | {"vision_features": features}
        torch.testing.assert_close(training_step(model, cached)(), training_step(model, inputs)(), rtol=1e-3, atol=1e-3)
        result = Result(f"cached features {kind}", f"fwd+bwd {LLM_NAMES[kind]}, answer 10, batch {batch}; vs from pixels")
        llm = ("llama",) if kind == "llama" else ("t5_encoder", "t5_decoder")
        results.append(timed_at_real_size(result, training_step(model, cached), training_step(model, inputs),
                                          (model, model), repeats, shared=("qformer", *llm)))
    return results


def bench_packing(sizes, repeats, answers=(5, 10, 30, 100)):
    """A batch with the answer lengths of a real mixture (short VQA to LLaVA-long), right-padded to the
    longest vs packed into one row without padding; same loss."""
    from training.data import pack_batch

    model, _ = build_pair("llama", sizes)
    model = for_training(model)
    generator = torch.Generator().manual_seed(4)
    samples = [make_inputs(model.config, 1, 20, n, sizes["vision"]["image_size"], generator) for n in answers]
    width = max(s["input_ids"].shape[1] for s in samples)

    def pad(tensor, value):
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

    padded = {k: torch.cat([s[k] for s in samples]) for k in ("pixel_values", "qformer_input_ids", "qformer_attention_mask")}
    padded.update(input_ids=torch.cat([pad(s["input_ids"], 0) for s in samples]),
                  attention_mask=torch.cat([pad(s["attention_mask"], 0) for s in samples]),
                  labels=torch.cat([pad(s["labels"], -100) for s in samples]))
    packed = pack_batch(dict(padded))
    torch.testing.assert_close(training_step(model, packed)(), training_step(model, padded)(), rtol=2e-2, atol=1e-2)
    result = Result("packing", f"fwd+bwd Vicuna, 4 samples, answers {'/'.join(map(str, answers))}; vs right-padded")
    return [timed_at_real_size(result, training_step(model, packed), training_step(model, padded), (model, model), repeats,
                               shared=("vision", "qformer"))]


def bench_ranking(sizes, repeats, ks=(10, 100), candidate_len=4):
    """Ours: image and prompt encoded once, the candidates scored against the shared prefix. The
    reference protocol: one full forward pass of transformers' model per candidate; for k = 100 its
    time is 100 x the measured time of one pass (the passes are identical in cost)."""
    results = []
    for kind in ("llama", "t5"):
        ours, reference = (m.to(torch.bfloat16) for m in build_pair(kind, sizes))  # as served
        generator = torch.Generator().manual_seed(2)
        inputs = make_inputs(ours.config, 1, 20, 0, sizes["vision"]["image_size"], generator, labels=False)
        inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        vocab = min(ours.config.text_config.vocab_size - 2, 32000)
        for k in ks:
            candidates = torch.randint(3, vocab, (1, k, candidate_len), generator=generator)
            measured = min(k, 10)

            @torch.no_grad()
            def separate(count=measured, candidates=candidates):  # the reference protocol, `count` of the k passes
                scores = []
                for c in range(count):
                    if kind == "llama":
                        ids = torch.cat([inputs["input_ids"], candidates[:, c]], 1)
                        logits = reference(**dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))).logits
                        logprobs = logits[:, -candidate_len - 1 : -1].float().log_softmax(-1)
                    else:
                        logits = reference(**inputs, labels=candidates[:, c]).logits
                        logprobs = logits.float().log_softmax(-1)
                    scores.append(logprobs.gather(-1, candidates[:, c, :, None]).sum())
                return torch.stack(scores)

            together = lambda candidates=candidates: ours.rank_candidates(candidates, **inputs).sum_logprobs[0]  # noqa: E731
            torch.testing.assert_close(together()[:measured], separate(), atol=0.5, rtol=2e-2)  # bf16
            what = f"{LLM_NAMES[kind]}, k={k} candidates scored together vs k forward passes"
            if measured < k:
                what += f" ({k} x one measured pass)"
            result = timed_at_real_size(Result(f"ranking {kind} k={k}", what, target={10: 1 / 3, 100: 1 / 10}[k]),
                                        together, lambda s=separate: s(), (ours, reference), max(2, repeats // 2),
                                        warmup=0, passes=1)
            scale = k / measured
            result.reference = [t * scale for t in result.reference]
            result.real = (result.real[0], result.real[1] * scale)
            results.append(result)
    return results


def bench_generate(sizes, repeats, new_tokens=10):
    results = []
    for kind in ("llama", "t5"):
        ours, reference = (m.to(torch.bfloat16) for m in build_pair(kind, sizes))  # as served
        inputs = make_inputs(ours.config, 1, 20, 0, sizes["vision"]["image_size"], torch.Generator().manual_seed(1), labels=False)
        inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        for beams in (1, 5):
            settings = dict(do_sample=False, num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            same = torch.equal(ours.generate(**inputs, **settings), reference.generate(**inputs, **settings))
            name = f"generate {kind} {'greedy' if beams == 1 else f'{beams}-beam'}"
            what = f"{LLM_NAMES[kind]}, bf16, {new_tokens} tokens, batch 1 (same tokens: {'yes' if same else 'no, bf16 rounding'})"
            # the same LLM work on both sides, but for Vicuna's beams (ours computes the prompt once)
            llm = () if kind == "llama" and beams > 1 else ("llama",) if kind == "llama" else ("t5_encoder", "t5_decoder")
            results.append(timed_at_real_size(
                Result(name, what, target=1.0 if kind == "llama" and beams > 1 else None),
                lambda: ours.generate(**inputs, **settings), lambda: reference.generate(**inputs, **settings),
                (ours, reference), repeats, passes=2, shared=llm,
            ))
    return results


def bench_repeated_prompts(sizes, repeats, rounds=8):
    ours, reference = (m.to(torch.bfloat16) for m in build_pair("llama", sizes))  # as served
    generator = torch.Generator().manual_seed(3)
    prompts = [make_inputs(ours.config, 1, 16 + r, 0, sizes["vision"]["image_size"], generator, labels=False) for r in range(rounds)]
    pixel_values = prompts[0]["pixel_values"].to(torch.bfloat16)

    @torch.no_grad()
    def reuse():
        features = ours.get_vision_features(pixel_values)
        return [ours(**dict(p, pixel_values=None, vision_features=features)).logits[:, -1] for p in prompts]

    @torch.no_grad()
    def recompute():
        return [reference(**dict(p, pixel_values=pixel_values)).logits[:, -1] for p in prompts]

    for a, b in zip(reuse(), recompute()):
        torch.testing.assert_close(a.float(), b.float(), atol=0.1, rtol=2e-2)
    return [timed_at_real_size(Result("repeated prompts", f"Vicuna, {rounds} prompts about one image", target=1 / 1.5),
                               reuse, recompute, (ours, reference), max(2, repeats // 2), passes=2,
                               shared=("qformer", "llama"))]


def bench_preprocessing(repeats, count=32):
    folder = Path(tempfile.mkdtemp(prefix="bench-jpegs-"))
    try:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(count):
            base = np.linspace(0, 200, 640)[None, :, None] + np.linspace(0, 50, 480)[:, None, None]
            array = np.clip(base + rng.normal(0, 20, (480, 640, 3)), 0, 255).astype(np.uint8)
            paths.append(folder / f"{i}.jpg")
            Image.fromarray(array).save(paths[-1], quality=90)
        tokenizer, bert = tiny.train_llama_tokenizer(), tiny.train_bert_tokenizer()
        ours = InstructBlipProcessor(InstructBlipImageProcessor(), tokenizer, bert, num_query_tokens=32)
        reference = transformers.InstructBlipProcessor(
            image_processor=transformers.BlipImageProcessor(
                size={"height": 224, "width": 224}, resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                do_convert_rgb=True,
            ),
            tokenizer=tokenizer, qformer_tokenizer=bert, num_query_tokens=32,
        )
        prompts = ["Question: what is in the image? Short answer:"] * count

        def run(processor):
            return lambda: processor(images=[Image.open(p) for p in paths], text=prompts, return_tensors="pt")

        difference = (run(ours)()["pixel_values"] - run(reference)()["pixel_values"]).abs().max().item()
        assert difference * min(CLIP_STD) <= 1 / 255, f"pixels differ by {difference}"
        # no target: the processor is transformers' BLIP image processor now (the former <= 0.5 was our own)
        result = alternate(Result("preprocessing", f"{count} JPEGs 640x480 -> inputs"),
                           run(ours), run(reference), repeats)
        result.what += f" (max |diff| {difference:.1e})"
        return [result]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- report -----------------------------------------------------------------------------------------


def table(results) -> str:
    lines = [
        "| case | what is timed | ours | reference | ours / reference | spread | at real layer counts: ours, reference, ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        low, high = r.spread
        target = "-" if r.target is None else f"<= {r.target:.2f}"
        real = "-" if r.real is None else f"{r.real[0]:.1f} s, {r.real[1]:.1f} s, {r.real_ratio:.2f}"
        lines.append(
            f"| {r.case} | {r.what} | {statistics.median(r.ours) * 1000:.0f} ms | {statistics.median(r.reference) * 1000:.0f} ms "
            f"| {r.ratio:.2f} | {low:.2f}-{high:.2f} | {real} | {target} | {r.met} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, Python {platform.python_version()}"
    )


def cpu_ticks() -> tuple[int, int] | None:
    """(all, stolen) CPU ticks so far from /proc/stat (Linux): on a virtual machine, time the host gave
    to other guests. Its share during the run says how far to trust the timings."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


SECTION = "## Model at the paper's widths"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    # preprocessing first: it is data-loader work (worker processes, no model threads), and right after
    # heavy torch work the idle OpenMP threads still spin on the cores its thread pool needs
    parser.add_argument("--cases", default="preprocessing,train,cached,packing,ranking,generate,repeated")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: checks the suite runs")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    sizes, repeats = (SMOKE, 1) if args.smoke else (REAL, args.repeats)
    torch.manual_seed(0)
    cases = {
        "preprocessing": lambda: bench_preprocessing(repeats, count=4 if args.smoke else 32),
        "train": lambda: bench_train_step(sizes, repeats),
        "cached": lambda: bench_cached_features(sizes, repeats),
        "packing": lambda: bench_packing(sizes, repeats),
        "ranking": lambda: bench_ranking(sizes, repeats),
        "generate": lambda: bench_generate(sizes, repeats, new_tokens=3 if args.smoke else 10),
        "repeated": lambda: bench_repeated_prompts(sizes, repeats, rounds=3 if args.smoke else 8),
    }
    results = []
    ticks_before = cpu_ticks()
    for name in args.cases.split(","):
        started = time.perf_counter()
        results.extend(cases[name]())
        print(f"[{name}] {time.perf_counter() - started:.0f} s", file=sys.stderr)
    text = table(results)
    print(text)
    ticks_after = cpu_ticks()
    stolen = ""
    if ticks_before and ticks_after and ticks_after[0] > ticks_before[0]:
        share = (ticks_after[1] - ticks_before[1]) / (ticks_after[0] - ticks_before[0])
        stolen = f" (CPU time stolen by the host during the run: {share:.1%})"
    if not args.smoke or args.output != str(ROOT / "BENCHMARKS.md"):
        config = ("ViT-g width 2 x 1408 (224 px, patch 14, MLP 6144, 16 heads), Q-Former 4 x 768, Vicuna-7B width "
                  "2 x 4096 (vocab 32064) or FlanT5-XL width 2 + 2 x 2048 (vocab 32128), 32 queries, instruction 20 tokens")
        section = (
            f"{SECTION}\n\n`make bench` (`python benchmarks/bench_model.py`): ours against transformers' "
            "`InstructBlipForConditionalGeneration` / `InstructBlipProcessor` on the same weights and inputs "
            "(or against our own plain path, as each row says), timed alternately in one run "
            f"({repeats} pairs, fewer for ranking and repeated prompts; each pair back to back; the ratio is the median of the "
            "per-pair ratios, the spread their min-max; the times are the medians per side, at the built size). "
            "'At real layer counts' adds the layers the built model lacks (to ViT 39, Q-Former 12, Vicuna-7B 32, "
            "FlanT5-XL 24 + 24) at their cost measured with module hooks in the same run; targets apply to that ratio.\n\n"
            f"- machine: {machine()}{stolen}\n- config: {config}\n\n{text}\n"
        )
        write_section(args.output, section, first=True)
    return results


def sections(markdown: str) -> list[str]:
    """A markdown text cut before each `## ` heading (the first piece is what precedes them)."""
    return re.split(r"(?m)^(?=## )", markdown)


def write_section(path, section: str, first: bool = False):
    """Put `section` (a `## Title` block) in the markdown file at `path`, in place of the section with
    the same title (a rerun replaces its old figures), else at the end (or, with `first`, right after
    the file's title). Every other section is kept as it is."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    parts = [part.strip("\n") for part in sections(text) if part.strip("\n")]
    titles = [part.splitlines()[0] for part in parts]
    title = section.splitlines()[0]
    if title in titles:
        parts[titles.index(title)] = section.strip("\n")
    elif first:
        parts.insert(1 if parts and not parts[0].startswith("## ") else 0, section.strip("\n"))
    else:
        parts.append(section.strip("\n"))
    path.write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
