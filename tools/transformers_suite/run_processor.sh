#!/usr/bin/env bash
# transformers' own InstructBLIP processor tests, (a) as they are, (b) with our processor in place of
# transformers' (processor_plugin.py); prints the tests that pass in (a) and not in (b).
#   bash tools/transformers_suite/run_processor.sh TESTS_DIR [pytest args]
# TESTS_DIR holds transformers' `tests/` package for the installed version: tests/__init__.py and
# test_processing_common.py from the PyPI sdist, tests/models/{__init__,instructblip/__init__}.py and
# tests/models/instructblip/test_processing_instructblip.py from transformers' repository at the matching tag.
# Its two tokenizer repos are laid out offline by hub_fixtures.py. Needs `parameterized` (pip install).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TESTS="$(cd "$1" && pwd)"; shift
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$ROOT/outputs/transformers_suite}"; mkdir -p "$OUT"
export HF_HOME="$OUT/hf_home" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHONPATH="$ROOT" "$PY" "$HERE/hub_fixtures.py" "$HF_HOME" || exit 1
cd "$TESTS"
T=tests/models/instructblip/test_processing_instructblip.py
PYTHONPATH="$HERE:$TESTS:$ROOT:${PYTHONPATH:-}" "$PY" -m pytest -p no:cacheprovider -q -rA "$@" "$T" > "$OUT/processor_baseline.txt" 2>&1; tail -1 "$OUT/processor_baseline.txt"
PYTHONPATH="$HERE:$ROOT:$TESTS:${PYTHONPATH:-}" "$PY" -m pytest -p processor_plugin -p no:cacheprovider -q -rA "$@" "$T" > "$OUT/processor_ours.txt" 2>&1; tail -1 "$OUT/processor_ours.txt"
echo "== pass with transformers' processor, not with ours =="
comm -23 <(grep '^PASSED ' "$OUT/processor_baseline.txt" | awk '{print $2}' | sort) <(grep '^PASSED ' "$OUT/processor_ours.txt" | awk '{print $2}' | sort)
