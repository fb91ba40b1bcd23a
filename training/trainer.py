"""The HF `Trainer` with what the paper's recipe needs and the stock one lacks: weight decay on
>=2-D tensors only, the linear-warmup-from-1e-8 + cosine-to-0 schedule, the count of records the
data pipeline replaced, and a held-in short-answer accuracy next to the validation loss.

Loss scaling is the Trainer's own: the model's `forward` takes `num_items_in_batch` (so
`model_accepts_loss_kwargs` is True) and divides its summed token loss by it, which keeps gradient
accumulation and multi-process batches exact. This module must not build data or models.
"""

import logging
import math

import torch
from transformers import Trainer

from .data import answer_accuracy, open_image

logger = logging.getLogger(__name__)


def paper_lr_lambda(warmup_steps: int, total_steps: int, start_factor: float):
    """LR multiplier: linear from `start_factor` (1e-8 / 1e-5 in the paper) to 1 over `warmup_steps`,
    then cosine to 0 at `total_steps` (LAVIS's `linear_warmup_cosine_lr`, stepped per iteration)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start_factor + (1.0 - start_factor) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class GenerationEval:
    """Greedy (or beam) answers to held-in validation short-answer questions -> `answer_accuracy`.

    `records` are validation records with undecoded images. This is the in-loop stand-in for
    `evaluation.run_tasks`: swapping it for that runner (held-in tasks, paper metrics) changes only
    what `__call__` returns.
    """

    def __init__(self, processor, records: list[dict], batch_size: int = 8, max_new_tokens: int = 10, num_beams: int = 1):
        self.processor = processor
        self.records = records
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams

    @torch.no_grad()
    def predict(self, model) -> list[str]:
        """The model's answers to `records`, in order (the model is left in the mode it was in)."""
        was_training = model.training
        model.eval()
        predictions = []
        device = next(model.parameters()).device
        for start in range(0, len(self.records), self.batch_size):
            chunk = self.records[start : start + self.batch_size]
            inputs = self.processor(
                images=[open_image(r["image"]) for r in chunk],
                text=[r["instruction"] for r in chunk],
                padding_side="left",
                return_tensors="pt",
            ).to(device)
            generated = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False, min_new_tokens=1
            )
            predictions.extend(self.processor.post_process_generation(generated, inputs["input_ids"]))
        model.train(was_training)
        return predictions

    def __call__(self, model) -> dict:
        return {"answer_accuracy": answer_accuracy(self.predict(model), self.records)}


class InstructBlipTrainer(Trainer):
    """`Trainer` + the paper's optimiser groups and schedule, skipped-record counting, generation eval."""

    def __init__(self, *args, generation_eval: GenerationEval | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generation_eval = generation_eval
        self.skipped_records = 0  # this process's count; `total_skipped_records` sums over processes

    def _build_accelerator_args(self, **kwargs) -> dict:
        # where the Trainer (transformers 5.x) builds accelerate's TorchDynamoPlugin from --torch_compile;
        # `compile_regions` picks its regional compilation (otherwise read from an environment variable)
        args = super()._build_accelerator_args(**kwargs)
        plugin = args.get("dynamo_plugin")
        if plugin is not None and getattr(self.args, "compile_regions", None) is not None:
            plugin.use_regional_compilation = self.args.compile_regions
        return args

    def get_decay_parameter_names(self, model) -> list[str]:
        # LAVIS: no decay for tensors under 2-D (biases, norms); query_tokens [1, 32, 768] decays
        return [name for name, param in model.named_parameters() if param.ndim >= 2]

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        start_lr = getattr(self.args, "warmup_start_lr", None)
        if self.lr_scheduler is None and start_lr is not None:
            optimizer = optimizer or self.optimizer
            warmup = self.args.get_warmup_steps(num_training_steps)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, paper_lr_lambda(warmup, num_training_steps, start_lr / self.args.learning_rate)
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = inputs.pop("num_skipped_records", None)
        if skipped is not None and model.training:
            self.skipped_records += int(skipped.sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs.pop("num_skipped_records", None)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def log(self, logs: dict, start_time=None):
        if "loss" in logs:
            logs["skipped_records"] = self.skipped_records
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        if self.generation_eval is not None and eval_dataset is None:
            # every process answers the same few questions: small, and no gather needed
            extra = {f"{metric_key_prefix}_{k}": v for k, v in self.generation_eval(self.model).items()}
            self.log(extra)
            metrics.update(extra)
        return metrics

    def total_skipped_records(self) -> int:
        """Records replaced by the data pipeline during training, summed over processes."""
        count = torch.tensor([self.skipped_records], device=self.args.device)
        return int(self.accelerator.reduce(count, reduction="sum").item())
