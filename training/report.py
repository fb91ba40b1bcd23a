"""What a training run leaves next to the model: the loss curve, the model card, and the upload.

The card is written with `huggingface_hub.ModelCard` (metadata: base models, datasets,
`model-index` eval results); the upload is one `HfApi.upload_folder` of the finished folder, so what
the tests check on disk is exactly what would be pushed. Nothing here touches the network unless
`push_folder` is called.
"""

import logging
import os

logger = logging.getLogger(__name__)

LOSS_CURVE_FILENAME = "loss_curve.png"


def plot_loss_curve(log_history: list[dict], path: str) -> str | None:
    """Training loss (and validation loss, if any) against the optimiser step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not evals:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    if train:
        axis.plot(*zip(*train), label="train loss")
    if evals:
        axis.plot(*zip(*evals), "o-", label="held-in validation loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (per target token)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _table(rows: dict) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)


def write_model_card(
    folder: str,
    *,
    model_name: str,
    base_models: list[str],
    datasets: list[str],
    proportions: dict,
    hyperparameters: dict,
    eval_metrics: dict | None = None,
    data_report: dict | None = None,
    lora: dict | None = None,
) -> str:
    """Write `folder/README.md`: YAML metadata (`ModelCardData`) and a short description of how the
    model was trained. Returns the path."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

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
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["instructblip", "vision-language", "instruction-tuning", "custom_code"],
        base_model=base_models or None,
        datasets=datasets,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    mixture = "\n".join(f"| {name} | {p:.4f} |" for name, p in proportions.items())
    sections = [
        "---\n" + card_data.to_yaml() + "\n---",
        f"# {model_name}",
        "InstructBLIP (Dai et al., 2023, arXiv 2305.06500) instruction-tuned with `train.py` of "
        "instructblip-hub. Load it with `AutoModel.from_pretrained(repo, trust_remote_code=True)` and "
        "`AutoProcessor.from_pretrained(repo, trust_remote_code=True)`.",
        "## Starting point\n\n" + ("\n".join(f"- {m}" for m in base_models) or "- trained from scratch"),
        "## Training data\n\nHeld-in datasets drawn with probability proportional to "
        "sqrt(size) times a multiplier, each example with a freshly drawn instruction template:\n\n"
        "| dataset | probability |\n|---|---|\n" + mixture,
        "## Hyperparameters\n\n" + _table(hyperparameters),
    ]
    if lora:
        sections.append("## LoRA\n\n" + _table(lora))
    if data_report:
        sections.append("## Records skipped\n\n" + _table(data_report))
    if eval_metrics:
        sections.append("## Evaluation (held-in validation)\n\n" + _table(eval_metrics))
    if os.path.exists(os.path.join(folder, LOSS_CURVE_FILENAME)):
        sections.append(f"## Loss curve\n\n![loss curve]({LOSS_CURVE_FILENAME})")
    card = ModelCard("\n\n".join(sections) + "\n")
    path = os.path.join(folder, "README.md")
    card.save(path)
    return path


def push_folder(folder: str, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str = "InstructBLIP instruction tuning") -> str:
    """Create `repo_id` if needed and upload the finished model folder (checkpoints and run logs left out)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "*.pth"],
    )
    return repo_id
