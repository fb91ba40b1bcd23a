"""Do the model's own speed-ups pay at the paper's widths? Each one on against off, in one run.

The speed-ups measured (issue #17; all four were judged at a tiny CPU size before):
  fused LayerNorm   `_NormThenProject`: the post-ViT LayerNorm and every Q-Former cross-attention
                    layer's key/value projections in one autograd function (no gradient w.r.t. the
                    normalised image features is formed)
  rows-only layer   `_LlamaDecoderLayerAtRows`: a Llama LLM's last layer computed at the supervised
                    positions only in training
  in-place GELU     the frozen ViT's MLP activation written over fc1's output
  prepacked decode  `cpu_decoding.py`: MKL-prepacked fp32 LLM weights in CPU `generate`

Widths are the paper's: EVA ViT-g (1408, 16 heads, MLP 6144, 224 px, 257 tokens), Q-Former 768 x 12
heads (cross-attention every 2nd layer, from 1408), FlanT5-XL (d_model 2048, 32 heads, d_ff 5120,
gated GELU) and Vicuna-7B (4096, 32 heads, MLP 11008, vocab 32064). Only a few layers of each are
built (2 ViT, 4 Q-Former, 2 Vicuna, 2 + 2 T5), so a step runs on a 2-core CPU; the training step uses
the GPU recipe: frozen towers in bf16, bf16 autocast, frozen towers in eval mode, no dropout.

How the whole-step gain at the real layer counts (ViT 39, Q-Former 12, FlanT5-XL 24 + 24, Vicuna-7B
32) is found: the step with the speed-up on and off is timed alternately (pairs back to back; median
and spread of the per-pair differences), and every layer's forward and backward time is measured
with module hooks in the same run. The real-size step is the measured step plus the missing layers
at their measured cost; a speed-up's saving is scaled by how often it acts at the real size (the
rows-only layer once per step, the fused LayerNorm once per cross-attention layer, the GELU once per
ViT layer), and divided by that real-size step.

The speed-ups live in the model code of `--revision` (a git revision of this repository; the code is
read from git, so the measurement can be repeated after they were removed from the working tree).
"""

import argparse
import contextlib
import copy
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import (  # noqa: E402
    REAL, REAL_LAYERS, ROOT, SMOKE, LayerClock, Result, alternate, machine, make_inputs, training_step, write_section,
)


# a commit whose model code still has all four speed-ups (issue #17 removed them after it)
REVISION = "7a9996aa677fc094d05c7416fd5e5dfa46c42a0d"
# the paper's 7B decoder-only LLM, for the prepacking budget: per layer q, k, v, o, gate, up, down ([out, in])
VICUNA_7B_MATRICES = [(4096, 4096)] * 4 + [(11008, 4096)] * 2 + [(4096, 11008)]
VICUNA_7B_HEAD = (32064, 4096)


def load_package(revision: str):
    """Import `modeling_instructblip/` as it is at `revision` (read from git), under its own name."""
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout

    sha = git("rev-parse", "--short", revision).strip()
    name = f"instructblip_at_{sha}"
    folder = Path(tempfile.mkdtemp(prefix="bench-speedups-")) / name
    folder.mkdir()
    for file in git("ls-tree", "--name-only", f"{revision}:modeling_instructblip").split():
        if file.endswith(".py"):
            (folder / file).write_text(git("show", f"{revision}:modeling_instructblip/{file}"))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(name), sha


def build(package, kind: str, sizes: dict, num_query_tokens: int = 32):
    text = dict(sizes[kind], model_type=kind)
    image_token = {"llama": 32001, "t5": 32100}[kind] if text["vocab_size"] > 32100 else text["vocab_size"] - 1
    qformer = dict(sizes["qformer"], vocab_size=sizes["qformer"].get("vocab_size", 30523))
    config = package.InstructBlipConfig(vision_config=sizes["vision"], qformer_config=qformer, text_config=text,
                                        num_query_tokens=num_query_tokens, image_token_index=image_token)
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    model = package.InstructBlipForConditionalGeneration(config)
    for module in model.modules():  # a deterministic step: the same work on both sides of a pair
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def gpu_recipe(model):
    """Frozen towers (the ViT's blocks, the LLM) in bf16 and eval mode; the trainable part in fp32."""
    model.freeze_for_instruction_tuning()
    for module in (model.vision_model.embeddings, model.vision_model.encoder, model.language_model):
        module.to(torch.bfloat16)
    return model.train()


@contextlib.contextmanager
def switched_off(model, speedup: str):
    """`model` with one speed-up turned off (on the instance; the class is untouched)."""
    saved = []
    if speedup == "fused LayerNorm":
        model._normed_image_features = lambda features: (model._trainable_vision_norm()(features), None)
    elif speedup == "rows-only layer":
        model._lm_last_layer_takes_rows = lambda kwargs: False
    elif speedup == "in-place GELU":
        for module in model.vision_model.modules():
            if hasattr(module, "exact_gelu"):
                saved.append((module, module.exact_gelu))
                module.exact_gelu = False
    try:
        yield model
    finally:
        model.__dict__.pop("_normed_image_features", None)
        model.__dict__.pop("_lm_last_layer_takes_rows", None)
        for module, value in saved:
            module.exact_gelu = value


def with_off(fn, model, speedup):
    def run():
        with switched_off(model, speedup):
            return fn()
    return run


# ---- the training step ----------------------------------------------------------------------------------


def trainable_part(model, inputs, features):
    """What the fused LayerNorm changes, alone: post-ViT LayerNorm + Q-Former + projection from stored
    vision features, forward and backward (a fixed random gradient on the visual tokens)."""
    qformer = {k: inputs[k] for k in ("qformer_input_ids", "qformer_attention_mask")}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        shape = model.get_image_features(vision_features=features, **qformer).language_model_inputs.shape
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(5))

    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            visual = model.get_image_features(vision_features=features, **qformer).language_model_inputs
        visual.float().backward(grad)
    return run


def bench_training(package, sizes, repeats, workloads, batch):
    """Per workload, the step's real-size estimate and each speed-up's saving scaled to the real size.
    The fused LayerNorm and the GELU do not depend on the LLM: measured once, on their own part."""
    rows, parts = [], {}
    for kind, answer_len, label in workloads:
        model = gpu_recipe(build(package, kind, sizes))
        inputs = make_inputs(model.config, batch, 20, answer_len, sizes["vision"]["image_size"], torch.Generator().manual_seed(0))
        step = training_step(model, inputs)
        plain = with_off(with_off(step, model, "rows-only layer"), model, "fused LayerNorm")()
        torch.testing.assert_close(step(), plain, rtol=2e-2, atol=1e-2)
        measured = {}
        if kind == "llama":  # acts once per step, at any layer count
            measured["rows-only layer"] = (alternate(Result("", ""), step, with_off(step, model, "rows-only layer"), repeats), 1.0)
            step_seconds = statistics.median(measured["rows-only layer"][0].ours)
        else:
            step_seconds = statistics.median(alternate(Result("", ""), step, step, max(2, repeats // 2)).ours)
        if not parts:
            with torch.no_grad():
                features = model.get_vision_features(inputs["pixel_values"])
            part = trainable_part(model, inputs, features)
            cross = sum(layer.has_cross_attention for layer in model.qformer.encoder.layer)
            real_cross = REAL_LAYERS["qformer"] // model.config.qformer_config.cross_attention_frequency
            parts["fused LayerNorm"] = (alternate(Result("", ""), part, with_off(part, model, "fused LayerNorm"), repeats),
                                        real_cross / cross)
            embedded = model.vision_model.embeddings(inputs["pixel_values"].to(torch.bfloat16)).detach()
            vit = torch.no_grad()(lambda: model.vision_model.encoder(embedded))
            parts["in-place GELU"] = (alternate(Result("", ""), vit, with_off(vit, model, "in-place GELU"), repeats),
                                      REAL_LAYERS["vision"] / sizes["vision"]["num_hidden_layers"])
        measured.update(parts)
        # the layers' cost with hooks on (the rows-only path steps aside for a hooked layer: the per-layer
        # cost is the first layers' mean either way, and only the built step's time comes from the last)
        clock = LayerClock(model).run(step, passes=2)
        real_step = clock.at_real_size(step_seconds)
        llm = "Vicuna-7B" if kind == "llama" else "FlanT5-XL"
        for speedup, (result, scale) in measured.items():
            saved = [off - on for on, off in zip(result.ours, result.reference)]
            rows.append(dict(
                workload=f"{llm}, {label}", speedup=speedup, ratio=result.ratio, spread=result.spread,
                saved=statistics.median(saved), saved_spread=(min(saved), max(saved)), scale=scale,
                real_step=real_step, gain=statistics.median(saved) * scale / (real_step + statistics.median(saved) * scale),
                per_layer={group: clock.per_layer(group) for group in clock.groups},
            ))
        del model
    return rows


# ---- prepacked CPU decoding ----------------------------------------------------------------------------------


def bench_prepacked_generate(package, sizes, repeats, new_tokens):
    """CPU `generate`, 5 beams, batch 1: prepacked (the default 1 GiB budget, and no budget limit)
    against plain, fp32 and bf16 weights."""
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        model = build(package, "llama", sizes).eval().to(dtype)
        inputs = make_inputs(model.config, 1, 20, 0, sizes["vision"]["image_size"], torch.Generator().manual_seed(1), labels=False)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        settings = dict(do_sample=False, num_beams=5, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        # three models sharing every weight; each keeps its own packs, so a variant's packs survive the others' calls
        plain = copy.copy(model)
        plain.decode_prepack_max_bytes = 0
        unlimited = copy.copy(model)
        unlimited.decode_prepack_max_bytes = 1 << 40
        expected = plain.generate(**inputs, **settings)
        for variant, packed in (("default budget (1 GiB)", model), ("no budget limit", unlimited)):
            assert torch.equal(packed.generate(**inputs, **settings), expected), variant
            timed = alternate(Result("", ""), lambda p=packed: p.generate(**inputs, **settings),
                              lambda: plain.generate(**inputs, **settings), repeats)
            stats = packed.decode_prepack_stats()
            linears = [m for m in packed.language_model.modules() if isinstance(m, torch.nn.Linear)]
            results.append(dict(
                dtype=str(dtype).removeprefix("torch."), variant=variant, on=statistics.median(timed.ours),
                off=statistics.median(timed.reference), ratio=timed.ratio, spread=timed.spread,
                packed=f"{stats.packed_matrices} of {len(linears)}", packed_mib=stats.packed_bytes / 2**20,
            ))
        del model, plain, unlimited
    return results


def bench_prepack_budget(package, repeats, rows=5, budget=1 << 30):
    """Vicuna-7B's fp32 decoding step at 5 rows (5 beams): each matrix shape's product plain and packed
    (weights streaming from memory, as in a step), then which matrices the default budget packs (in the
    order a step uses them, as `cpu_decoding` fills it) and the step's matrix time with and without."""
    decoding = importlib.import_module(package.__name__ + ".cpu_decoding")
    shapes = sorted(set(VICUNA_7B_MATRICES) | {VICUNA_7B_HEAD})
    timing = {}
    for out_features, in_features in shapes:
        # several copies: one product's weight is not in the cache from the last one
        weights = [torch.randn(out_features, in_features) for _ in range(max(1, (256 << 20) // (out_features * in_features * 4)))]
        packs = [torch.ops.mkl._mkl_reorder_linear_weight(w, rows) for w in weights]
        x = torch.randn(rows, in_features)
        bf16 = [w.to(torch.bfloat16) for w in weights]
        xb = x.to(torch.bfloat16)
        count = len(weights)

        def plain():
            for w in weights:
                F.linear(x, w)

        def packed():
            for w, p in zip(weights, packs):
                torch.ops.mkl._mkl_linear(x, p, w, None, rows)

        def half():
            for w in bf16:
                F.linear(xb, w)

        packing = alternate(Result("", ""), packed, plain, repeats * 3)
        halving = alternate(Result("", ""), half, plain, repeats)
        timing[(out_features, in_features)] = dict(
            plain=statistics.median(packing.reference) / count, packed=statistics.median(packing.ours) / count,
            bf16=statistics.median(halving.ours) / count, pack_bytes=packs[0].nbytes, bytes=weights[0].nbytes,
        )
        del weights, packs, bf16
    order = VICUNA_7B_MATRICES * REAL_LAYERS["llama"] + [VICUNA_7B_HEAD]
    held, packed_flags = 0, []
    for shape in order:  # cpu_decoding's rule: a matrix is packed if it fits what is left of the budget
        size = timing[shape]["pack_bytes"]
        fits = timing[shape]["bytes"] >= decoding.MIN_WEIGHT_BYTES and held + size <= budget
        held += size if fits else 0
        packed_flags.append(fits)
    plain_step = sum(timing[s]["plain"] for s in order)
    default_step = sum(timing[s]["packed" if p else "plain"] for s, p in zip(order, packed_flags))
    all_packed_step = sum(timing[s]["packed"] for s in order)
    bf16_step = sum(timing[s]["bf16"] for s in order)
    return dict(
        timing=timing, matrices=len(order), packed=sum(packed_flags), weight_bytes=sum(timing[s]["bytes"] for s in order),
        packed_weight_bytes=sum(timing[s]["bytes"] for s, p in zip(order, packed_flags) if p),
        all_pack_bytes=sum(timing[s]["pack_bytes"] for s in order), plain_step=plain_step,
        default_step=default_step, all_packed_step=all_packed_step, bf16_step=bf16_step, budget=budget, rows=rows,
    )


# ---- report -----------------------------------------------------------------------------------------------------


def report(training, generation, budget, sha, repeats, batch, smoke) -> str:
    lines = [
        "## Speed-ups at the paper's widths",
        "",
        f"`python benchmarks/bench_speedups.py --revision {sha}` (the model code at commit {sha}, which has all four). "
        f"Training step: batch {batch}, instruction 20 tokens, 32 queries, answers 10 tokens (short VQA) or 100 "
        "(LLaVA-like); ViT-g 2 x 1408, Q-Former 4 x 768, Vicuna-7B width 2 x 4096 or FlanT5-XL width 2 + 2 x 2048; "
        "frozen towers in bf16 under bf16 autocast. Each speed-up on and off, timed alternately "
        f"({repeats} pairs); 'saved' is the median per-pair difference at the built size, scaled by how often the "
        "speed-up acts at the real size; the real-size step adds the missing layers (ViT 39, Q-Former 12, "
        "Vicuna 32, FlanT5-XL 24 + 24) at their measured per-layer cost (forward + backward, module hooks).",
        "",
        f"- machine: {machine()}",
        "",
        "| workload | speed-up | built size: on / off (spread) | saved per step at built size | x real-size count "
        "| est. real-size step | whole-step gain at real size |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in training:
        low, high = r["saved_spread"]
        lines.append(
            f"| {r['workload']} | {r['speedup']} | {r['ratio']:.3f} ({r['spread'][0]:.2f}-{r['spread'][1]:.2f}) | {r['saved'] * 1000:.0f} ms "
            f"({low * 1000:.0f} to {high * 1000:.0f}) | {r['scale']:.1f} | {r['real_step']:.1f} s | {100 * r['gain']:.2f} % |"
        )
    lines += ["", "Per-layer cost measured in the same run (forward + backward where it trains through; ms):", "",
              "| workload | ViT layer (no grad) | Q-Former layer | LLM layer(s) | ViT share of the real-size step |",
              "|---|---|---|---|---|"]
    seen = set()
    for r in training:
        if r["workload"] in seen:
            continue
        seen.add(r["workload"])
        p = r["per_layer"]
        llm = (f"{p['llama'] * 1000:.0f}" if "llama" in p
               else f"encoder {p['t5_encoder'] * 1000:.0f}, decoder {p['t5_decoder'] * 1000:.0f}")
        lines.append(f"| {r['workload']} | {p['vision'] * 1000:.0f} | {p['qformer'] * 1000:.0f} | {llm} "
                     f"| {100 * REAL_LAYERS['vision'] * p['vision'] / r['real_step']:.0f} % |")
    lines += ["", "Prepacked CPU decoding (`cpu_decoding.py`), Vicuna-7B width with 2 layers, `generate` 5 beams, "
              "batch 1, same sequences checked:", "",
              "| weights | prepack budget | prepacked / plain (spread) | prepacked | plain | matrices packed | packed MiB |",
              "|---|---|---|---|---|---|---|"]
    for g in generation:
        lines.append(f"| {g['dtype']} | {g['variant']} | {g['ratio']:.2f} ({g['spread'][0]:.2f}-{g['spread'][1]:.2f}) | {g['on']:.2f} s "
                     f"| {g['off']:.2f} s | {g['packed']} | {g['packed_mib']:.0f} |")
    if budget:
        b = budget
        lines += ["", f"At Vicuna-7B (fp32, {b['rows']} rows a product, per-shape products timed plain and packed with "
                  "weights streaming from memory):", "",
                  "| matrix [out, in] | plain | packed | packed / plain | bf16 weights (plain) | packed copy / matrix |",
                  "|---|---|---|---|---|---|"]
        for shape, t in b["timing"].items():
            lines.append(f"| {list(shape)} | {t['plain'] * 1000:.1f} ms | {t['packed'] * 1000:.1f} ms | "
                         f"{t['packed'] / t['plain']:.2f} | {t['bf16'] * 1000:.1f} ms | {t['pack_bytes'] / t['bytes']:.2f} |")
        lines += [
            "",
            f"- the default budget ({b['budget'] >> 20} MiB) packs {b['packed']} of {b['matrices']} weight matrices "
            f"({100 * b['packed_weight_bytes'] / b['weight_bytes']:.1f} % of {b['weight_bytes'] / 2**30:.1f} GiB of weights); "
            f"a decoding step's matrix time: {b['default_step'] / b['plain_step']:.3f} of plain",
            f"- everything packed: {b['all_packed_step'] / b['plain_step']:.2f} of plain, for "
            f"{b['all_pack_bytes'] / 2**30:.1f} GiB of packed copies on top of the weights",
            f"- bf16 weights, no packing: {b['bf16_step'] / b['plain_step']:.2f} of plain fp32 (half the memory)",
        ]
    if smoke:
        lines.insert(1, "\n(smoke run at tiny sizes: the figures mean nothing)")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revision", default=REVISION, help="git revision whose model code is measured")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--new_tokens", type=int, default=10)
    parser.add_argument("--cases", default="training,generate,budget")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: checks the script runs")
    parser.add_argument("--output", default=None, help="write the section into this markdown file")
    args = parser.parse_args(argv)
    package, sha = load_package(args.revision)
    sizes, repeats = (SMOKE, 1) if args.smoke else (REAL, args.repeats)
    cases = args.cases.split(",")
    workloads = [("llama", 10, "answer 10"), ("llama", 100, "answer 100"), ("t5", 10, "answer 10")]
    training = generation = budget = None
    started = time.perf_counter()
    if "training" in cases:
        training = bench_training(package, sizes, repeats, workloads, args.batch)
        print(f"[training] {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if "generate" in cases:
        generation = bench_prepacked_generate(package, sizes, repeats, 2 if args.smoke else args.new_tokens)
        print(f"[generate] {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if "budget" in cases and not args.smoke:
        budget = bench_prepack_budget(package, repeats)
        print(f"[budget] {time.perf_counter() - started:.0f} s", file=sys.stderr)
    text = report(training or [], generation or [], budget, sha, repeats, args.batch, args.smoke)
    print(text)
    if args.output:
        write_section(args.output, text)
    return dict(training=training, generation=generation, budget=budget)


if __name__ == "__main__":
    main()
