"""The benchmark suite runs (tiny sizes, one repeat): a guard against it rotting. Timings are not
asserted here; `make bench` measures them."""

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_benchmark_suite_runs(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"
    spec = importlib.util.spec_from_file_location("bench_model", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--smoke", "--output", str(tmp_path / "BENCHMARKS.md")])
    cases = {r.case for r in results}
    assert {"train step", "train step memory", "generate llama greedy", "generate t5 5-beam", "ranking k=10",
            "preprocessing", "repeated prompts"} <= cases
    assert all(r.ours and r.reference and r.ratio > 0 for r in results)
    assert "| train step |" in bench.table(results)


@pytest.mark.slow
def test_gpu_training_benchmark_runs_on_cpu_at_smoke_size(tmp_path):
    """The real-size GPU throughput benchmark (samples/s, MFU; ours and transformers' model under the
    same Trainer) runs end to end at tiny sizes on the CPU."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu_train.py"
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
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_data_loading.py"
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


def test_make_bench_keeps_recorded_gpu_figures():
    """`make bench` rewrites BENCHMARKS.md; GPU sections (from a lent GPU) survive, CPU ones do not."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"
    spec = importlib.util.spec_from_file_location("bench_model", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    old = ("# Benchmarks\n\n| case |\n\n## Data loading\n\nrows\n\n## Training throughput on NVIDIA H200\n\n"
           "`cmd`\n\n| ours | 140 |\n\n## Data loading\n\nmore\n")
    kept = bench.gpu_sections(old)
    assert kept == "\n## Training throughput on NVIDIA H200\n\n`cmd`\n\n| ours | 140 |\n"
    assert bench.gpu_sections("# Benchmarks\n\n| case |\n") == ""
