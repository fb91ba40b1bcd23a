"""The benchmark suite runs (tiny sizes, one repeat): a guard against it rotting. Timings are not
asserted here; `make bench` measures them."""

import importlib.util
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_benchmark_suite_runs(tmp_path):
    """`make bench`'s cases run at tiny sizes; every model case also gives its estimate at the paper's
    layer counts, and the section lands in the file after its title, the others kept."""
    bench = load("bench_model")
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n## Serving at real size\n\nrows\n")
    results = bench.main(["--smoke", "--output", str(output)])
    cases = {r.case for r in results}
    assert {"preprocessing", "train step", "cached features llama", "cached features t5", "packing",
            "ranking llama k=10", "ranking t5 k=100", "generate llama greedy", "generate t5 5-beam",
            "repeated prompts"} <= cases
    assert all(r.ours and r.reference and r.ratio > 0 for r in results)
    assert all(r.real and min(r.real) > 0 for r in results if r.case != "preprocessing")
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n## Model at the paper's widths\n") and text.endswith("## Serving at real size\n\nrows\n")
    assert "| train step |" in text


def test_layer_clock_adds_the_missing_layers_at_their_measured_cost():
    """The real-size estimate: measured seconds plus (real - built) layers at each tower's per-layer cost."""
    import torch

    bench = load("bench_model")
    model, _ = bench.build_pair("llama", bench.SMOKE)
    inputs = bench.make_inputs(model.config, 1, 4, 2, bench.SMOKE["vision"]["image_size"], torch.Generator().manual_seed(0))
    clock = bench.LayerClock(bench.for_training(model)).run(bench.training_step(model, inputs), passes=2)
    assert len(clock.passes) == 2 and set(clock.groups) == {"vision", "qformer", "llama"}
    assert all(clock.per_layer(group) > 0 for group in clock.groups)
    assert not any(layer._forward_hooks or layer._backward_hooks for layers in clock.groups.values() for layer in layers)
    built = {group: len(layers) for group, layers in clock.groups.items()}
    expected = 1.0 + sum((bench.REAL_LAYERS[g] - built[g]) * clock.per_layer(g) for g in built)
    assert clock.at_real_size(1.0) == pytest.approx(expected)
    # a tower whose cost another measurement gives (`shared` in timed_at_real_size) takes that figure
    pooled = dict(llama=0.5)
    expected += (bench.REAL_LAYERS["llama"] - built["llama"]) * (0.5 - clock.per_layer("llama"))
    assert clock.at_real_size(1.0, pooled) == pytest.approx(expected)


@pytest.mark.slow
def test_speedup_decision_benchmark_runs_at_smoke_size(tmp_path):
    """The benchmark that decided issue #17's speed-ups reads the model code of the commit that still
    had them from git, and runs at tiny sizes."""
    bench = load("bench_speedups")
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{bench.REVISION}^{{commit}}"]).returncode:
        pytest.skip(f"commit {bench.REVISION} is not in this clone (shallow?)")
    results = bench.main(["--smoke", "--output", str(tmp_path / "B.md")])
    assert {r["speedup"] for r in results["training"]} == {"rows-only layer", "fused LayerNorm", "in-place GELU"}
    assert all(r["real_step"] > 0 for r in results["training"])
    assert [g["variant"] for g in results["generation"]][:2] == ["default budget (1 GiB)", "no budget limit"]
    assert (tmp_path / "B.md").read_text().startswith("## Speed-ups at the paper's widths")


@pytest.mark.slow
def test_gpu_training_benchmark_runs_on_cpu_at_smoke_size(tmp_path):
    """The real-size GPU throughput benchmark (samples/s, MFU; ours and transformers' model under the
    same Trainer) runs end to end at tiny sizes on the CPU."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu_train.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--smoke", "--scratch", str(tmp_path), "--output", str(tmp_path / "B.md")])
    assert [r["model"] for r in results] == ["ours", "reference", "ours-cached"]
    assert all(r["samples/s"] > 0 and r["TFLOP/s"] > 0 for r in results)
    text = (tmp_path / "B.md").read_text()
    assert "| ours |" in text and text.startswith("## Training throughput on cpu: t5, compile none\n")


def test_data_loading_benchmark_runs_at_smoke_size(tmp_path):
    """The data-pipeline benchmark (real builder, dataset, workers and collator; images and cached
    features) runs and writes its table."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_data_loading.py"
    spec = importlib.util.spec_from_file_location("bench_data_loading", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "B.md"
    rows = bench.main(["--images", "4", "--batches", "2", "--batch_size", "4", "--workers", "0", "--output", str(output)])
    assert [row[0] for row in rows] == [
        "images, paper's train transform", "images, + RandAugment (FlanT5 recipe)", "cached vision features",
    ]
    assert all(row[2] > 0 for row in rows)
    assert "## Data loading" in output.read_text()
    # a rerun replaces the section in place and keeps the others
    output.write_text("# Benchmarks\n\n| case |\n\n## Data loading\n\nold rows\n\n"
                      "## Training throughput on H200\n\n| ours | 140 |\n")
    bench.main(["--images", "4", "--batches", "1", "--batch_size", "4", "--workers", "0", "--output", str(output)])
    text = output.read_text()
    assert text.count("## Data loading") == 1 and "old rows" not in text and "cached vision features" in text
    assert text.startswith("# Benchmarks\n\n| case |\n\n## Data loading") and text.endswith("| ours | 140 |\n")


def test_make_bench_replaces_its_section_and_keeps_the_others(tmp_path):
    """`make bench` rewrites only its own section of BENCHMARKS.md (in place on a rerun); the sections
    other benchmarks wrote (serving, data loading, GPU throughput from a lent GPU) stay as they are."""
    bench = load("bench_model")
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## Data loading\n\nrows\n\n## Training throughput on NVIDIA H200\n\n| ours | 140 |\n")
    bench.write_section(path, "## Model at the paper's widths\n\nfirst\n", first=True)
    assert path.read_text().startswith("# Benchmarks\n\n## Model at the paper's widths\n\nfirst\n\n## Data loading\n")
    bench.write_section(path, "## Model at the paper's widths\n\nsecond\n", first=True)
    text = path.read_text()
    assert "first" not in text and text.count("## Model at the paper's widths") == 1
    assert text.startswith("# Benchmarks\n\n## Model at the paper's widths\n\nsecond\n\n## Data loading\n\nrows\n")
    assert text.endswith("## Training throughput on NVIDIA H200\n\n| ours | 140 |\n")


def test_serving_weights_hold_flant5s_own_output_layer_so_answers_can_differ(tmp_path):
    """The serving benchmark's random weights once tied FlanT5's lm_head to its input embedding
    (transformers builds every T5 tied), so every model only ever repeated the decoder start token and
    "same answers" held trivially. The files must hold a separate lm_head, loaded untied, and the
    answers of a random model must differ between prompts."""
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import InstructBlipConfig
    from transformers import InstructBlipForConditionalGeneration as Reference

    bench = load("bench_serving")
    image_token = bench._processor("flan-t5-xl").tokenizer.convert_tokens_to_ids("<image>")
    text = dict(bench.FLAN_T5_XL, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=1, num_decoder_layers=1)
    config = InstructBlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28,
                           patch_size=14),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        text_config=text, num_query_tokens=4, image_token_index=image_token,
    )
    bench.write_weights(tmp_path, config, ("fp32",))
    tensors = {}
    for file in sorted((tmp_path / "fp32").glob("*.safetensors")):
        tensors.update(load_file(file))
    assert not torch.equal(tensors["language_model.lm_head.weight"], tensors["language_model.shared.weight"])
    model = Reference.from_pretrained(tmp_path / "fp32").eval()
    assert model.language_model.lm_head.weight is not model.language_model.shared.weight
    processor = bench._processor("flan-t5-xl")
    processor.num_query_tokens = 4
    processor.image_processor.size = {"height": 28, "width": 28}
    picture = Image.open(ROOT / "assets" / "demo.jpg").convert("RGB")
    answers = []
    for _, instruction in bench.PROMPTS.values():
        inputs = bench._inputs(processor, picture, instruction, torch.float32)
        answers.append(model.generate(**inputs, do_sample=False, max_new_tokens=6)[0, 1:].tolist())
    assert answers[0] != answers[1] and all(len(set(answer)) > 1 for answer in answers)


def test_serving_table_compares_each_variant_with_the_reference_and_its_twin():
    bench = load("bench_serving")
    ref = {"short answer": [5, 6, 7, 8], "caption": [1, 2, 3, 4]}

    def run(variant, answers, repeat=0):
        return {"variant": variant, "run_id": "x", "repeat": repeat, "llm": "flan-t5-xl",
                "answers": {**answers, **{k + " greedy": v for k, v in answers.items()}}}

    reference, twin = run("transformers bf16", ref), run("ours bf16", {"short answer": [5, 6, 9, 9], "caption": [1, 2, 3, 4]})
    assert bench._agreement([(reference, reference)]) == "2/2; 2/2"
    assert bench._agreement([(twin, reference)]) == "1/2 (shared prefix 75%); 1/2 (shared prefix 75%)"
    assert bench.TWINS["ours bf16"] == "transformers bf16"
    assert bench.TWINS["ours NF4, saved NF4 checkpoint"] == bench.SAVED["nf4"]
    legacy = {"variant": "transformers fp32", "answers": {"caption": [0, 1, 2]}}  # logged with T5's start token
    assert bench._generated(legacy, "caption") == [1, 2]
