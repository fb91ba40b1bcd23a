"""Publish a trained or converted model folder as a Hub model repo.

A folder is ready when the Hub copy loads with plain transformers (`AutoModel` / `AutoProcessor`,
`trust_remote_code=True`) and documents itself: `config.json` with an `auto_map` whose modules (and
the modules they import) are in the folder, weights in safetensors only (one file, or shards named
by `model.safetensors.index.json`), the processor with both tokenizers (the LLM's at the top, the
Q-Former's in `qformer_tokenizer/`), `generation_config.json`, and a `README.md` model card with
metadata. `check_model_folder` says all that is wrong at once, before anything is created on the Hub.

The upload is `HfApi.upload_folder`: with `hf_xet` (a dependency of huggingface_hub 2.4) it uploads
in a streamed pipeline, commits large folders in several commits, and an interrupted upload resumes
when the same call is run again (files already on the Hub are skipped, uploaded chunks deduplicated).
This module must not write model cards or build models.
"""

import json
import re
from pathlib import Path

from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects


# Left behind by training runs and never uploaded: Trainer checkpoints (with optimizer and RNG
# pickles), TensorBoard logs, the pickled TrainingArguments, Python caches.
LEFT_OUT = ["checkpoint-*", "runs/*", "training_args.bin", "*__pycache__*", "*.pyc", ".ipynb_checkpoints*"]
UPLOAD_IGNORE = LEFT_OUT + DEFAULT_IGNORE_PATTERNS

# Formats that unpickle (run code) on load: refused, whatever their name says.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.txt", "vocab.json")
WEIGHTS_INDEX = "model.safetensors.index.json"
RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


class IncompleteFolderError(ValueError):
    """A folder that is not ready to publish; `problems` lists every reason, one line each."""

    def __init__(self, folder, problems: list[str]):
        self.folder = str(folder)
        self.problems = problems
        super().__init__(f"{folder} is not ready to publish:\n" + "\n".join(f"  - {p}" for p in problems))


def files_to_upload(folder) -> list[str]:
    """Relative paths (posix) that `upload_folder` takes from `folder`, with the same ignore patterns."""
    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=UPLOAD_IGNORE))


def _read_json(folder: Path, name: str, problems: list[str]) -> dict | None:
    try:
        return json.loads((folder / name).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as error:
        problems.append(f"{name}: not valid JSON ({error})")
        return None


def _auto_map_modules(value) -> set[str]:
    """Module names an `auto_map` (at any depth of a config) points to in this folder. A reference to
    another repo ("org/repo--module.Class") needs no local file."""
    modules = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "auto_map" and isinstance(item, dict):
                for ref in item.values():
                    for one in ref if isinstance(ref, list) else [ref]:
                        if isinstance(one, str) and "--" not in one and "." in one:
                            modules.add(one.rsplit(".", 1)[0])
            else:
                modules |= _auto_map_modules(item)
    elif isinstance(value, list):
        for item in value:
            modules |= _auto_map_modules(item)
    return modules


def _check_remote_code(folder: Path, config: dict, problems: list[str]):
    if not isinstance(config.get("auto_map"), dict) or not config["auto_map"]:
        problems.append("config.json has no auto_map: save the model with our classes so AutoModel finds the code")
        return
    modules = set()
    for name in ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "qformer_tokenizer/tokenizer_config.json"):
        modules |= _auto_map_modules(_read_json(folder, name, []) or {})
    # The named modules and, transitively, the sibling modules they import (transformers copies those too).
    seen, pending = set(), sorted(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            problems.append(f"{module}.py: named by an auto_map or imported by remote code, but not in the folder")
            continue
        pending += RELATIVE_IMPORT.findall(path.read_text())


def _safetensors_keys(path: Path, problems: list[str]) -> set[str] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return set(handle.keys())
    except Exception as error:  # a truncated file, an LFS pointer, another format under the name
        problems.append(f"{path.name}: not a readable safetensors file ({error})")
        return None


def _check_weights(folder: Path, files: list[str], problems: list[str]):
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(
            f"pickle files ({', '.join(pickles)}): only safetensors weights are published, since loading a pickle "
            "runs code; re-save with save_pretrained (safetensors is its default) and delete them"
        )
    if WEIGHTS_INDEX in files:
        index = _read_json(folder, WEIGHTS_INDEX, problems) or {}
        weight_map = index.get("weight_map") or {}
        if not weight_map:
            problems.append(f"{WEIGHTS_INDEX}: no weight_map")
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                problems.append(f"{shard}: weight shard named by {WEIGHTS_INDEX}, but not in the folder")
                continue
            keys = _safetensors_keys(folder / shard, problems)
            missing = {key for key, value in weight_map.items() if value == shard} - (keys or set())
            if keys is not None and missing:
                problems.append(f"{shard}: lacks {len(missing)} tensors the index places there, e.g. {sorted(missing)[0]}")
    elif "model.safetensors" in files:
        if _safetensors_keys(folder / "model.safetensors", problems) == set():
            problems.append("model.safetensors holds no tensors")
    else:
        problems.append(f"weights: neither model.safetensors nor {WEIGHTS_INDEX} (with its shards)")


def _check_processor(folder: Path, files: list[str], problems: list[str]):
    if "processor_config.json" not in files and "preprocessor_config.json" not in files:
        problems.append("processor_config.json: the processor is not saved (processor.save_pretrained(folder))")
    for prefix, what in (("", "the LLM tokenizer"), ("qformer_tokenizer/", "the Q-Former tokenizer")):
        if f"{prefix}tokenizer_config.json" not in files:
            problems.append(f"{prefix}tokenizer_config.json: {what} is not saved")
        elif not any(f"{prefix}{name}" in files for name in TOKENIZER_FILES):
            problems.append(f"{prefix or './'}: no vocabulary for {what} (one of {', '.join(TOKENIZER_FILES)})")


def _check_card(folder: Path, files: list[str], problems: list[str]):
    if "README.md" not in files:
        problems.append(
            "README.md: no model card (train.py writes one with publish.model_card.write_model_card; for another "
            "folder pass --card-summary to `python -m publish model`)"
        )
        return
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(folder / "README.md")
    except Exception as error:
        problems.append(f"README.md: the card's metadata does not parse ({error})")
        return
    if not card.data.to_dict():
        problems.append("README.md: no YAML metadata block (base_model, datasets, model-index, ...)")


def check_model_folder(folder) -> list[str]:
    """The files `publish_model` would upload from `folder`; raises `IncompleteFolderError` naming
    everything that is missing or refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IncompleteFolderError(folder, ["not a folder"])
    files = files_to_upload(folder)
    problems: list[str] = []
    config = _read_json(folder, "config.json", problems)
    if config is None and "config.json" not in files:
        problems.append("config.json: the model config is not saved (model.save_pretrained(folder))")
    elif config is not None:
        _check_remote_code(folder, config, problems)
    _check_weights(folder, files, problems)
    _check_processor(folder, files, problems)
    if "generation_config.json" not in files:
        problems.append("generation_config.json: no decoding defaults (model.generation_config = paper_generation_config(...))")
    else:
        _read_json(folder, "generation_config.json", problems)
    _check_card(folder, files, problems)
    if problems:
        raise IncompleteFolderError(folder, problems)
    return files


def publish_model(
    folder,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload InstructBLIP model",
    endpoint: str | None = None,
):
    """Check `folder`, create `repo_id` if needed, and upload the folder. Returns the `CommitInfo` of
    the last commit (`.oid` is the revision to pin in `from_pretrained(..., revision=...)`).

    Re-running the same call after an interruption resumes the upload: files already committed are
    skipped. `endpoint` defaults to `HF_ENDPOINT` (the Hub)."""
    from huggingface_hub import HfApi

    check_model_folder(folder)
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        ignore_patterns=list(LEFT_OUT),
        commit_message=commit_message,
        create_pr=create_pr,
    )
