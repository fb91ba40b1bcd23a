"""Plain helpers shared by tests (fixtures live in conftest.py)."""

import copy

import torch
from tokenizers import AddedToken


NUM_QUERY_TOKENS = 8  # tiny configs use 8 queries (the paper: 32)


def with_image_token(tokenizer):
    """A copy of `tokenizer` with the `<image>` placeholder added as a special token."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_tokens([AddedToken("<image>", normalized=False, special=True)], special_tokens=True)
    return tokenizer


def randomize_(model, std=0.2, seed=0):
    """Non-trivial random weights (default inits make many outputs near-constant)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


# ---- train.py runs (tests/training/, tests/test_reliability.py) -----------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_DROPOUT = "qformer_config.hidden_dropout_prob=0,qformer_config.attention_probs_dropout_prob=0"
STREAM_SIZES = json.dumps({"coco_caption": 120, "vqav2": 80, "vqav2_qg": 80})  # dataset_sizes of a stream
STREAM_ARGS = {"streaming": "true", "dataset_sizes": STREAM_SIZES}
TRAIN_PROBE_SCRIPT = ROOT / "tests" / "training" / "train_fixtures.py"  # train.py with probes, see that file


def train_script():
    """train.py as a module, loaded once per process (tests/training/train_fixtures.py says why)."""
    from tests.training.train_fixtures import load_train_script

    return load_train_script()


def small_run_args(corpus, output_dir, checkpoint=None, **overrides):
    """CLI arguments of a short, dropout-free, deterministic run of a tiny model on `corpus`
    (the `held_in_corpus` fixture: {"data_dirs": ..., "cache": ...})."""
    start = {"model_name_or_path": checkpoint} if checkpoint else {"tiny_text_model": "llama", "config_overrides": NO_DROPOUT}
    args = {
        **start,
        "data_dirs": json.dumps(corpus["data_dirs"]), "dataset_cache_dir": corpus["cache"],
        "output_dir": str(output_dir), "max_steps": 6, "per_device_train_batch_size": 4,
        "learning_rate": 1e-3, "warmup_steps": 2, "warmup_start_lr": 1e-8, "weight_decay": 0.05,
        "logging_steps": 1, "save_strategy": "steps", "save_steps": 2, "eval_strategy": "no",
        "report_to": "none", "use_cpu": "true", "seed": 0, "loss_curve": "false",
    }
    args.update(overrides)
    return [item for key, value in args.items() for item in (f"--{key}", str(value))]


def save_tiny_checkpoint(folder) -> str:
    """A dropout-free tiny Llama InstructBLIP (seed 0) and its processor saved in `folder`: runs that must
    start alike (in other processes too: the tiny BERT tokenizer's training is not deterministic across
    processes) load it."""
    from training import modeling

    model, processor = modeling.build_tiny("llama", seed=0, config_overrides=NO_DROPOUT)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def final_weights(folder):
    """The `model.safetensors` a run left in `folder`, as {name: tensor}."""
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def runs_end_alike(corpus, tmp_path, variants: dict, **common) -> dict:
    """train.py once per variant (name -> extra arguments, plus `common`), all from one saved tiny
    dropout-free checkpoint; asserts every variant ends with the first one's weights and that the
    runs trained. Returns {name: train.main's results}; outputs are in tmp_path / name."""
    checkpoint = save_tiny_checkpoint(tmp_path / "start")
    results, weights = {}, {}
    for name, extra in variants.items():
        output = tmp_path / name
        results[name] = train_script().main(small_run_args(corpus, output, checkpoint=checkpoint, **common, **extra))
        weights[name] = final_weights(output)
    start = final_weights(checkpoint)
    first, *others = variants
    for name, tensor in weights[first].items():
        for other in others:
            torch.testing.assert_close(weights[other][name], tensor, atol=2e-5, rtol=1e-4, msg=f"{other}: {name}")
    moved = sum(not torch.equal(tensor, start[name]) for name, tensor in weights[first].items())
    assert moved > 10, f"only {moved} tensors changed: the runs did not train"
    return results


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a launcher's --main_process_port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_train(args, probe_dir, env_extra=None, background=False):
    """train.py with probes (TRAIN_PROBE_SCRIPT) in a fresh process writing its probes to `probe_dir`;
    waits for it and asserts success, or with `background` returns the Popen."""
    env = dict(os.environ, TRAIN_PROBE_DIR=str(probe_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", **(env_extra or {}))
    command = [sys.executable, str(TRAIN_PROBE_SCRIPT), *args]
    if background:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# ---- LAVIS reference fixtures (tests/data/lavis, made by tools/lavis_reference/) ---------------------

LAVIS_DATA = ROOT / "tests" / "data" / "lavis"


def real_ids(ids, mask):
    """The ids of one row whose mask is set."""
    return [int(t) for t, m in zip(ids.tolist(), mask.tolist()) if m]


def loss_inputs(kind, case, processor, model, images):
    """The batch LAVIS's `forward` built (its tokenizer calls, its padding), in our model's inputs."""
    qformer, prompt, output = case["tokenizer_calls"]
    call = case["llm_call"]
    pixel_values = torch.cat([images[i] for i in case["sample_idx"]])
    image = [model.config.image_token_index] * model.config.num_query_tokens
    inputs = dict(
        pixel_values=pixel_values, qformer_input_ids=qformer["input_ids"], qformer_attention_mask=qformer["attention_mask"]
    )
    if kind == "vicuna":  # LAVIS: [visual ; prompt's real tokens ; answer without its BOS ; padding]
        pad = processor.tokenizer.pad_token_id
        width = call["attention_mask"].shape[1]
        rows = []
        for row in range(len(case["sample_idx"])):
            ids = image + real_ids(prompt["input_ids"][row], prompt["attention_mask"][row])
            ids += real_ids(output["input_ids"][row][1:], output["attention_mask"][row][1:])
            rows.append(ids + [pad] * (width - len(ids)))
        inputs.update(input_ids=torch.tensor(rows), attention_mask=call["attention_mask"], labels=call["labels"])
        supervised = call["labels"] != -100
        assert torch.equal(inputs["input_ids"][supervised], call["labels"][supervised])  # the same layout
    else:  # FlanT5: the encoder reads [visual ; prompt], the decoder is trained on the answer
        batch = len(case["sample_idx"])
        ids = torch.cat([torch.tensor([image] * batch), prompt["input_ids"]], dim=1)
        inputs.update(input_ids=ids, attention_mask=call["attention_mask"], labels=call["labels"],
                      decoder_attention_mask=call["decoder_attention_mask"])
    return inputs


# ---- the Space (space/app.py): tests/space/, tests/test_reliability.py; fixtures app/url/client in conftest.py --

SPACE = ROOT / "space"
IMAGE = ROOT / "assets" / "demo.jpg"
INSTRUCTION = "What color is the square? Short answer:"


def import_app(root: Path, name: str = "instructblip_space_app", environ: dict | None = None):
    """space/app.py copied into `root/space/` (with the example image in `root/assets/`, as in the
    repository) and imported from there with no model configured; a copy, so that whether `make demo`
    has run in this checkout does not change which model the test gets."""
    import importlib.util
    import shutil

    import pytest

    (root / "space").mkdir(parents=True, exist_ok=True)
    (root / "assets").mkdir(exist_ok=True)
    shutil.copy(SPACE / "app.py", root / "space" / "app.py")
    shutil.copy(IMAGE, root / "assets" / IMAGE.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("INSTRUCTBLIP_MODEL", raising=False)
        patch.delenv("INSTRUCTBLIP_QUANTIZATION", raising=False)
        for key, value in (environ or {}).items():
            patch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(name, root / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def ask(client, image=str(IMAGE), video=None, instruction=INSTRUCTION, beams=1, max_new_tokens=8, sample=False,
        temperature=1.0, top_p=0.9):
    from gradio_client import handle_file

    return client.predict(
        handle_file(image) if image else None, handle_file(video) if video else None, instruction, beams,
        max_new_tokens, sample, temperature, top_p, api_name="/answer",
    )
