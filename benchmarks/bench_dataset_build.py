"""Benchmark: build a VQAv2-format train split of 100,000 questions over a few hundred images and
print records per second (target: 100,000 records in under 60 s on 2 CPU cores).

    python benchmarks/bench_dataset_build.py [--questions 100000] [--images 300] [--image-check header]

The raw corpus is written once to a temporary folder (not timed); the timed part is
`dataset_builders.load("vqav2", ..., "train")` from a cold cache: stream the questions, join the
annotations, draw templates, check every distinct image (header + end marker by default) and
write Arrow with images referenced by path.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import datasets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from dataset_builders import load  # noqa: E402
from dataset_builders.sample_data import write_coco_vqav2  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-check", default="header", choices=("none", "exists", "header", "full"))
    parser.add_argument("--keep", help="keep the raw corpus and cache in this folder")
    args = parser.parse_args()

    datasets.disable_progress_bars()
    root = args.keep or tempfile.mkdtemp(prefix="bench_dataset_build_")
    raw_dir, cache_dir = os.path.join(root, "raw"), os.path.join(root, "cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    per_image = -(-args.questions // args.images)
    start = time.perf_counter()
    write_coco_vqav2(raw_dir, num_train_images=args.images, num_val_images=1, questions_per_image=per_image)
    print(f"wrote {args.images * per_image} questions over {args.images} images in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    dataset, report = load(
        "vqav2", raw_dir, "train", cache_dir=cache_dir, image_check=args.image_check, return_report=True
    )
    elapsed = time.perf_counter() - start
    print(f"built {len(dataset)} records in {elapsed:.1f} s: {len(dataset) / elapsed:,.0f} records/s")
    print(f"skipped: {report['num_skipped']}; image_check={args.image_check}")
    print(f"arrow size: {dataset.data.nbytes / 1e6:.1f} MB (images by path)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
