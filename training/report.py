"""What a training run leaves next to the model: the loss curve and the upload (the model card is
`publish.model_card`'s). The upload is one `HfApi.upload_folder` of the finished folder, so what the
tests check on disk is exactly what would be pushed. Nothing here touches the network unless
`push_folder` is called.
"""

import logging

from publish.model_card import LOSS_CURVE_FILENAME


logger = logging.getLogger(__name__)


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
