# One way to run each thing. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-fast bench install system-deps clean

install: $(STAMP)

# torch first, pinned: its CPU build lies on this machine's disk, and installing it before the
# package keeps any dependency from pulling a multi-GB CUDA build.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job on the bundled default: instruction-tune a tiny InstructBLIP on the synthetic sample
# corpus (COCO captions, VQAv2, VQAv2-QG in their official formats; a few minutes on this CPU),
# load the saved folder the way users do, answer about a held-in validation image, show that it
# answers from the image (held-in accuracy per kind of question against the image-blind baseline,
# demo_output/held_in_answers.md), then evaluate it zero-shot on the held-out GQA sample (table and
# chart in demo_output/eval).
DEMO_MODEL := demo_output/instructblip-tiny-trained
demo: $(STAMP)
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		train.py configs/demo.yaml
	$(BIN)/python demo.py --model $(DEMO_MODEL) --image demo_output/sample_corpus/coco/val2014/COCO_val2014_000000000042.jpg \
		--instruction "What color are the shapes? Short answer:" --data_dir demo_output/sample_corpus \
		--cache_dir demo_output/datasets_cache --report demo_output/held_in_answers.md
	rm -rf demo_output/eval  # the model was just retrained: its old predictions do not apply
	$(BIN)/python evaluate.py --model $(DEMO_MODEL) --data_dir demo_output/sample_corpus --tasks gqa \
		--output_dir demo_output/eval --model_name instructblip-tiny-demo

# What the suite needs beyond Python packages: a Chromium for the Space's browser test (installed with
# apt-get when missing and this user may; otherwise one line says what to install, before anything runs).
system-deps:
	@bash tools/ensure_chromium.sh

# The whole suite, slow tests included, on both cores.
test: system-deps $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider

# Skip the tests marked slow (a quick check while working; CI runs `make test`).
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider -m "not slow"

# Speed against transformers' InstructBLIP at the paper's widths (ViT-g, Q-Former, Vicuna-7B, FlanT5-XL; a
# few layers of each, with estimates at the real layer counts; about 10 minutes on 2 cores), timed
# alternately; writes BENCHMARKS.md. Section
# "serving at real size" (bench_serving.py: ViT-g + Q-Former + FlanT5-XL, random weights; about 24 GB of
# disk under /tmp, up to 16 GB of memory per model process, about an hour) takes the heavy-job lock.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_data_loading.py --output BENCHMARKS.md
	$(BIN)/python benchmarks/bench_dataset_build.py
	flock /tmp/heavy.lock $(BIN)/python benchmarks/bench_serving.py --output BENCHMARKS.md
	$(BIN)/python benchmarks/bench_space.py --output BENCHMARKS.md

clean:
	rm -rf $(VENV) demo_output .pytest_cache
