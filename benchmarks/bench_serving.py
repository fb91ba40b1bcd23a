"""Benchmark: serving at real size on this CPU. ViT-g/14 + Q-Former + FlanT5-XL (about 4 B parameters,
random weights, nothing downloaded): latency per answer and peak memory for transformers'
`InstructBlipForConditionalGeneration` in fp32 and bf16 against ours in fp32, bf16, int8 weight-only
(torchao) and 4-bit NF4 (bitsandbytes' CPU backend), both quantized while loading and as saved
quantized checkpoints, one image, the paper's short-answer and captioning decoding (5 beams; LAVIS's
eval configs, evaluation/tasks.py).

    python benchmarks/bench_serving.py [--repeats 2] [--output BENCHMARKS.md]
    python benchmarks/bench_serving.py --vision-layers 2 --text-layers 2 --repeats 1   # a quick check

Each variant runs in its own process (its peak RSS is its own; an fp32 model is about 16 GB, so two
never coexist), variants alternate over repeats (reversed order every other repeat), and the ratios
are against transformers' fp32 model measured in the same repeat: the table gives the median and the
spread (min-max) over repeats. The weights are written once, deterministically, as an fp32 and a
bf16 safetensors folder under --weights (about 24 GB of disk) and loaded memory-mapped, in the
dtype they were saved in, FlanT5's separate output layer included. Answers are compared with
transformers' fp32 answers, token for token (random weights: the answers are nonsense text, but the
same nonsense is what a faithful port gives, and lower precision may change it).
Our model loads with `match_lavis=False` (transformers' post-ViT LayerNorm eps), so that fp32 answers
are comparable with transformers' port; the paper's decoding settings are the same for both.

The LLM's prompt comes from a tokenizer trained here (the real FlanT5 one is not downloadable):
token ids fall inside FlanT5's 32128-word vocabulary and the prompts are about as long.

Must run under `flock /tmp/heavy.lock` on the shared machine (it uses all of its 24 GB at times).
"""

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

SECTION = "## Serving at real size"
PROMPTS = {  # task (evaluation/tasks.py, for its decoding settings) -> the instruction
    "short answer": ("gqa", "Question: what color is the shape in the picture? Short answer:"),
    "caption": ("nocaps", "A short image description:"),
}
# name -> (class, weights dtype, quantization)
VARIANTS = {
    "transformers fp32": ("transformers", "fp32", None),
    "transformers bf16": ("transformers", "bf16", None),
    "ours fp32": ("ours", "fp32", None),
    "ours bf16": ("ours", "bf16", None),
    "ours int8 (torchao, LLM; rest bf16)": ("ours", "bf16", "int8"),
    "ours 4-bit NF4 (bitsandbytes CPU, LLM; rest bf16)": ("ours", "bf16", "nf4"),
    # the quantized models saved with save_pretrained (after answering, as a Space would) and loaded as
    # they are: what a published int8 / NF4 checkpoint gives
    "ours int8, saved int8 checkpoint": ("ours", "int8", None),
    "ours NF4, saved NF4 checkpoint": ("ours", "nf4", None),
    # opt-in: the vision tower int8 too (a skip list of the user's own), for the smallest CPU memory
    "ours int8 (torchao, LLM and ViT; rest bf16)": ("ours", "bf16", "int8-vision"),
    "ours int8 LLM and ViT, saved checkpoint": ("ours", "int8-vision", None),
}
SAVED = {  # saved checkpoint -> the variant quantized while loading that it is saved from
    "int8": "ours int8 (torchao, LLM; rest bf16)",
    "nf4": "ours 4-bit NF4 (bitsandbytes CPU, LLM; rest bf16)",
    "int8-vision": "ours int8 (torchao, LLM and ViT; rest bf16)",
}
FLAN_T5_XL = dict(
    d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24, vocab_size=32128,
    feed_forward_proj="gated-gelu", dense_act_fn="gelu", tie_word_embeddings=False, model_type="t5",
    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
)
VICUNA_7B = dict(  # Salesforce/instructblip-vicuna-7b's text_config (LLaMA-7B sizes; vocabulary with [PAD])
    model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=32001, max_position_embeddings=2048, rms_norm_eps=1e-6,
    tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)
# --llm -> its text config, the config keys of its depth, the weight dtypes written, the reference model.
# Vicuna-7B in fp32 (28 GB) does not fit this machine's 24 GB: its reference is transformers' bf16 model
LLMS = {
    "flan-t5-xl": dict(name="FlanT5-XL", text=FLAN_T5_XL, depth=("num_layers", "num_decoder_layers"), encoder_decoder=True,
                       dtypes=("fp32", "bf16"), reference="transformers fp32", folder="", section=""),
    "vicuna-7b": dict(name="Vicuna-7B", text=VICUNA_7B, depth=("num_hidden_layers",), encoder_decoder=False,
                      dtypes=("bf16",), reference="transformers bf16", folder="vicuna-7b-", section=", Vicuna-7B"),
}
SHARD_BYTES = 2 << 30
# what the weight files hold besides the config; a change rewrites them. FlanT5's output layer is its own
# matrix (T5 v1.1): with it tied to the input embedding, random weights only ever repeat the last token
LAYOUT = "untied lm_head"


# -- the weights -----------------------------------------------------------------------------------


def _processor(llm: str):
    from tokenizers import AddedToken

    from modeling_instructblip import InstructBlipImageProcessor, InstructBlipProcessor, tiny

    encoder_decoder = LLMS[llm]["encoder_decoder"]
    tokenizer = tiny.train_t5_tokenizer() if encoder_decoder else tiny.train_llama_tokenizer()
    tokenizer.add_tokens([AddedToken("<image>", normalized=False, special=True)], special_tokens=True)
    return InstructBlipProcessor(
        image_processor=InstructBlipImageProcessor(size=224),
        tokenizer=tokenizer,
        qformer_tokenizer=tiny.train_bert_tokenizer(),
        num_query_tokens=32,
        is_encoder_decoder=encoder_decoder,
    )


def reference_config(llm: str, vision_layers: int, text_layers: int):
    """transformers' InstructBlipConfig for InstructBLIP (FlanT5-XL or Vicuna-7B), optionally with fewer layers."""
    from transformers import InstructBlipConfig

    image_token = _processor(llm).tokenizer.convert_tokens_to_ids("<image>")
    return InstructBlipConfig(
        vision_config=dict(num_hidden_layers=vision_layers),  # ViT-g/14 defaults otherwise
        qformer_config=dict(),  # bert-base sizes, cross-attention every 2nd layer, from 1408
        text_config=dict(LLMS[llm]["text"], **dict.fromkeys(LLMS[llm]["depth"], text_layers)),
        num_query_tokens=32,
        image_token_index=image_token,
    )


def weights_folder(args) -> Path:
    return Path(args.weights) / f"{LLMS[args.llm]['folder']}v{args.vision_layers}-t{args.text_layers}"


def _fill(name: str, shape) -> torch.Tensor:
    """Deterministic random values for one tensor (seeded by its name): norms near 1, biases and
    embeddings of the vision/Q-Former towers small, matrices scaled by 1/sqrt(fan in)."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=generator)
    lowered = name.lower()
    if len(shape) == 1 and ("norm" in lowered) and name.endswith("weight"):
        return values.mul_(0.02).add_(1.0)
    if name.endswith("bias") or "position" in lowered or "class_embedding" in lowered or name == "query_tokens":
        return values.mul_(0.02)
    if name.endswith("shared.weight") or "word_embeddings" in lowered:
        return values
    return values.mul_(shape[-1] ** -0.5)


def write_weights(folder: Path, config, dtypes=("fp32", "bf16")):
    """transformers' model folder (config + sharded safetensors) in each of `dtypes` under `folder`."""
    from safetensors.torch import save_file
    from transformers import InstructBlipForConditionalGeneration as Reference

    done = folder / "done.json"
    key = {"config": config.to_dict(), "layout": LAYOUT, "dtypes": list(dtypes)}
    if done.exists() and json.loads(done.read_text()) == json.loads(json.dumps(key)):
        return
    for kind in SAVED:  # quantized checkpoints made from the old weights
        shutil.rmtree(folder / kind, ignore_errors=True)
    with torch.device("meta"):
        skeleton = Reference(config)
    tensors = dict(skeleton.named_parameters())
    for name, buffer in skeleton.named_buffers():
        if name in skeleton.state_dict():
            tensors[name] = buffer
    # transformers builds every T5 tied (named_parameters lists `shared` only); FlanT5's checkpoints hold
    # a separate `lm_head`, and transformers' loader unties a model whose file has both
    tensors["language_model.lm_head.weight"] = skeleton.language_model.lm_head.weight
    casts = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for dtype in dtypes:
        (folder / dtype).mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder / dtype)
    shard, shard_bytes, weight_map, number, total = {}, 0, {dtype: {} for dtype in dtypes}, 0, 0

    def flush():
        nonlocal shard, shard_bytes, number
        if not shard:
            return
        number += 1
        for dtype in dtypes:
            cast = casts[dtype]
            filename = f"model-{number:05d}.safetensors"
            save_file({k: v.to(cast) if v.is_floating_point() else v for k, v in shard.items()},
                      str(folder / dtype / filename), metadata={"format": "pt"})
            weight_map[dtype].update(dict.fromkeys(shard, filename))
        shard, shard_bytes = {}, 0

    for name in sorted(tensors):
        tensor = tensors[name]
        if "position_ids" in name:
            value = torch.arange(tensor.shape[-1]).expand(tensor.shape).contiguous()
        else:
            value = _fill(name, tuple(tensor.shape))
        shard[name] = value
        shard_bytes += value.numel() * 4
        total += value.numel()
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    for dtype in dtypes:
        index = {"metadata": {"total_parameters": total}, "weight_map": weight_map[dtype]}
        (folder / dtype / "model.safetensors.index.json").write_text(json.dumps(index))
    done.write_text(json.dumps(key))


# -- one variant, in its own process ----------------------------------------------------------------


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _PeakAnonymous:
    """The process's peak anonymous memory (RssAnon, sampled every 20 ms): what it holds and the kernel
    cannot drop. VmHWM also counts the mapped safetensors pages, which the kernel may reclaim (and a
    model whose weights are those pages reads them back from disk)."""

    def __init__(self):
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib("RssAnon"))
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_mib("RssAnon"))


def _load(variant: str, weights: Path):
    kind, dtype, quantization = VARIANTS[variant]
    torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    folder = weights / dtype
    if kind == "transformers":
        from transformers import InstructBlipForConditionalGeneration as Reference

        return Reference.from_pretrained(folder, dtype=torch_dtype).eval()
    from modeling_instructblip import InstructBlipForConditionalGeneration

    kwargs = {}
    if quantization in ("int8", "int8-vision"):
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        skip = InstructBlipForConditionalGeneration._quantization_skip_modules
        skip = None if quantization == "int8" else [name for name in skip if name != "vision_model"]
        kwargs["quantization_config"] = TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=skip)
    elif quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
        )
    return InstructBlipForConditionalGeneration.from_pretrained(folder, dtype=torch_dtype, match_lavis=False, **kwargs).eval()


def _inputs(processor, picture, instruction: str, dtype):
    inputs = processor(images=[picture], text=[instruction], return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    return inputs


def save_quantized(kind: str, weights: Path, image: str, llm: str):
    """Quantize the bf16 weights while loading, answer once (bitsandbytes repacks its CPU weights at the
    first call; a model saved after serving must reload the same), save the folder `weights / kind`."""
    from PIL import Image

    model = _load(SAVED[kind], weights)
    with torch.inference_mode():
        model.generate(**_inputs(_processor(llm), Image.open(image).convert("RGB"), PROMPTS["short answer"][1], torch.bfloat16),
                       do_sample=False, num_beams=1, max_new_tokens=2)
    model.save_pretrained(weights / kind)


def worker(variant: str, weights: Path, image: str, llm: str) -> dict:
    from PIL import Image

    from evaluation.tasks import TASKS, generate_kwargs

    torch.set_num_threads(os.cpu_count() or 1)
    anonymous = _PeakAnonymous()
    started = time.perf_counter()
    model = _load(variant, weights)
    result = {"variant": variant, "load_s": time.perf_counter() - started, "rss_after_load_mib": _rss_mib("VmRSS"),
              "anon_after_load_mib": _rss_mib("RssAnon")}
    processor = _processor(llm)
    picture = Image.open(image).convert("RGB")
    dtype = next(model.parameters()).dtype if VARIANTS[variant][2] is None else torch.bfloat16
    result["latency_s"], result["answers"], result["new_tokens"] = {}, {}, {}
    # untimed: the first call pays one-time costs (kernel set-up, bitsandbytes repacking its CPU weights)
    with torch.inference_mode():
        model.generate(**_inputs(processor, picture, PROMPTS["short answer"][1], dtype), do_sample=False, num_beams=1, max_new_tokens=2)
    for prompt, (task, instruction) in PROMPTS.items():
        inputs = _inputs(processor, picture, instruction, dtype)
        settings = generate_kwargs(TASKS[task], LLMS[llm]["encoder_decoder"])
        times = []
        for _ in range(2 if prompt == "short answer" else 1):  # short answers twice: an in-process spread
            started = time.perf_counter()
            with torch.inference_mode():
                answer = model.generate(**inputs, **settings)
            times.append(time.perf_counter() - started)
        result["latency_s"][prompt] = min(times)
        result.setdefault("all_latencies_s", {})[prompt] = times
        # the generated tokens only: after T5's decoder start token, after a decoder-only LLM's prompt
        start = 1 if LLMS[llm]["encoder_decoder"] else inputs["input_ids"].shape[1]
        result["answers"][prompt] = answer[0, start:].tolist()
        result["new_tokens"][prompt] = int(answer.shape[1] - start)
        with torch.inference_mode():  # greedy, for the agreement column
            greedy = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=10)
        result["answers"][prompt + " greedy"] = greedy[0, start:].tolist()
    result["peak_rss_mib"] = _rss_mib("VmHWM")  # load and answers, mapped weight files included
    result["peak_anon_mib"] = anonymous.stop()
    return result


# -- the comparison ---------------------------------------------------------------------------------


def run(args) -> list[dict]:
    weights, llm = weights_folder(args), LLMS[args.llm]
    started = time.perf_counter()
    # in a process of its own, which gives its memory back when it ends
    command = [sys.executable, __file__, "--write-weights", "--llm", args.llm, "--weights", args.weights,
               "--vision-layers", str(args.vision_layers), "--text-layers", str(args.text_layers)]
    subprocess.run(command, check=True, timeout=args.timeout)
    print(f"weights ready in {time.perf_counter() - started:.0f} s under {weights}", flush=True)
    variants = [v for v in VARIANTS if v not in args.skip and (VARIANTS[v][1] in llm["dtypes"] or VARIANTS[v][1] in SAVED)]
    for kind in SAVED:
        if any(VARIANTS[v][1] == kind for v in variants) and not (weights / kind / "config.json").exists():
            # the saved checkpoint, made once from the bf16 weights in a process of its own
            command = [sys.executable, __file__, "--save", kind, "--weights", str(weights), "--image", args.image, "--llm", args.llm]
            subprocess.run(command, check=True, timeout=args.timeout)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    runs = []
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            command = [sys.executable, __file__, "--worker", variant, "--weights", str(weights), "--image", args.image,
                       "--run-id", run_id, "--repeat", str(repeat), "--llm", args.llm]
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                print(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-3000:]}", flush=True)
                runs.append({"variant": variant, "repeat": repeat, "failed": done.stderr.strip().splitlines()[-1:]})
                continue
            result = json.loads(lines[-1])
            runs.append(result)
            print(f"[{repeat}] {variant}: load {result['load_s']:.0f} s, "
                  + ", ".join(f"{p} {s:.1f} s" for p, s in result["latency_s"].items())
                  + f", peak {result['peak_rss_mib'] / 1024:.1f} GiB", flush=True)
    return runs


def _spread(values) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    return f"{median:.2f}" if len(values) == 1 else f"{median:.2f} ({min(values):.2f}–{max(values):.2f})"


def _decoding(task: str, llm: dict) -> str:
    """The `generate` keywords the benchmark passes for `task` (evaluation/tasks.py), as code."""
    from evaluation.tasks import TASKS, generate_kwargs

    settings = generate_kwargs(TASKS[task], llm["encoder_decoder"])
    return "`" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items() if v is not None) + "`"


# the variant each one should answer exactly like: the same model in transformers' port at the same precision,
# and a saved quantized checkpoint the model it was saved from
TWINS = {"ours fp32": "transformers fp32", "ours bf16": "transformers bf16", **{
    variant: SAVED[kind] for variant, (_, kind, _) in VARIANTS.items() if kind in SAVED}}


def _agreement(paired: list[tuple[dict, dict]]) -> str:
    """How many answers (per prompt and repeat) equal the paired run's, for beam search; greedy."""
    agree = []
    for suffix in ("", " greedy"):
        pairs = [(_generated(r, p + suffix), _generated(other, p + suffix)) for r, other in paired for p in PROMPTS]
        same = sum(answer == expected for answer, expected in pairs)
        prefix = statistics.mean(_common_prefix(answer, expected) for answer, expected in pairs) if pairs else 0
        agree.append(f"{same}/{len(pairs)}" + ("" if same == len(pairs) else f" (shared prefix {prefix:.0%})"))
    return "; ".join(agree)


def _generated(run: dict, key: str) -> list[int]:
    """A run's generated tokens (runs logged before 2026-12-07 kept T5's decoder start token in front)."""
    return run["answers"][key] if "llm" in run else run["answers"][key][1:]


def _common_prefix(answer: list[int], expected: list[int]) -> float:
    """The share of the reference's tokens that an answer repeats before it first differs."""
    same = next((i for i, (a, b) in enumerate(zip(answer, expected)) if a != b), min(len(answer), len(expected)))
    return same / max(len(expected), 1)


def _pair(run: dict) -> tuple:
    """Which reference run a run is compared with: the one of the same invocation and repeat."""
    return run.get("run_id"), run.get("repeat", 0)


def table(runs: list[dict], args) -> str:
    ok = [r for r in runs if "failed" not in r]
    reference_name = LLMS[args.llm]["reference"]
    reference = {_pair(r): r for r in ok if r["variant"] == reference_name}
    lines = [
        "| model | " + " | ".join(f"{p} s/answer" for p in PROMPTS) + " | "
        + " | ".join(f"{p} × ref" for p in PROMPTS)
        + " | peak RSS GiB | × ref | peak anonymous GiB | × ref | same answers as ref (beam; greedy) "
        "| same answers as its twin (beam; greedy) |",
        "|---" * (7 + 2 * len(PROMPTS)) + "|",
    ]
    for variant in VARIANTS:
        mine = [r for r in ok if r["variant"] == variant]
        if not mine:
            failed = [r for r in runs if r["variant"] == variant]
            if failed:
                lines.append(f"| {variant} | failed: {' '.join(failed[0]['failed'])[:120]} |" + " |" * (5 + 2 * len(PROMPTS)))
            continue
        cells = [variant]
        cells += [_spread([t for r in mine for t in r.get("all_latencies_s", {}).get(p, [r["latency_s"][p]])]) for p in PROMPTS]
        paired = [(r, reference[_pair(r)]) for r in mine if _pair(r) in reference]
        cells += [_spread([r["latency_s"][p] / ref["latency_s"][p] for r, ref in paired]) for p in PROMPTS]
        for key in ("peak_rss_mib", "peak_anon_mib"):
            cells.append(_spread([r[key] / 1024 for r in mine]))
            cells.append(_spread([r[key] / ref[key] for r, ref in paired]))
        cells.append(_agreement(paired))
        twin = {_pair(r): r for r in ok if r["variant"] == TWINS.get(variant)}
        cells.append(f"{_agreement([(r, twin[_pair(r)]) for r in mine if _pair(r) in twin])} ({TWINS[variant]})"
                     if twin else "–")
        lines.append("| " + " | ".join(cells) + " |")
    tokens = {p: sorted({r["new_tokens"][p] for r in ok}) for p in PROMPTS}
    llm = LLMS[args.llm]
    depth = "+".join([str(args.text_layers)] * len(llm["depth"]))
    real = (args.vision_layers, args.text_layers) == (39, llm["text"][llm["depth"][0]])
    size = f"ViT-g/14 (39 blocks) + Q-Former + {llm['name']} ({depth} layers)" if real \
        else f"reduced: {args.vision_layers} ViT blocks, {llm['name']} widths with {depth} layers"
    reference_label = "transformers' " + reference_name.split()[-1] + " model"
    return "\n".join([
        SECTION + llm["section"],
        "",
        f"`python benchmarks/bench_serving.py{' --llm ' + args.llm if args.llm != 'flan-t5-xl' else ''} --repeats {args.repeats}` "
        f"(`make bench`), {size}, random weights, one 224 px image, {os.cpu_count()} CPU threads, torch {torch.__version__}. "
        f"Each model in its own process, alternating over repeats; median (min–max) over repeats; ratios against "
        f"{reference_label} in the same repeat. Latency is one `generate` call (after an untimed warm-up call) with the "
        "paper's decoding (LAVIS's eval configs; " + "; ".join(f"{p}: {_decoding(task, llm)}" for p, (task, _) in PROMPTS.items())
        + "), new tokens per answer: " + ", ".join(f"{p} {'/'.join(map(str, t))}" for p, t in tokens.items())
        + ". Latency cells: median (min–max) of every timed call (short answers are timed twice per process); ratios "
        "from each process's fastest call. Peak RSS is the process's high-water mark, loading included, which counts "
        "the memory-mapped safetensors pages it touched; peak anonymous memory (RssAnon, sampled every 20 ms) is what "
        "it holds that the kernel cannot drop (an fp32 or bf16 model's weights *are* mapped file pages, so for those "
        f"the RSS is the figure to plan with). Answers are compared token for token with {reference_label}'s answers, "
        "per prompt and repeat, for the timed beam search and for greedy decoding (10 tokens); where some differ, the "
        "share of the reference's tokens repeated before the first difference is given. The random weights make the "
        "answers nonsense tokens, but different ones for each prompt (the LLM's output layer is its own random matrix, "
        "as in the real checkpoints), so a variant whose rounding changes a decision shows here."
        + ("" if llm["reference"] == "transformers fp32" else
           f" {llm['name']} in fp32 does not fit this machine's memory, so the reference is transformers' bf16 model."),
        "",
        *lines,
        "",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vision-layers", type=int, default=39)
    parser.add_argument("--text-layers", type=int, help="the LLM's depth (default: the real one, 24+24 or 32)")
    parser.add_argument("--llm", choices=sorted(LLMS), default="flan-t5-xl")
    parser.add_argument("--weights", default="/tmp/instructblip-serving-bench", help="where the random weights are written once")
    parser.add_argument("--image", default=str(ROOT / "assets" / "demo.jpg"))
    parser.add_argument("--skip", nargs="*", default=[], help="variant names to leave out")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per variant process")
    parser.add_argument("--output", help="write the section into this markdown file (BENCHMARKS.md)")
    parser.add_argument("--table-from", help="only print (and --output) the table of the runs in this runs.jsonl")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--save", choices=sorted(SAVED), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--write-weights", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.text_layers is None:
        args.text_layers = LLMS[args.llm]["text"][LLMS[args.llm]["depth"][0]]
    if args.write_weights:
        config = reference_config(args.llm, args.vision_layers, args.text_layers)
        write_weights(weights_folder(args), config, LLMS[args.llm]["dtypes"])
        return None
    if args.save:
        save_quantized(args.save, Path(args.weights), args.image, args.llm)
        return None
    if args.worker:
        result = worker(args.worker, Path(args.weights), args.image, args.llm)
        result = json.dumps(result | {"run_id": args.run_id, "repeat": args.repeat, "llm": args.llm})
        with open(Path(args.weights) / "runs.jsonl", "a") as log:  # every run kept, even if the parent stops
            log.write(result + "\n")
        print(result, flush=True)
        return None
    if args.table_from:
        runs = [json.loads(line) for line in Path(args.table_from).read_text().splitlines() if line.strip()]
    else:
        runs = run(args)
        Path(args.weights, "last_runs.json").write_text(json.dumps(runs))
    section = table(runs, args)
    print(section)
    if args.output:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_model import write_section

        write_section(args.output, section)
    return runs


if __name__ == "__main__":
    main()
