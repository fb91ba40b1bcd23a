"""Run `train.py` with probes, for the multi-process and resume tests (tests/training/test_train.py,
tests/test_reliability.py).

    python tests/training/train_fixtures.py <train.py arguments>         (or under `accelerate launch`)

The probes write into `$TRAIN_PROBE_DIR`: `draws_rank<R>.txt`, the draw seeds (one per sample,
unique per record position and epoch) of every batch the rank trained on, and
`weights_rank<R>.txt`, a digest of the trainable weights after each optimiser step.
`$TRAIN_STEP_SLEEP` seconds of sleep after each step give a test time to kill the run mid-way.
"""

import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


def load_train_script():
    """train.py as the module `train_script`, loaded once per process (a second copy's argument classes
    would not be the ones the Trainer pickles)."""
    if "train_script" in sys.modules:
        return sys.modules["train_script"]
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_script"] = module
    spec.loader.exec_module(module)
    return module


def weights_digest(model) -> str:
    """Sum and sum of squares of every trainable tensor, to 10 significant digits."""
    values = []
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            data = param.detach().double()
            values.append(f"{name}:{data.sum().item():.10e}:{(data * data).sum().item():.10e}")
    return ";".join(values)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


class ProbeCallback(TrainerCallback):
    def __init__(self, probe_dir: str, sleep: float):
        self.probe_dir = probe_dir
        self.sleep = sleep

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with open(os.path.join(self.probe_dir, f"weights_rank{_rank()}.txt"), "a") as f:
            f.write(f"{state.global_step} {weights_digest(model)}\n")
        if self.sleep:
            time.sleep(self.sleep)


def main():
    train = load_train_script()
    probe_dir = os.environ["TRAIN_PROBE_DIR"]
    os.makedirs(probe_dir, exist_ok=True)
    sleep = float(os.environ.get("TRAIN_STEP_SLEEP", "0"))

    class RecordingCollator(train.InstructBlipCollator):
        def collate(self, samples):  # prepared samples (a stream's are prepared by the collator)
            if all(s["train"] for s in samples):
                with open(os.path.join(probe_dir, f"draws_rank{_rank()}.txt"), "a") as f:
                    f.write(" ".join(str(s["seed"]) for s in samples) + "\n")
            return super().collate(samples)

    class ProbedTrainer(train.InstructBlipTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(ProbeCallback(probe_dir, sleep))

    train.InstructBlipCollator = RecordingCollator
    train.InstructBlipTrainer = ProbedTrainer
    torch.set_num_threads(1)
    train.main(sys.argv[1:])


if __name__ == "__main__":
    main()
