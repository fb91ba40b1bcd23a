"""Training throughput at the paper's sizes on a GPU: ours against transformers'
InstructBlipForConditionalGeneration under the same `Trainer`, random weights (EVA ViT-g + Q-Former +
FlanT5-XL by default), bf16, the paper's freezing on both. Prints samples/s and model FLOPs
utilisation (MFU), and with `--output` appends them to BENCHMARKS.md.

    python benchmarks/bench_gpu_train.py --steps 30 --batch_size 64 --output BENCHMARKS.md
    python benchmarks/bench_gpu_train.py --smoke        # tiny sizes on the CPU: checks the path runs

`ours-cached` trains from precomputed vision features (train.py --vision_feature_cache, runs without
image augmentation): the tower's forward is not in the step, so neither is it in its FLOPs.

The paper trained 60K steps x 192 samples on 16 A100s in ~1.5 days; doing that on one H200 in 24 h
needs >= 133 samples/s.

MFU counts the matmul FLOPs a step needs (2 per parameter per token forward): the frozen ViT runs
forward only; the Q-Former forward and backward (weights and activations: 3x forward); the frozen LLM
forward and the backward to its inputs (2x forward), the LM head only where labels are supervised.
"""

import argparse
import importlib.util
import os
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments


HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_model", HERE / "bench_model.py")
bench_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_model)

# EVA ViT-g/14 (39 blocks) + BERT-base Q-Former + FlanT5-XL, as in the paper
REAL = dict(
    vision=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                image_size=224, patch_size=14),
    qformer=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    t5=dict(d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
            vocab_size=32128, feed_forward_proj="gated-gelu", dense_act_fn="gelu", tie_word_embeddings=False,
            decoder_start_token_id=0),
    llama=bench_model.SMALL["llama"],
)
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks


class SyntheticBatches(torch.utils.data.Dataset):
    """Random samples shaped like the paper's: a 224 px image, a 24-token instruction, an 8-token target."""

    def __init__(self, config, image_size, size):
        self.samples = [
            {k: v[0] for k, v in bench_model.make_inputs(config, 1, 24, 8, image_size, torch.Generator().manual_seed(i)).items()}
            for i in range(size)
        ]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]

    def cache_vision_features(self, model, device, dtype, batch_size=32):
        """Replace each sample's pixel_values by the frozen tower's output (what train.py's
        --vision_feature_cache reads from disk), computed here on `device`."""
        tower = model._frozen_vision_modules()
        for module in tower:
            module.to(device, dtype)
        for start in range(0, len(self.samples), batch_size):
            chunk = self.samples[start : start + batch_size]
            pixels = torch.stack([s.pop("pixel_values") for s in chunk]).to(device, dtype)
            with torch.inference_mode():
                features = model.get_vision_features(pixels).cpu()
            for sample, row in zip(chunk, features):
                sample["vision_features"] = row.clone()


class StepTimer(TrainerCallback):
    """Wall time of the steps after `warmup` (first steps include compilation and allocator growth)."""

    def __init__(self, warmup):
        self.warmup, self.times, self.start = warmup, [], None

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step > self.warmup:
            self.times.append(time.perf_counter() - self.start)


def step_flops(model, batch_size, text_tokens=24 + 8, supervised=8, vision_tower=True) -> float:
    """Matmul FLOPs of one training step (see the module docstring); `vision_tower=False`: from cached
    features (no tower forward)."""
    config = model.config
    count = lambda module: sum(p.numel() for n, p in module.named_parameters() if "embed" not in n and "shared" not in n)  # noqa: E731
    vision_tokens = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1
    queries = config.num_query_tokens
    vision = 2 * count(model.vision_model) * vision_tokens if vision_tower else 0
    qformer = 6 * count(model.qformer) * (queries + 24)
    head = model.language_model.get_output_embeddings().weight.numel()
    llm_body = count(model.language_model) - head
    llm = 4 * llm_body * (queries + text_tokens) + 4 * head * supervised
    return batch_size * (vision + qformer + llm)


def run(which, sizes, args):
    ours, reference = bench_model.build_pair(args.llm, sizes, num_query_tokens=32)
    if which in ("ours", "ours-cached"):
        model = ours.freeze_for_instruction_tuning()
        del reference
    elif which == "reference":
        model = bench_model.freeze_like_the_paper(reference)
        del ours
    else:
        raise ValueError(f"--models: ours, ours-cached or reference, got {which!r}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset = SyntheticBatches(model.config, sizes["vision"]["image_size"], args.batch_size * 4)
    if which == "ours-cached":  # train.py --vision_feature_cache: the tower ran once, before training
        dataset.cache_vision_features(model, device, torch.bfloat16 if device == "cuda" else torch.float32)
    timer = StepTimer(args.warmup)
    # both sides under the same Trainer and the same compilation: per block (accelerate's regional
    # compilation, which train.py uses by default) or the whole model
    os.environ["ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"] = "1" if args.compile == "regions" else "0"
    training_args = TrainingArguments(
        output_dir=str(Path(args.scratch) / which),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-5,
        bf16=device == "cuda",
        optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        dataloader_num_workers=args.workers,
        dataloader_pin_memory=device == "cuda",
        gradient_checkpointing=args.checkpointing,
        torch_compile=args.compile != "none",
        save_strategy="no",
        report_to=[],
        logging_steps=max(1, args.steps),
        remove_unused_columns=False,
        use_cpu=device == "cpu",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[timer])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = sum(timer.times) / max(1, len(timer.times))
    samples_per_second = args.batch_size / seconds
    flops = step_flops(model, args.batch_size, vision_tower=which != "ours-cached") / seconds
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if device == "cuda" and k in torch.cuda.get_device_name()), None)
    return {
        "model": which,
        "samples/s": samples_per_second,
        "TFLOP/s": flops / 1e12,
        "MFU": None if peak is None else flops / peak,
        "peak memory GiB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default="t5", choices=["t5", "llama"])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--compile", default="none", choices=["none", "regions", "whole"],
                        help="torch.compile (inductor) per repeated block, of the whole model, or not at all")
    parser.add_argument("--models", default="ours,reference,ours-cached",
                        help="ours, reference, ours-cached (from precomputed vision features, no augmentation)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps, any device")
    parser.add_argument("--scratch", default="/tmp/instructblip-gpu-bench")
    parser.add_argument("--output", help="append the table to this markdown file (e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)
    sizes = bench_model.SMOKE if args.smoke else REAL
    if args.smoke:
        args.batch_size, args.steps, args.warmup, args.workers = 2, 3, 1, 0
    results = [run(which, sizes, args) for which in args.models.split(",")]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    lines = [f"| model | samples/s | TFLOP/s | MFU | peak memory |", "|---|---|---|---|---|"]
    for r in results:
        mfu = "-" if r["MFU"] is None else f"{100 * r['MFU']:.1f}%"
        memory = "-" if r["peak memory GiB"] is None else f"{r['peak memory GiB']:.1f} GiB"
        lines.append(f"| {r['model']} | {r['samples/s']:.1f} | {r['TFLOP/s']:.1f} | {mfu} | {memory} |")
    table = "\n".join(lines)
    print(f"{device}, {'smoke' if args.smoke else 'ViT-g + Q-Former + ' + args.llm}, batch {args.batch_size}, "
          f"compile {args.compile}\n{table}")
    if args.output:  # one section per device and configuration; a rerun replaces its figures
        bench_model.write_section(
            args.output,
            f"## Training throughput on {device}: {args.llm}, compile {args.compile}\n\n"
            f"`python benchmarks/bench_gpu_train.py --llm {args.llm} --batch_size {args.batch_size} "
            f"--steps {args.steps} --compile {args.compile}`\n\n{table}\n",
        )
    return results


if __name__ == "__main__":
    main()
