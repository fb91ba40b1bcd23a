"""Copy what `make_reference.py` produced (LAVIS's own classes, run in their own environment) into
`tests/data/lavis/<kind>/`, the offline fixtures of tests/modeling_instructblip/test_lavis_reference.py.

    python tools/lavis_reference/export_fixtures.py /path/to/make_reference/out

Per kind (vicuna, t5): `llm/` and `bert_tokenizer/` as LAVIS read them; `lavis_state.pth`, LAVIS's
`model.state_dict()` without the LLM tensors that equal `llm/`'s (the test puts them back to build
the full and the runner layouts); `cases.pt`, the inputs LAVIS saw and what it returned.
"""

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

DEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "lavis"
LLM_PREFIX = {"vicuna": "llm_model.", "t5": "t5_model."}


def export(source: Path, kind: str):
    src, dest = source / kind, DEST / kind
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for folder in ("llm", "bert_tokenizer"):
        shutil.copytree(src / folder, dest / folder)
    state = torch.load(src / "lavis_full.pth", weights_only=True)["model"]
    llm = load_file(src / "llm" / "model.safetensors")
    kept = {}
    for key, tensor in state.items():
        name = key[len(LLM_PREFIX[kind]):] if key.startswith(LLM_PREFIX[kind]) else None
        if name is not None and name in llm and llm[name].shape == tensor.shape and torch.equal(llm[name].to(tensor.dtype), tensor):
            continue
        kept[key] = tensor
    torch.save({"model": kept, "omitted_llm_keys": sorted(set(state) - set(kept))}, dest / "lavis_state.pth")
    cases = torch.load(src / "cases.pt", weights_only=True)
    for case in cases["generate"]:  # the prompt embeddings are rebuilt by the test
        case.pop("llm_inputs_embeds", None)
    torch.save(cases, dest / "cases.pt")
    if (src / "lavis_qformer1layer_xattn1.pth").exists():
        variant = torch.load(src / "lavis_qformer1layer_xattn1.pth", weights_only=True)
        variant = variant.get("model", variant)
        torch.save({"model": {k: v for k, v in variant.items() if not k.startswith(LLM_PREFIX[kind])}},
                   dest / "lavis_qformer1layer_xattn1.pth")
    print(kind, sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) // 1024, "KiB")


if __name__ == "__main__":
    for kind in ("vicuna", "t5"):
        export(Path(sys.argv[1]), kind)
