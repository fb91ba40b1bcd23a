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
