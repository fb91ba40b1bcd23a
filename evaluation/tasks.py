"""The evaluation tasks, one table: the 13 held-out datasets of the paper's Table 1 and the held-in
ones that are cheap to score, each with its split, inference kind, decoding settings, candidates,
metric and references.

A task answers three questions:
- what the model sees: the record's `instruction` (held-out records already carry the paper's
  zero-shot prompt, dataset_builders/templates.py) or, for held-in records, whose instruction is a
  randomly drawn training template, a fixed prompt filled from the record's fields;
- how it answers: `generate` (beam search with the settings below) or `rank` (every candidate's
  teacher-forced log-likelihood, summed over its tokens as LAVIS does; the best one wins);
- how the answers are scored: `metric` on `references` (a record field).

Decoding follows LAVIS: short answers use `predict_answers`' defaults (lavis/models/blip2_models/
blip2_{vicuna,t5}_instruct.py): beams 5, max_len 10, min_len 1, length penalty 0 (Vicuna) / -1 (FlanT5);
captions lavis/projects/blip2/eval/caption_nocaps_out_domain_flant5xl_eval.yaml: beams 5, max_len 80,
min_len 10, length penalty 1; every `generate` call keeps LAVIS's repetition penalty 1.5 (the default of
`generate` in those model files). `max_len` / `min_len` are LAVIS's
arguments, mapped to the new tokens they gave: FlanT5 gets `max_new_tokens=max_len` and
`min_length=min_len`, which counts the decoder start token (min_len 10: 9 new tokens at least);
Vicuna gets `generate(inputs_embeds=..., max_length=max_len, min_length=min_len)`, which under the
transformers LAVIS ran (4.28-4.33) counts a seeded BOS: max_len - 1 new tokens at most and
min_len - 1 at least (min_len 1 allows an empty answer).

Binary tasks (VSR, HatefulMemes) rank the verbalisers: positive {yes, true}, negative {no,
false}. A side's probability is the sum of its verbalisers' probabilities; the prediction is the
likelier side, and `positive_score` = P(positive) / (P(positive) + P(negative)) feeds ROC AUC.
Both builders order `choices` as [negative, positive], so the predicted index is 0 or 1.

Any field can be overridden with `apply_overrides(tasks, ["gqa.num_beams=3", "*.max_len=5"])`.
This module describes tasks and turns model outputs into metric inputs; it runs no model and
reads no file (runner.py does).
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field

from dataset_builders import DATASETS
from dataset_builders.schema import HELD_OUT
from dataset_builders.templates import (
    CAPTION_PROMPT,
    ICONQA_PROMPT,
    SHORT_ANSWER_PROMPT,
    format_choices_lettered,
    format_ocr_tokens,
)
from metrics.accuracy.accuracy import accuracy
from metrics.aokvqa.aokvqa import aokvqa
from metrics.cider.cider import cider
from metrics.ivqa_accuracy.ivqa_accuracy import ivqa_accuracy
from metrics.mrr.mrr import mrr
from metrics.roc_auc.roc_auc import roc_auc
from metrics.vqa_accuracy.vqa_accuracy import normalize_vqa_answer, vqa_accuracy

GENERATE = "generate"
RANK = "rank"

# Candidate sources for ranking.
CHOICES = "choices"  # the record's own `choices`
VERBALISERS = "verbalisers"  # POSITIVE + NEGATIVE, for binary tasks
POSITIVE_VERBALISERS = ("yes", "true")
NEGATIVE_VERBALISERS = ("no", "false")

# Metric name -> plain function (metrics/<name>/<name>.py); each returns {name: score, ...}, 0-100.
METRICS = {
    "cider": cider,
    "vqa_accuracy": vqa_accuracy,
    "accuracy": accuracy,
    "ivqa_accuracy": ivqa_accuracy,
    "mrr": mrr,
    "roc_auc": roc_auc,
    "aokvqa": aokvqa,
}
NORMALIZERS = {"vqa": normalize_vqa_answer}

# Fixed prompts of held-in tasks ("{}" slots filled from `prompt_fields`, in order).
TEXTCAPS_PROMPT = "OCR tokens: {}. " + CAPTION_PROMPT  # LAVIS fills TextCaps' "{}" with the first 30 OCR tokens


@dataclass
class Task:
    """One evaluation task. `name` is its key; several tasks may read one dataset (aokvqa_mc, aokvqa_da)."""

    name: str
    title: str  # as the paper's tables print it
    dataset: str  # dataset_builders name (its role comes from dataset_builders.DATASETS); data under <data_dir>/<dataset>/
    split: str
    inference: str  # GENERATE or RANK
    metric: str  # key of METRICS; the headline score is result[metric]
    references: str  # record field holding the references: "answers", "target" or "answer_index"
    prompt: str | None = None  # None: the record's `instruction`; else a template filled from prompt_fields
    prompt_fields: tuple = ()  # record fields for the template's "{}" slots: question, choices, ocr_tokens
    normalize: str | None = None  # key of NORMALIZERS, applied before matching strings
    # generate
    num_beams: int = 5
    max_len: int = 10
    min_len: int = 1
    length_penalty_decoder_only: float = 0.0  # Vicuna
    length_penalty_encoder_decoder: float = -1.0  # FlanT5
    repetition_penalty: float = 1.5
    # rank
    candidates: str | None = None  # CHOICES or VERBALISERS
    length_normalize: bool = False  # score candidates by mean instead of summed log-likelihood
    candidate_batch_size: int | None = None  # candidates scored at once per sample (None: all)
    builder_options: dict = field(default_factory=dict)  # passed to dataset_builders.load
    # the full official split: records the builder emits from it (None: not recorded) and what one record is;
    # only a run on exactly that many records may stand beside published numbers (runner.data_provenance)
    official_records: int | None = None
    record_unit: str = "questions"

    @property
    def held_out(self) -> bool:
        """Whether the dataset is held out (zero-shot, the paper's Table 1), as the registry states it."""
        return DATASETS[self.dataset].role == HELD_OUT


# LAVIS's predict_answers (short-answer VQA) and captioning eval configs
SHORT_ANSWER = dict(num_beams=5, max_len=10, min_len=1,
                    length_penalty_decoder_only=0.0, length_penalty_encoder_decoder=-1.0)
CAPTIONING = dict(num_beams=5, max_len=80, min_len=10,
                  length_penalty_decoder_only=1.0, length_penalty_encoder_decoder=1.0)
QUESTION = ("question",)

# fmt: off
TASKS = {task.name: task for task in [
    # held-out, in Table 1's column order; prompts come with the records
    Task("nocaps", "NoCaps", "nocaps", "validation", GENERATE, "cider", "answers", **CAPTIONING),
    Task("flickr30k", "Flickr30K", "flickr30k", "test", GENERATE, "cider", "answers", **CAPTIONING),
    Task("gqa", "GQA", "gqa", "test_dev", GENERATE, "accuracy", "target", normalize="vqa", **SHORT_ANSWER,
         official_records=12_578),
    Task("vsr", "VSR", "vsr", "test", RANK, "accuracy", "answer_index", candidates=VERBALISERS),
    Task("iconqa", "IconQA", "iconqa", "test", RANK, "accuracy", "answer_index", candidates=CHOICES),
    Task("textvqa", "TextVQA", "textvqa", "validation", GENERATE, "vqa_accuracy", "answers", **SHORT_ANSWER),
    Task("visdial", "Visdial", "visdial", "validation", RANK, "mrr", "answer_index", candidates=CHOICES),
    Task("hateful_memes", "HM", "hateful_memes", "validation", RANK, "roc_auc", "answer_index",
         candidates=VERBALISERS),
    # the paper reports VizWiz test-dev (evaluation server); val is the split with public answers
    Task("vizwiz", "VizWiz", "vizwiz", "validation", GENERATE, "vqa_accuracy", "answers", **SHORT_ANSWER),
    Task("scienceqa", "SciQA", "scienceqa", "test", RANK, "accuracy", "answer_index", candidates=CHOICES),
    Task("msvd_qa", "MSVD", "msvd_qa", "test", RANK, "accuracy", "answer_index", candidates=CHOICES,
         candidate_batch_size=128),
    Task("msrvtt_qa", "MSRVTT", "msrvtt_qa", "test", RANK, "accuracy", "answer_index", candidates=CHOICES,
         candidate_batch_size=128),
    Task("ivqa", "iVQA", "ivqa", "test", GENERATE, "ivqa_accuracy", "answers", normalize="vqa", **SHORT_ANSWER),
    # held-in validation splits (checkpoint selection); fixed prompts replace the records' random templates
    Task("coco_caption", "COCO Caption", "coco_caption", "validation", GENERATE, "cider", "answers",
         prompt=CAPTION_PROMPT, **CAPTIONING),
    Task("textcaps", "TextCaps", "textcaps", "validation", GENERATE, "cider", "answers",
         prompt=TEXTCAPS_PROMPT, prompt_fields=("ocr_tokens",), **CAPTIONING),
    Task("vqav2", "VQAv2", "vqav2", "validation", GENERATE, "vqa_accuracy", "answers",
         prompt=SHORT_ANSWER_PROMPT, prompt_fields=QUESTION, **SHORT_ANSWER),
    Task("okvqa", "OK-VQA", "okvqa", "validation", GENERATE, "vqa_accuracy", "answers",
         prompt=SHORT_ANSWER_PROMPT, prompt_fields=QUESTION, **SHORT_ANSWER),
    Task("aokvqa_mc", "A-OKVQA MC", "aokvqa", "validation", RANK, "aokvqa", "answer_index",
         prompt=ICONQA_PROMPT, prompt_fields=("question", "choices"), candidates=CHOICES),
    Task("aokvqa_da", "A-OKVQA DA", "aokvqa", "validation", GENERATE, "aokvqa", "answers",
         prompt=SHORT_ANSWER_PROMPT, prompt_fields=QUESTION, **SHORT_ANSWER),
    Task("ocrvqa", "OCR-VQA", "ocrvqa", "validation", GENERATE, "accuracy", "target", normalize="vqa",
         prompt=SHORT_ANSWER_PROMPT, prompt_fields=QUESTION, **SHORT_ANSWER),
]}
# fmt: on

HELD_OUT_TASKS = tuple(name for name, task in TASKS.items() if task.held_out)
HELD_IN_TASKS = tuple(name for name, task in TASKS.items() if not task.held_out)


# -- selecting and overriding ---------------------------------------------------------------------


def select_tasks(names, overrides=()) -> list[Task]:
    """Tasks by name (a list, or a comma-separated str; "held_out", "held_in" and "all" expand),
    with `overrides` ("task.field=value", "*" for every task) applied."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    groups = {"held_out": HELD_OUT_TASKS, "held_in": HELD_IN_TASKS, "all": tuple(TASKS)}
    expanded = []
    for name in names:
        for member in groups.get(name, (name,)):
            if member not in TASKS:
                raise KeyError(f"unknown task {member!r}; known: {', '.join(TASKS)} (or held_out, held_in, all)")
            if member not in expanded:
                expanded.append(member)
    return apply_overrides([TASKS[name] for name in expanded], overrides)


def apply_overrides(tasks: list[Task], overrides) -> list[Task]:
    """Copies of `tasks` with each "task.field=value" applied; the value is read as JSON when it
    parses (3, -1.0, null, true, {"errors": "skip"}), else as a string. "*.field=value" sets every task."""
    tasks = list(tasks)
    by_name = {task.name: i for i, task in enumerate(tasks)}
    fields = {f.name: f for f in dataclasses.fields(Task)}
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        task_name, dot, field_name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {override!r}: expected task.field=value, e.g. gqa.num_beams=3")
        if field_name not in fields or field_name == "name":
            raise ValueError(f"override {override!r}: Task has no settable field {field_name!r}")
        if task_name != "*" and task_name not in by_name:
            raise ValueError(f"override {override!r}: task {task_name!r} is not among {list(by_name)}")
        value = _parse_value(raw_value.strip(), fields[field_name].type)
        targets = range(len(tasks)) if task_name == "*" else [by_name[task_name]]
        for i in targets:
            tasks[i] = dataclasses.replace(tasks[i], **{field_name: value})
    return tasks


def _parse_value(text: str, annotation):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    wanted = str(annotation)
    if "float" in wanted and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if "tuple" in wanted and isinstance(value, list):
        value = tuple(value)
    return value


# -- what the model sees ----------------------------------------------------------------------------


def build_prompt(task: Task, record: dict) -> str:
    """The text given to the model for `record`: its instruction, or the task's fixed prompt."""
    if task.prompt is None:
        return record["instruction"]
    fillers = {
        "question": lambda r: r["question"],
        "choices": lambda r: format_choices_lettered(r["choices"]),
        "ocr_tokens": lambda r: format_ocr_tokens(r["ocr_tokens"]),
    }
    return task.prompt.format(*(fillers[name](record) for name in task.prompt_fields))


def candidates_for(task: Task, record: dict) -> list[str]:
    """The answers a ranking task scores for `record`."""
    if task.candidates == VERBALISERS:
        return list(POSITIVE_VERBALISERS + NEGATIVE_VERBALISERS)
    if task.candidates == CHOICES:
        if not record["choices"]:
            raise ValueError(f"{task.name}: record {record['id']} has no choices to rank")
        return list(record["choices"])
    raise ValueError(f"{task.name}: unknown candidate source {task.candidates!r}")


def generate_kwargs(task: Task, is_encoder_decoder: bool) -> dict:
    """Keyword arguments for `model.generate` (they override the model's generation_config)."""
    kwargs = dict(do_sample=False, num_beams=task.num_beams, repetition_penalty=task.repetition_penalty)
    if is_encoder_decoder:
        # LAVIS passes min_length to T5, where it counts the decoder start token
        kwargs.update(
            max_new_tokens=task.max_len, min_length=task.min_len, min_new_tokens=None,
            length_penalty=task.length_penalty_encoder_decoder,
        )
    else:  # LAVIS's max_length / min_length counted the BOS transformers 4.28-4.33 seeded the output with
        kwargs.update(
            max_new_tokens=max(task.max_len - 1, 1), min_new_tokens=max(task.min_len - 1, 0),
            length_penalty=task.length_penalty_decoder_only,
        )
    return kwargs


# -- from model outputs to metric inputs --------------------------------------------------------------


def references_for(task: Task, record: dict):
    """The references the metric compares this record's prediction with."""
    value = record[task.references]
    return list(value) if isinstance(value, (list, tuple)) else value


MAX_STORED_SCORES = 10  # rows keep every candidate's score up to this many (MRR: always), else the top 5


def rank_prediction(task: Task, record: dict, scores: list[float]) -> dict:
    """Turn candidate scores (log-likelihoods, in `candidates_for` order) into the row fields:
    `choice_index` (index into the record's `choices`), `prediction` (that choice), `scores` (or, for
    long candidate lists such as MSVD-QA's 1000 answers, `top_scores`: the best 5 as [candidate, score]),
    and for verbalisers `positive_score` (P(positive side), normalised over both sides)."""
    scores = [float(s) for s in scores]
    if task.metric == "mrr" or len(scores) <= MAX_STORED_SCORES:
        row = {"scores": scores}
    else:
        candidates = candidates_for(task, record)
        best = sorted(range(len(scores)), key=lambda k: (-scores[k], k))[:5]
        row = {"top_scores": [[candidates[k], scores[k]] for k in best]}
    if task.candidates == VERBALISERS:
        positive = _logsumexp(scores[: len(POSITIVE_VERBALISERS)])
        negative = _logsumexp(scores[len(POSITIVE_VERBALISERS) :])
        row["positive_score"] = 1.0 / (1.0 + math.exp(min(negative - positive, 700.0)))
        index = 1 if positive > negative else 0  # choices are [negative, positive]
    else:
        index = max(range(len(scores)), key=lambda k: (scores[k], -k))  # first of equal scores wins
    row["choice_index"] = index
    row["prediction"] = record["choices"][index] if record["choices"] else candidates_for(task, record)[index]
    return row


def _logsumexp(values) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def metric_prediction(task: Task, row: dict):
    """What the metric takes from a prediction row: the text, the chosen index, all candidate
    scores (MRR) or the positive score (ROC AUC)."""
    if task.inference == GENERATE:
        return row["prediction"]
    if task.metric == "mrr":
        return row["scores"]
    if task.metric == "roc_auc":
        return row["positive_score"]
    return row["choice_index"]


def compute_metrics(task: Task, rows: list[dict]) -> dict:
    """The task's metric over prediction rows ({"prediction", "references", ...}); 0-100."""
    kwargs = {"normalize": NORMALIZERS[task.normalize]} if task.normalize else {}
    predictions = [metric_prediction(task, row) for row in rows]
    return METRICS[task.metric](predictions, [row["references"] for row in rows], **kwargs)
