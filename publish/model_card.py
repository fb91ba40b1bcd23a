"""The model card (README.md) of a Hub-ready folder, generated from what produced the model — its
config, the training run's summary, `evaluate.py`'s results — never typed by hand.

`write_model_card` also saves its inputs as `model_card_inputs.json`, so the card can be written
again when evaluation results arrive (`python -m publish card FOLDER --eval-dir eval/`).
"""

import json
import os
import re
from pathlib import Path


CARD_INPUTS_FILENAME = "model_card_inputs.json"
# how the mixture weighted its datasets (train.py --sampling): the paper's balancing and its ablations
SAMPLING_TEXT = {
    "sqrt": "proportional to sqrt(size) (the paper's balancing)",
    "size": "proportional to size (no balancing: as if the datasets were concatenated)",
    "uniform": "uniform over the datasets",
}
CITATION = """@inproceedings{dai2023instructblip,
  title     = {InstructBLIP: Towards General-purpose Vision-Language Models with Instruction Tuning},
  author    = {Dai, Wenliang and Li, Junnan and Li, Dongxu and Tiong, Anthony Meng Huat and Zhao, Junqi and
               Wang, Weisheng and Li, Boyang and Fung, Pascale and Hoi, Steven},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""
LAVIS_SUFFIXES = (".pth", ".pt")
HUB_ID = re.compile(r"(?:[\w-]+/)?[\w.-]+")  # [owner/]name: what the Hub's `base_model` metadata accepts
# builder names whose data has a canonical Hub dataset repo (metadata links only where we are sure)
HUB_DATASET_IDS = {
    "llava_conversation": "liuhaotian/LLaVA-Instruct-150K",
    "llava_detail": "liuhaotian/LLaVA-Instruct-150K",
    "llava_reasoning": "liuhaotian/LLaVA-Instruct-150K",
}


def describe_architecture(config: dict) -> str:
    """One paragraph from `config.json`: towers, sizes, queries, LLM."""
    vision, qformer, text = config["vision_config"], config["qformer_config"], config["text_config"]
    if vision.get("model_type") in (None, "instructblip_hub_vision", "instructblip_vision_model"):
        tower = (f"an EVA-style ViT ({vision.get('num_hidden_layers')} layers, width {vision.get('hidden_size')}, "
                 f"{vision.get('image_size')} px, patch {vision.get('patch_size')})")
    else:
        tower = f"a `{vision['model_type']}` vision tower (features from layer {config.get('vision_feature_layer', -1)})"
    llm_kind = "encoder-decoder" if text.get("is_encoder_decoder") else "decoder-only"
    width = text.get("hidden_size", text.get("d_model"))
    layers = text.get("num_hidden_layers", text.get("num_layers"))
    return (
        f"InstructBLIP: {tower} feeds a Q-Former ({qformer.get('num_hidden_layers')} layers, width "
        f"{qformer.get('hidden_size')}) whose {config.get('num_query_tokens')} learned queries read the image "
        f"together with the instruction, so the visual features depend on the instruction; a linear projection "
        f"turns them into {config.get('num_query_tokens')} visual tokens (per image, or per video frame) for a "
        f"frozen {llm_kind} `{text.get('model_type')}` LLM ({layers} layers, width {width}), which also reads the "
        "instruction."
    )


def _table(rows: dict) -> str:
    return "\n".join(["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows.items()])


def write_model_card(
    folder,
    *,
    model_name: str,
    base_models=(),
    datasets=(),
    proportions: dict | None = None,
    sampling: str = "sqrt",
    hyperparameters: dict | None = None,
    eval_metrics: dict | None = None,
    data_report: dict | None = None,
    lora: dict | None = None,
    zero_shot_results: dict | None = None,
    user_sources: dict | None = None,
    not_zero_shot_on=None,
    origin: str = "instruction-tuned with this repository's `train.py`",
    license: str = "other",
    repo_id: str | None = None,
    revision: str | None = None,
) -> str:
    """Write `folder/README.md` and return its path.

    `proportions`, `hyperparameters`, `data_report`, `lora` describe a training run (the mixture's
    sampling probabilities, the recipe, records skipped); `eval_metrics` are held-in validation
    metrics (`eval_loss`, `eval_answer_accuracy`); `zero_shot_results` is `evaluate.py`'s
    `results.json`. Both kinds of results go to the `model-index` metadata and to tables.
    `user_sources` ({name: {"origin", "hub_dataset"}}) are the mixture's sources from the user's own data
    (train.py --train_file / --dataset_name): the card says where each came from.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    inputs = {k: v for k, v in locals().items() if k not in ("folder", "EvalResult", "ModelCard", "ModelCardData")}
    # each base model: a name, or (name, what was taken from it); only Hub ids go to the metadata
    base_list = [(m, None) if isinstance(m, str) else tuple(m) for m in base_models]
    config = json.loads((folder / "config.json").read_text())
    eval_results = [
        EvalResult(
            task_type="image-text-to-text",
            dataset_type="held-in-validation",
            dataset_name="held-in validation (" + ", ".join(datasets) + ")",
            metric_type=key.removeprefix("eval_"),
            metric_value=float(value),
        )
        for key, value in (eval_metrics or {}).items()
        if key in ("eval_loss", "eval_answer_accuracy")
    ]
    if zero_shot_results:
        from evaluation.report import eval_results as zero_shot_eval_results

        eval_results += zero_shot_eval_results(zero_shot_results)
    user_sources = user_sources or {}
    hub_datasets = sorted({HUB_DATASET_IDS[d] for d in datasets if d in HUB_DATASET_IDS and d not in user_sources}
                          | {s["hub_dataset"] for s in user_sources.values() if s.get("hub_dataset")})
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["instructblip", "vision-language", "instruction-tuning", "custom_code"],
        base_model=[name for name, _ in base_list
                    if HUB_ID.fullmatch(name) and not name.endswith(LAVIS_SUFFIXES) and not Path(name).exists()] or None,
        datasets=hub_datasets or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    repo = repo_id or model_name
    pin = f'"{revision}"' if revision else '"<commit sha>"  # pin the commit you evaluated'
    usage = f"""```python
from PIL import Image
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{repo}", trust_remote_code=True, revision={pin})
processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True, revision={pin})
inputs = processor(images=Image.open("photo.jpg"), text="What is in the image? Short answer:", return_tensors="pt")
ids = model.generate(**inputs)  # the paper's decoding defaults, from generation_config.json
print(processor.post_process_generation(ids, inputs["input_ids"])[0])
```

Batched prompts for a decoder-only LLM: `processor(..., padding_side="left")`. Classification and
multiple choice the paper's way: `model.rank_candidates(**processor.tokenize_candidates([["yes", "no"]]), **inputs)`."""
    sections = [
        f"# {model_name}",
        describe_architecture(config) + f" This model was {origin}.",
        "## How to use\n\n" + usage,
        "## Intended use and limitations\n\n"
        "For research on instruction-following vision-language models: visual question answering, "
        "captioning, visual reasoning and dialogue about an image or a short video, in English. It "
        "inherits the biases and failure modes of its LLM and of web image-text data, and it can describe "
        "things that are not in the image (hallucination); do not use it for decisions about people, or "
        "where a wrong answer causes harm. Its base models' licences apply (e.g. Vicuna's LLaMA licence "
        "forbids commercial use; FlanT5 is Apache-2.0).",
        "## Base models\n\n" + ("\n".join(f"- `{m}`" + (f": {role}" if role else "") for m, role in base_list)
                                 or "- none (trained from scratch)"),
    ]
    if not_zero_shot_on:
        sections.append(
            "## Not zero-shot on " + ", ".join(not_zero_shot_on) + "\n\n"
            "This model was fine-tuned on these held-out datasets (`--finetune_on_held_out`, the paper's Table 3 "
            "setting): its scores on them are fine-tuned results, not zero-shot ones, and must not be compared with "
            "the paper's Table 1. `evaluate.py` reports them as fine-tuned (the list is `trained_on_held_out` in "
            "config.json)."
        )
    if proportions and user_sources:
        def where(name):
            return f"own data: `{user_sources[name]['origin']}`" if name in user_sources else "official release, rebuilt"
        mixture = "\n".join(f"| {name} | {where(name)} | {p:.4f} |" for name, p in proportions.items())
        sections.append(
            "## Training data\n\nEach source drawn with probability "
            f"{SAMPLING_TEXT[sampling]} times a per-source multiplier. The paper's held-in datasets are rebuilt "
            "from their official releases and each example gets a freshly drawn instruction template; the "
            "instructions of the trainer's own data are used as written:\n\n"
            "| dataset | source | probability |\n|---|---|---|\n" + mixture
        )
    elif proportions:
        mixture = "\n".join(f"| {name} | {p:.4f} |" for name, p in proportions.items())
        sections.append(
            "## Training data\n\nHeld-in datasets, rebuilt from their official releases, drawn with "
            f"probability {SAMPLING_TEXT[sampling]} times a per-dataset multiplier; each example gets a "
            "freshly drawn instruction template:\n\n| dataset | probability |\n|---|---|\n" + mixture
        )
    elif datasets:
        sections.append("## Training data\n\n" + "\n".join(f"- {d}" for d in datasets))
    if hyperparameters:
        sections.append("## Training recipe\n\n" + _table(hyperparameters))
    if lora:
        sections.append("## LoRA\n\n" + _table(lora))
    if data_report:
        sections.append("## Records skipped\n\n" + _table(data_report))
    if eval_metrics:
        sections.append("## Held-in validation\n\n" + _table(eval_metrics))
    if zero_shot_results:
        from evaluation.report import markdown_table

        sections.append(
            "## Zero-shot evaluation\n\nHeld-out datasets with the paper's protocols (`evaluate.py`); only scores "
            "on a full official split stand beside the paper's Table 1:\n\n" + markdown_table(zero_shot_results)
        )
    from training.report import LOSS_CURVE_FILENAME  # the training run writes it

    if (folder / LOSS_CURVE_FILENAME).exists():
        sections.append(f"## Loss curve\n\n![loss curve]({LOSS_CURVE_FILENAME})")
    sections.append("## Citation\n\n```bibtex\n" + CITATION + "\n```")
    card = ModelCard("---\n" + card_data.to_yaml() + "\n---\n\n" + "\n\n".join(sections) + "\n")
    path = folder / "README.md"
    card.save(path)
    (folder / CARD_INPUTS_FILENAME).write_text(json.dumps(inputs, indent=1, default=str))
    return str(path)


def rewrite_with_results(folder, eval_dir=None, **changes) -> str:
    """Write the card again from its saved inputs, adding `eval_dir/results.json` (from `evaluate.py`)
    and any other `changes` (e.g. `repo_id`, `revision`)."""
    folder = Path(folder)
    saved = folder / CARD_INPUTS_FILENAME
    if not saved.exists():
        raise FileNotFoundError(f"{saved} not found: write the card with write_model_card first (train.py does)")
    inputs = json.loads(saved.read_text())
    if eval_dir is not None:
        results = Path(eval_dir) / "results.json"
        if not results.exists():
            raise FileNotFoundError(f"{results} not found: run evaluate.py with --output_dir {eval_dir}")
        inputs["zero_shot_results"] = json.loads(results.read_text())
    inputs.update(changes)
    return write_model_card(os.fspath(folder), **inputs)
