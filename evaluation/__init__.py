"""Zero-shot evaluation of InstructBLIP with the paper's protocols (Table 1), and held-in validation.

    from evaluation import run_tasks
    results = run_tasks(model, processor, ["gqa", "textvqa"], data_dir="/data", output_dir="eval")

`tasks.py` is the table of tasks (prompts, decoding, candidates, metrics), `runner.py` runs them
(batched, resumable, under `accelerate launch` too), `report.py` writes the results JSON, the
Table 1 comparison (markdown and PNG) and model-card `model-index` entries. `evaluate.py` at the
repository root is the command line.
"""

from .report import eval_results, markdown_table, model_index, plot_comparison, write_report
from .runner import distributed_state, load_records, predict_batch, run_task, run_tasks
from .tasks import HELD_IN_TASKS, HELD_OUT_TASKS, TASKS, Task, apply_overrides, select_tasks

__all__ = [
    "HELD_IN_TASKS",
    "HELD_OUT_TASKS",
    "TASKS",
    "Task",
    "apply_overrides",
    "distributed_state",
    "eval_results",
    "load_records",
    "markdown_table",
    "model_index",
    "plot_comparison",
    "predict_batch",
    "run_task",
    "run_tasks",
    "select_tasks",
    "write_report",
]
