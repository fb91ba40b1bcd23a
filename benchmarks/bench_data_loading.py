"""Benchmark: can the data pipeline feed the GPU? Training samples per second from the real
pipeline (a built VQAv2 split -> InstructionDataset -> DataLoader workers -> InstructBlipCollator),
per worker process, with the paper's train transform on 640x480 JPEGs (with and without the FlanT5
recipe's RandAugment), and from the vision feature cache (ViT-g/14-sized features, bf16) instead
of images.

    python benchmarks/bench_data_loading.py [--images 96] [--batches 12] [--workers 0,2] [--output BENCHMARKS.md]

The goal in the [perf] issue, the paper's schedule on one H200 in 24 h, needs >= 133 samples/s;
the table says how many loader processes that takes at the measured rate per process (the GPU
machines lent here have 16 CPU cores).
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import datasets
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from dataset_builders import load  # noqa: E402
from dataset_builders.sample_data import write_coco_vqav2  # noqa: E402
from modeling_instructblip import tiny  # noqa: E402
from training import modeling  # noqa: E402
from training.data import InstructBlipCollator, InstructionDataset  # noqa: E402
from training.feature_cache import VisionFeatureCache, image_key  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_model import write_section  # noqa: E402

GOAL_SAMPLES_PER_SECOND = 133
VIT_G_FEATURES = (257, 1408)  # tokens x hidden of EVA ViT-g/14 at 224 px


def photo_like_jpeg(path, rng, size=(640, 480)):
    """A COCO-sized JPEG whose content costs what a photo costs to decode (gradients + noise)."""
    width, height = size
    base = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
    pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def samples_per_second(dataset, collator, batch_size, workers, batches) -> float:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collator, shuffle=True,
        generator=torch.Generator().manual_seed(0), persistent_workers=False,
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and first-batch latency are not throughput
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        seen += len(next(iterator)["num_skipped_records"])
    return seen / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per setting")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to time")
    parser.add_argument("--output", help="append the table to this markdown file (e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    root = tempfile.mkdtemp(prefix="bench_data_loading_")
    try:
        raw, cache_dir = os.path.join(root, "raw"), os.path.join(root, "cache")
        write_coco_vqav2(raw, num_train_images=args.images, num_val_images=1, questions_per_image=8)
        rng = np.random.default_rng(0)
        for name in os.listdir(os.path.join(raw, "train2014")):
            photo_like_jpeg(os.path.join(raw, "train2014", name), rng)
        records = load("vqav2", raw, "train", cache_dir=cache_dir)

        model, processor = modeling.build_tiny("llama", seed=0)
        processor.image_processor.size = {"height": 224, "width": 224}  # the paper's eval/train size
        features = VisionFeatureCache(os.path.join(root, "features"), model, processor)
        generator = torch.Generator().manual_seed(0)
        for name in os.listdir(os.path.join(raw, "train2014")):  # ViT-g-sized files, as a real fill writes
            key = image_key({"path": os.path.join(raw, "train2014", name), "bytes": None})
            features.path(key).parent.mkdir(exist_ok=True)
            row = torch.randn(*VIT_G_FEATURES, generator=generator).to(torch.bfloat16)
            save_file({"features": row}, str(features.path(key)))

        settings = {
            "images, paper's train transform": (InstructionDataset(records, seed=0), InstructBlipCollator(processor)),
            "images, + RandAugment (FlanT5 recipe)": (
                InstructionDataset(records, seed=0), InstructBlipCollator(processor, randaugment=True),
            ),
            "cached vision features": (
                InstructionDataset(records, seed=0, feature_cache=features),
                InstructBlipCollator(processor, augment=False),
            ),
        }
        rows = []
        for name, (dataset, collator) in settings.items():
            for workers in (int(w) for w in args.workers.split(",")):
                rate = samples_per_second(dataset, collator, args.batch_size, workers, args.batches)
                per_process = rate / max(1, workers)
                rows.append((name, workers, rate, per_process, math.ceil(GOAL_SAMPLES_PER_SECOND / per_process)))
        lines = ["| input | loader workers | samples/s | per process | processes for 133/s |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {w} | {r:.0f} | {p:.0f} | {k} |" for n, w, r, p, k in rows]
        table = "\n".join(lines)
        print(f"{os.cpu_count()} cores, batch {args.batch_size}, {args.images} 640x480 JPEGs\n{table}")
        if args.output:
            section = (
                f"## Data loading\n\n`python benchmarks/bench_data_loading.py`: training samples/s from the "
                f"real pipeline ({args.images} 640x480 JPEGs, batch {args.batch_size}, {os.cpu_count()} cores); "
                f"the paper's schedule on one H200 in 24 h needs >= {GOAL_SAMPLES_PER_SECOND} samples/s.\n\n"
                f"{table}\n"
            )
            write_section(args.output, section)
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
