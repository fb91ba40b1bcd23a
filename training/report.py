"""What a training run leaves next to the model besides its card (`publish.model_card`) and its upload
(`publish.publish_model`): the loss curve. Nothing here touches the network.
"""

from publish.model_card import LOSS_CURVE_FILENAME


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
