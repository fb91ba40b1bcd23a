"""Copy what `make_blip2_reference.py` produced (LAVIS's own BLIP-2 and InstructBLIP classes, run in
their own environment) into `tests/data/lavis/blip2/`, the offline fixtures of tests/training/test_lavis_blip2.py.

    python tools/lavis_reference/export_blip2_fixtures.py /path/to/lavis_ref/out_blip2

- `bert/`, `opt/`: the tiny BERT (bert-base-uncased's stand-in, tokenizer included) and OPT folders
  LAVIS's classes loaded; the FlanT5 and Vicuna folders are tests/data/lavis/{t5,vicuna}/llm already.
- `lavis_files.pt`: every `.pth` LAVIS wrote (eva_vit_g.pth, the BLIP-2s in the runner's and the full
  layout, the InstructBLIPs' BLIP-2-derived tensors), as {file name: what torch.load gives}, in ONE
  torch.save so that a tensor several files hold (the ViT, the stage-1 Q-Former the stage-2 files
  started from, ...) is stored once: a tensor equal to another one (dtype, shape, values) is replaced by
  it. Each file is checked to come back from the store with LAVIS's keys, dtypes and values.
- `cases.pt`: the inputs LAVIS's InstructBLIPs saw and what they returned (images kept once, in `images`).
"""

import shutil
import sys
from pathlib import Path

import torch

DEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "lavis" / "blip2"
FILES = [
    "eva_vit_g.pth",
    "blip2_pretrained.pth", "blip2_pretrained_full.pth",
    "blip2_pretrained_flant5xl.pth", "blip2_pretrained_flant5xl_full.pth",
    "blip2_pretrained_opt2.7b.pth", "blip2_pretrained_opt2.7b_full.pth",
    "instruct_flant5_init.pth", "instruct_vicuna_init.pth",
]


def tensors(tree):
    if torch.is_tensor(tree):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from tensors(value)


def deduplicate(tree, seen: dict):
    """`tree` with each tensor replaced by the first equal one met (same dtype, shape and values)."""
    if torch.is_tensor(tree):
        key = (tree.dtype, tuple(tree.shape))
        for other in seen.setdefault(key, []):
            if torch.equal(other, tree):
                return other
        tree = tree.detach().clone().contiguous()
        seen[key].append(tree)
        return tree
    if isinstance(tree, dict):
        return {k: deduplicate(v, seen) for k, v in tree.items()}
    return tree


def same(a, b, where=""):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")


def export(source: Path):
    if DEST.exists():
        shutil.rmtree(DEST)
    DEST.mkdir(parents=True)
    for folder in ("bert", "opt"):
        shutil.copytree(source / folder, DEST / folder)
    originals = {name: torch.load(source / name, weights_only=True) for name in FILES}
    seen = {}
    store = {name: deduplicate(payload, seen) for name, payload in originals.items()}
    torch.save({"files": store}, DEST / "lavis_files.pt")
    back = torch.load(DEST / "lavis_files.pt", weights_only=True)["files"]
    for name in FILES:
        same(originals[name], back[name], name)
    cases = torch.load(source / "cases.pt", weights_only=True)
    for kind in ("t5", "vicuna"):
        for case in cases[kind]["loss"]:  # the images are cases["images"], indexed by sample_idx
            image = case["samples"].pop("image")
            assert torch.equal(image, torch.cat([cases["images"]["pixel_values"][i] for i in case["sample_idx"]]))
    torch.save(cases, DEST / "cases.pt")
    total = sum(f.stat().st_size for f in DEST.rglob("*") if f.is_file())
    stored = sum(t.numel() * t.element_size() for group in seen.values() for t in group)
    given = sum(t.numel() * t.element_size() for payload in originals.values() for t in tensors(payload))
    print(f"{total // 1024} KiB in {DEST} (tensors: {given // 1024} KiB in the files, {stored // 1024} KiB stored)")


if __name__ == "__main__":
    export(Path(sys.argv[1]))
