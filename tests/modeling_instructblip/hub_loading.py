"""Loading a saved tiny model by repo id from a hand-made Hub cache in a fresh offline process, and the
outputs it must give: shared by test_hub_loading.py and tests/publish/ (what the stand-in Hub received)."""

import json
import os
import shutil
import subprocess
import sys

import torch
from PIL import Image

IMAGES = [Image.new("RGB", (64, 48), (220, 20, 20)), Image.new("RGB", (48, 64), (20, 20, 220))]
PROMPTS = ["A short image caption:", "Question: what color is the square? Short answer:"]


def expected_outputs(model, processor):
    processor.tokenizer.padding_side = "left" if model.config.use_decoder_only_language_model else "right"
    inputs = processor(images=IMAGES, text=PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    generated = model.generate(**inputs, do_sample=False, num_beams=2, max_new_tokens=5, min_new_tokens=5)
    return inputs, logits, generated


LOADER = r'''
import json, sys, torch
from PIL import Image
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
processor.tokenizer.padding_side = "left" if model.config.use_decoder_only_language_model else "right"
images = [Image.new("RGB", (64, 48), (220, 20, 20)), Image.new("RGB", (48, 64), (20, 20, 220))]
prompts = json.loads(sys.argv[2])
inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
generated = model.generate(**inputs, do_sample=False, num_beams=2, max_new_tokens=5, min_new_tokens=5)
print(json.dumps({"logits_sum": float(logits.double().nan_to_num(neginf=0.0).sum()), "generated": generated.tolist()}))
'''


def check_loads_by_repo_id_offline(model, processor, folder, tmp_path):
    """`folder` laid out as `models--our-org--instructblip-tiny/{refs/main, snapshots/<sha>/...}` under
    HF_HOME and loaded by repo id with HF_HUB_OFFLINE=1 in a fresh process (the offline flag is read at
    import) gives `model`'s logits and generated ids, with the remote code from the snapshot."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf_home" / "hub" / "models--our-org--instructblip-tiny"
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", LOADER, "our-org/instructblip-tiny", json.dumps(PROMPTS)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    _, logits, generated = expected_outputs(model, processor)
    assert got["generated"] == generated.tolist()
    assert abs(got["logits_sum"] - float(logits.double().nan_to_num(neginf=0.0).sum())) < 1e-3
    # nothing was fetched: the remote code came from the snapshot
    assert (tmp_path / "hf_home" / "modules" / "transformers_modules").exists()
