"""Benchmark: the Space's answers per second with 1, 4 and 16 concurrent clients, batched (the app as it
is: up to `max_batch_size` requests per `generate` call) against one request at a time (the same app
with `max_batch_size=1`, which is how it served before batching), on the model `make demo` trains.

    python benchmarks/bench_space.py [--clients 1,4,16] [--requests 32] [--repeats 2] [--output BENCHMARKS.md]

Both apps serve the same loaded model, held as the Space holds it on this hardware
(`INSTRUCTBLIP_QUANTIZATION=auto`: int8 on a CPU) unless --quantization says otherwise, on loopback,
each client a `gradio_client.Client` sending its requests one after another (the demo image, the
short-answer prompt, 5 beams, at most 10 new tokens). The two apps alternate per concurrency level
(order reversed every other repeat); ratios are batched over one-at-a-time in the same repeat.
"""

import argparse
import importlib.util
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Space: batched serving"
INSTRUCTION = "What color is the square? Short answer:"


def import_app(model: str | None, quantization: str):
    if model:
        os.environ["INSTRUCTBLIP_MODEL"] = model
    os.environ["INSTRUCTBLIP_QUANTIZATION"] = quantization
    spec = importlib.util.spec_from_file_location("instructblip_space_app", ROOT / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def serve(app, limits):
    demo = app.build_demo(app.model, app.processor, limits, app.ABOUT_MODEL)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(demo, limits, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def answers_per_second(url: str, clients: int, requests: int, image: str) -> float:
    from gradio_client import Client, handle_file

    connections = [Client(url, verbose=False) for _ in range(clients)]
    per_client = max(1, requests // clients)
    errors = []

    def run(client):
        try:
            for _ in range(per_client):
                client.predict(handle_file(image), None, INSTRUCTION, 5, 10, False, 1.0, 0.9, api_name="/answer")
        except Exception as error:  # reported below; a benchmark with failed requests is no benchmark
            errors.append(error)

    threads = [threading.Thread(target=run, args=(c,)) for c in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    return per_client * clients / elapsed


# how the Space can hold a model (INSTRUCTBLIP_QUANTIZATION), for the accuracy table: fp32 first, the CPU default
# next; last, int8 with the vision tower quantized too (a skip list of one's own; not a Space setting)
HELD = {"none": "fp32", "int8": "int8 LLM (the CPU default)", "bf16": "bf16", "nf4": "NF4 LLM",
        "int8-vision": "int8 LLM and ViT"}


def _load_int8_with_vision(model: str):
    import torch
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModel, AutoProcessor, TorchAoConfig

    from modeling_instructblip import InstructBlipForConditionalGeneration

    skip = [name for name in InstructBlipForConditionalGeneration._quantization_skip_modules if name != "vision_model"]
    config = TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=skip)
    loaded = AutoModel.from_pretrained(model, trust_remote_code=True, dtype=torch.bfloat16, quantization_config=config)
    return loaded.eval(), AutoProcessor.from_pretrained(model, trust_remote_code=True)


def held_in_accuracy(app, model: str, data_dir: str, cache_dir: str | None) -> dict:
    """Held-in VQAv2 validation accuracy (demo.py's report: every validation question of the sample
    corpus) of `model` as the Space can hold it: fp32, the CPU default (int8 LLM, the rest bf16), bf16
    and NF4 (bitsandbytes' 4-bit LLM, the rest bf16)."""
    from demo import held_in_report

    results = {}
    for quantization in HELD:
        if quantization == "int8-vision":
            loaded, processor = _load_int8_with_vision(model)
        else:
            loaded, processor = app.load_model(model, quantization=quantization)
        report = held_in_report(loaded, processor, data_dir, cache_dir)
        results[quantization] = report["overall"] | {"kinds": {k: v["accuracy"] for k, v in report["kinds"].items()}}
        layers = [m for m in loaded.modules() if type(m).__name__ == "Linear4bit"]
        results[quantization]["plain_4bit_path"] = (sum(not m.support_avx512bf16_for_cpu for m in layers), len(layers))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "demo_output" / "instructblip-tiny-trained"),
                        help="the served model (default: make demo's; missing: the random tiny one)")
    parser.add_argument("--quantization", default="auto", help="INSTRUCTBLIP_QUANTIZATION for both apps")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=32, help="answers per measurement (split over the clients)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image", default=str(ROOT / "assets" / "demo.jpg"))
    parser.add_argument("--data_dir", default=str(ROOT / "demo_output" / "sample_corpus"),
                        help="make demo's sample corpus, for the held-in accuracy of fp32 against int8")
    parser.add_argument("--cache_dir", default=str(ROOT / "demo_output" / "datasets_cache"))
    parser.add_argument("--output", help="write the section into this markdown file (BENCHMARKS.md)")
    args = parser.parse_args(argv)

    model = args.model if (Path(args.model) / "config.json").is_file() else None
    app = import_app(model, args.quantization)
    apps = {
        "one at a time": serve(app, app.Limits(max_batch_size=1)),
        "batched": serve(app, app.Limits()),
    }
    levels = [int(c) for c in args.clients.split(",")]
    rates = {(name, c): [] for name in apps for c in levels}
    ratios = {c: [] for c in levels}
    batch_sizes = {c: [] for c in levels}
    for name, (demo, url) in apps.items():  # warm-up: first calls pay one-time costs
        answers_per_second(url, 1, 2, args.image)
    for repeat in range(args.repeats):
        for clients in levels:
            order = list(apps) if repeat % 2 == 0 else list(apps)[::-1]
            measured = {}
            for name in order:
                demo, url = apps[name]
                demo.batcher.batch_sizes.clear()
                measured[name] = answers_per_second(url, clients, args.requests, args.image)
                rates[(name, clients)].append(measured[name])
                if name == "batched":
                    batch_sizes[clients] += demo.batcher.batch_sizes
            ratios[clients].append(measured["batched"] / measured["one at a time"])
            print(f"[{repeat}] {clients} clients: " + ", ".join(f"{n} {r:.2f}/s" for n, r in measured.items()), flush=True)
    for demo, _ in apps.values():
        demo.close()

    def spread(values):
        median = statistics.median(values)
        return f"{median:.2f}" if len(values) == 1 else f"{median:.2f} ({min(values):.2f}–{max(values):.2f})"

    lines = ["| concurrent clients | one at a time, answers/s | batched, answers/s | batched × one at a time | mean requests per generate call |",
             "|---|---|---|---|---|"]
    for clients in levels:
        sizes = batch_sizes[clients]
        lines.append(f"| {clients} | {spread(rates[('one at a time', clients)])} | {spread(rates[('batched', clients)])} | "
                     f"{spread(ratios[clients])} | {sum(sizes) / max(len(sizes), 1):.1f} |")
    held = app.QUANTIZATION if model else "fp32 (the random tiny model is never quantized)"
    quality = []
    if model and (Path(args.data_dir) / "coco").is_dir():
        accuracy = held_in_accuracy(app, model, args.data_dir, args.cache_dir)
        fp32, int8 = accuracy["none"], accuracy["int8"]
        quality = [
            "",
            f"Held-in accuracy of the same model (demo.py's report: the sample corpus's {fp32['questions']} VQAv2 "
            "validation questions, greedy, at most 10 new tokens), fp32 against the ways the Space can hold it (int8 "
            "and NF4 quantize the LLM only, the rest bf16) and against int8 for the vision tower too (our skip list "
            "minus `vision_model`; not a Space setting). The CPU default, int8: "
            f"**{100 * fp32['accuracy']:.1f} % vs {100 * int8['accuracy']:.1f} %** "
            f"({100 * (int8['accuracy'] - fp32['accuracy']):+.1f} points; image-blind baseline {100 * fp32['baseline']:.1f} %). "
            "{} of the model's {} NF4 layers are too narrow for bitsandbytes' AVX512 4-bit kernel and run its plain "
            "path (our `from_pretrained` routes them), on the same 4-bit weights.".format(*accuracy["nf4"]["plain_4bit_path"]),
            "",
            "| question kind | " + " | ".join(HELD.values()) + " |",
            "|---" * (len(HELD) + 1) + "|",
            *[f"| {kind} | " + " | ".join(f"{accuracy[q]['kinds'][kind]:.3f}" for q in HELD) + " |" for kind in fp32["kinds"]],
            "| **overall** | " + " | ".join(f"**{accuracy[q]['accuracy']:.3f}**" for q in HELD) + " |",
        ]
    section = "\n".join([
        SECTION,
        "",
        f"`python benchmarks/bench_space.py --repeats {args.repeats}` (`make bench`): space/app.py serving "
        f"{'the model make demo trained' if model else 'the random tiny model (make demo has not run)'}, held as {held}, "
        f"on loopback, {args.requests} answers per measurement from N `gradio_client` clients (each sending its requests "
        "one after another: the demo image, the short-answer prompt, 5 beams, at most 10 new tokens), "
        f"{os.cpu_count()} CPU cores. One at a time is the same app with `max_batch_size=1` (how it served before "
        "batching); the two alternate per level; median (min–max) over repeats.",
        "",
        *lines,
        *quality,
        "",
    ])
    print(section)
    if args.output:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_model import write_section

        write_section(args.output, section)
    return rates


if __name__ == "__main__":
    main()
