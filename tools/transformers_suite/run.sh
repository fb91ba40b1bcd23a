#!/usr/bin/env bash
# transformers' own InstructBLIP model tests, (a) as they are, (b) with our class in place of
# transformers' (ours_plugin.py); prints the tests that pass in (a) and not in (b).
#   bash tools/transformers_suite/run.sh TESTS_DIR [pytest args]
# TESTS_DIR holds transformers' `tests/` package for the installed version (tests/__init__.py,
# test_modeling_common.py, test_configuration_common.py, test_pipeline_mixin.py, generation/,
# utils/, models/instructblip/): the sdist on PyPI ships the top-level files, the model's test file
# comes from transformers' repository at the matching tag. Needs `parameterized` (pip install).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TESTS="$(cd "$1" && pwd)"; shift
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-$ROOT/outputs/transformers_suite}"; mkdir -p "$OUT"
cd "$TESTS"
T=tests/models/instructblip/test_modeling_instructblip.py
PYTHONPATH="$TESTS:${PYTHONPATH:-}" "$PY" -m pytest -p no:cacheprovider -q -rA "$@" "$T" > "$OUT/baseline.txt" 2>&1; tail -1 "$OUT/baseline.txt"
PYTHONPATH="$HERE:$ROOT:$TESTS:${PYTHONPATH:-}" "$PY" -m pytest -p ours_plugin -p no:cacheprovider -q -rA "$@" "$T" > "$OUT/ours.txt" 2>&1; tail -1 "$OUT/ours.txt"
echo "== pass with transformers' class, not with ours =="
comm -23 <(grep '^PASSED ' "$OUT/baseline.txt" | awk '{print $2}' | sort) <(grep '^PASSED ' "$OUT/ours.txt" | awk '{print $2}' | sort)
