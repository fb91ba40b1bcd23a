"""Zero-shot evaluation (evaluation/ and evaluate.py): every held-out task of Table 1 end to end on
official-format fixtures with a tiny model loaded the way the CLI loads it; prompts and decoding
settings as the paper's; metric values on scripted model outputs; the report; --limit; resuming;
and two processes giving one process's results."""

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from evaluation import TASKS, report, run_task, run_tasks
from evaluation.report import PUBLISHED_TABLE1, TABLE1_COLUMNS
from evaluation.runner import data_provenance
from evaluation.tasks import (
    HELD_IN_TASKS,
    HELD_OUT_TASKS,
    RANK,
    apply_overrides,
    generate_kwargs,
    rank_prediction,
    select_tasks,
)
from metrics.cider.cider import cider
from modeling_instructblip import tiny
from tests.dataset_builders import fixtures_heldout
from tests.dataset_builders.raw_data import RawData
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

# The first record's prompt of each held-out task on the fixtures: the paper's zero-shot prompts.
FIRST_PROMPTS = {
    "nocaps": "A short image description:",
    "flickr30k": "A short image description:",
    "gqa": "Question: Is the plate to the left of the cup? Short answer:",
    "vsr": 'Based on the image, is this statement true or false? "The teddy bear is in front of the person." Answer:',
    "iconqa": "Question: Which shape is a circle? Options: (a) square (b) circle (c) star. Short answer:",
    "textvqa": "OCR tokens: NOKIA, Connecting, People. Question: what is the brand? Short answer:",
    "visdial": "Dialog history: a man riding a bike down the street\n Question: is the photo in color Short answer:",
    "hateful_memes": 'This is an image with: "white people is this a shooting range" written on it. Is it hateful? Answer:',
    "vizwiz": "Question: Ok. There is another picture. What is this? Short answer:",
    "scienceqa": "Context: Moles live underground. Question: Which animal's feet are adapted for digging? "
                 "Options: (a) mole (b) duck (c) frog. Answer:",
    "msvd_qa": "Question: who is playing a guitar? Short answer:",
    "msrvtt_qa": "Question: what is a man playing? Short answer:",
    "ivqa": "Question: What does she wear on her hands? Short answer:",
}
NUM_RECORDS = {"nocaps": 2, "flickr30k": 1, "gqa": 1, "vsr": 2, "iconqa": 3, "textvqa": 1, "visdial": 5,
               "hateful_memes": 2, "vizwiz": 1, "scienceqa": 3, "msvd_qa": 3, "msrvtt_qa": 2, "ivqa": 2}
VIDEO_TASKS = ("msvd_qa", "msrvtt_qa", "ivqa")


# -- fixtures: official-format data under one root, tiny models saved to folders -----------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """<root>/<dataset>/ for every held-out dataset and the held-in ones we evaluate, written by the
    builders' fixture writers."""
    root = tmp_path_factory.mktemp("data")
    raw = RawData(root)
    for name in ("nocaps", "flickr30k", "gqa", "textvqa", "vizwiz", "coco_caption", "textcaps", "vqav2", "aokvqa",
                 "ocrvqa"):
        getattr(raw, name)()
    raw.vqa_format("okvqa", "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", "val2014",
                   [("What sport is this?", ["tennis"] * 4 + ["ball"] * 6)], mc=False)
    for name in ("vsr", "iconqa", "scienceqa", "visdial", "hateful_memes", "msvd_qa", "msrvtt_qa", "ivqa"):
        getattr(fixtures_heldout, f"write_{name}")(str(root / name))
    return str(root)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets-cache"))


@pytest.fixture(scope="module")
def cli():
    """evaluate.py imported under another name (as `evaluate` it would hand back the library)."""
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """kind -> a saved tiny model folder (built once per kind)."""
    folders = {}

    def folder(kind):
        if kind not in folders:
            model, processor = tiny.build(kind)
            path = tmp_path_factory.mktemp(f"tiny-{kind}")
            model.save_pretrained(path)
            processor.save_pretrained(path)
            folders[kind] = str(path)
        return folders[kind]

    return folder


@pytest.fixture
def load(cli, model_folder):
    """kind -> (model, processor) loaded from the saved folder as the CLI loads them."""
    return lambda kind: cli.load_model(model_folder(kind))


class Spy:
    """Wraps a model's generate / rank_candidates (on the instance), recording each call's inputs."""

    def __init__(self, model, fail_on_call=None):
        self.calls = []
        self.fail_on_call = fail_on_call
        for name in ("generate", "rank_candidates"):
            setattr(model, name, self._wrap(name, getattr(model, name)))

    def _wrap(self, name, method):
        def spy(**kwargs):
            self.calls.append((name, kwargs))
            if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call:
                raise KeyboardInterrupt("simulated interruption")
            return method(**kwargs)

        return spy


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def llm_prompt_ids(input_ids, attention_mask, image_token_id):
    """The prompt part of one row of the LLM input (no padding, no `<image>` placeholders)."""
    return [int(i) for i, m in zip(input_ids, attention_mask) if m and int(i) != image_token_id]


# -- the task table -------------------------------------------------------------------------------------


def test_task_table_has_table1_and_the_paper_settings():
    assert HELD_OUT_TASKS == tuple(TABLE1_COLUMNS)  # the 13 columns of Table 1, in order
    assert set(HELD_IN_TASKS) == {"coco_caption", "textcaps", "vqav2", "okvqa", "aokvqa_mc", "aokvqa_da", "ocrvqa"}
    generate = {name for name, task in TASKS.items() if task.inference == "generate"}
    assert {"nocaps", "flickr30k", "gqa", "textvqa", "vizwiz", "ivqa"} <= generate
    assert {name for name in HELD_OUT_TASKS if TASKS[name].inference == RANK} == {
        "vsr", "iconqa", "visdial", "hateful_memes", "scienceqa", "msvd_qa", "msrvtt_qa"}
    for name in ("nocaps", "flickr30k", "coco_caption", "textcaps"):  # captioning eval configs
        task = TASKS[name]
        assert (task.num_beams, task.max_len, task.min_len, task.repetition_penalty) == (5, 80, 10, 1.5)
        assert (task.length_penalty_decoder_only, task.length_penalty_encoder_decoder) == (1.0, 1.0)
        assert task.metric == "cider" and task.references == "answers"
    for name in ("gqa", "textvqa", "vizwiz", "ivqa", "vqav2", "okvqa", "aokvqa_da", "ocrvqa"):  # predict_answers
        task = TASKS[name]
        assert (task.num_beams, task.max_len, task.min_len, task.repetition_penalty) == (5, 10, 1, 1.5)
        assert (task.length_penalty_decoder_only, task.length_penalty_encoder_decoder) == (0.0, -1.0)
    assert {name: TASKS[name].metric for name in HELD_OUT_TASKS} == {
        "nocaps": "cider", "flickr30k": "cider", "gqa": "accuracy", "vsr": "accuracy", "iconqa": "accuracy",
        "textvqa": "vqa_accuracy", "visdial": "mrr", "hateful_memes": "roc_auc", "vizwiz": "vqa_accuracy",
        "scienceqa": "accuracy", "msvd_qa": "accuracy", "msrvtt_qa": "accuracy", "ivqa": "ivqa_accuracy"}
    assert TASKS["vsr"].candidates == TASKS["hateful_memes"].candidates == "verbalisers"


def test_a_tasks_held_out_flag_is_the_registrys_role_not_a_field_of_its_own():
    from dataset_builders import DATASETS
    from evaluation.tasks import Task

    assert "held_out" not in {f.name for f in dataclasses.fields(Task)}  # stated in dataset_builders.DATASETS only
    for task in TASKS.values():
        assert task.held_out == (DATASETS[task.dataset].role == "held_out"), task.name
    with pytest.raises(ValueError, match="no settable field 'held_out'"):
        apply_overrides(select_tasks("gqa"), ["gqa.held_out=false"])
    moved = apply_overrides(select_tasks("vqav2"), ["vqav2.dataset=vizwiz"])[0]  # the flag follows the dataset
    assert moved.held_out and not TASKS["vqav2"].held_out


def test_generate_kwargs_follow_lavis_per_llm():
    vqa, caption = TASKS["gqa"], TASKS["nocaps"]
    # Vicuna: LAVIS's max_length 10 / min_length 1 under transformers 4.33 counted a seeded BOS: 9 new
    # tokens at most, none at least (tests/modeling_instructblip/test_lavis_reference.py checks the ids against LAVIS's)
    assert generate_kwargs(vqa, is_encoder_decoder=False) == dict(
        do_sample=False, num_beams=5, max_new_tokens=9, min_new_tokens=0, repetition_penalty=1.5, length_penalty=0.0)
    assert generate_kwargs(vqa, is_encoder_decoder=True) == dict(
        do_sample=False, num_beams=5, max_new_tokens=10, min_length=1, min_new_tokens=None, repetition_penalty=1.5,
        length_penalty=-1.0)
    assert generate_kwargs(caption, is_encoder_decoder=True)["min_length"] == 10
    assert generate_kwargs(caption, is_encoder_decoder=False)["min_new_tokens"] == 9


def test_overrides_and_task_selection():
    tasks = select_tasks("gqa,held_out", ["gqa.num_beams=3", "*.max_len=5", "gqa.length_penalty_decoder_only=2",
                                          "vsr.split=validation", 'gqa.builder_options={"errors": "skip"}'])
    assert [task.name for task in tasks] == list(HELD_OUT_TASKS[2:3]) + [n for n in HELD_OUT_TASKS if n != "gqa"]
    gqa = tasks[0]
    assert (gqa.num_beams, gqa.max_len, gqa.length_penalty_decoder_only) == (3, 5, 2.0)
    assert isinstance(gqa.length_penalty_decoder_only, float) and gqa.builder_options == {"errors": "skip"}
    assert tasks[1].max_len == 5 and TASKS["gqa"].num_beams == 5  # the table itself is untouched
    assert next(t for t in tasks if t.name == "vsr").split == "validation"
    assert [t.name for t in select_tasks("held_in")] == list(HELD_IN_TASKS)
    for bad in (["gqa.nope=1"], ["gqa=1"], ["vqav2.num_beams=1"]):
        with pytest.raises(ValueError):
            apply_overrides(select_tasks("gqa"), bad)
    with pytest.raises(KeyError, match="unknown task"):
        select_tasks("gqa,nocap")


def test_verbalisers_sum_each_side():
    task = TASKS["hateful_memes"]
    record = {"choices": ["no", "yes"]}
    row = rank_prediction(task, record, [-1.0, -1.0, -3.0, -3.0])  # yes, true, no, false
    assert row["choice_index"] == 1 and row["prediction"] == "yes"
    assert row["positive_score"] == pytest.approx(1 / (1 + math.exp(-2.0)))
    row = rank_prediction(task, record, [-2.0, -3.0, -1.0, -4.0])
    assert row["choice_index"] == 0 and row["prediction"] == "no"
    positive, negative = math.log(math.exp(-2) + math.exp(-3)), math.log(math.exp(-1) + math.exp(-4))
    assert row["positive_score"] == pytest.approx(math.exp(positive) / (math.exp(positive) + math.exp(negative)))


def test_long_candidate_lists_keep_only_the_best_scores():
    vocabulary = [f"answer {k}" for k in range(1000)]
    scores = [-float(k % 7) - k / 1000 for k in range(1000)]
    row = rank_prediction(TASKS["msvd_qa"], {"choices": vocabulary}, scores)
    assert row["choice_index"] == 0 and row["prediction"] == "answer 0" and "scores" not in row
    assert [candidate for candidate, _ in row["top_scores"]] == ["answer 0", "answer 7", "answer 14", "answer 21",
                                                                "answer 28"]
    assert len(rank_prediction(TASKS["visdial"], {"choices": vocabulary[:100]}, scores[:100])["scores"]) == 100


# -- every held-out task end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_every_held_out_task_runs_with_the_paper_prompts_and_settings(kind, load, data_dir, cache_dir, tmp_path):
    model, processor = load(kind)
    spy = Spy(model)
    results = run_tasks(model, processor, "held_out", data_dir, str(tmp_path / "out"), batch_size=2,
                        cache_dir=cache_dir, model_name="tiny", progress=False)
    assert list(results["tasks"]) == list(HELD_OUT_TASKS)
    is_encoder_decoder = kind == "t5"

    calls = iter(spy.calls)
    for name in HELD_OUT_TASKS:
        task, result = TASKS[name], results["tasks"][name]
        assert result["num_samples"] == NUM_RECORDS[name] and result["score"] is not None, name
        assert 0.0 <= result["score"] <= 100.0 + 1e-9
        rows = read_jsonl(tmp_path / "out" / name / "predictions.jsonl")
        assert len(rows) == NUM_RECORDS[name] and rows[0]["prompt"] == FIRST_PROMPTS[name]
        assert all(isinstance(row["prediction"], str) for row in rows)

        # the model received exactly that prompt, the settings of the table, images or 4-frame videos
        method, kwargs = next(calls)
        assert method == ("generate" if task.inference == "generate" else "rank_candidates"), name
        expected = processor(images=[Image.new("RGB", (8, 8))], text=[FIRST_PROMPTS[name]])
        first = llm_prompt_ids(kwargs["input_ids"][0], kwargs["attention_mask"][0], processor.image_token_id)
        assert first == llm_prompt_ids(expected["input_ids"][0], expected["attention_mask"][0], processor.image_token_id)
        assert kwargs["pixel_values"].shape[1:] == ((4, 3, 28, 28) if name in VIDEO_TASKS else (3, 28, 28))
        if task.inference == "generate":
            for key, value in generate_kwargs(task, is_encoder_decoder).items():
                assert kwargs[key] == value, (name, key)
            if not is_encoder_decoder:  # left padding: every prompt ends where the answer starts
                assert bool(kwargs["attention_mask"][:, -1].all())
        else:
            num_candidates = kwargs["candidate_input_ids"].shape[1]
            assert num_candidates == {"vsr": 4, "hateful_memes": 4, "visdial": 100, "iconqa": 3, "scienceqa": 3,
                                      "msvd_qa": 4, "msrvtt_qa": 4}[name]
            assert kwargs["candidate_batch_size"] == task.candidate_batch_size
            assert len(rows[0]["scores"]) == num_candidates
        for _ in range(math.ceil(NUM_RECORDS[name] / 2) - 1):
            next(calls)
    assert next(calls, None) is None


def test_held_in_tasks_use_fixed_prompts(load, data_dir, cache_dir, tmp_path):
    model, processor = load("llama")
    overrides = ["aokvqa_mc.split=train", "aokvqa_da.split=train", "ocrvqa.split=test"]
    results = run_tasks(model, processor, "held_in", data_dir, str(tmp_path), batch_size=4, cache_dir=cache_dir,
                        overrides=overrides, progress=False)
    first = {name: read_jsonl(tmp_path / name / "predictions.jsonl")[0]["prompt"] for name in HELD_IN_TASKS}
    assert first == {
        "coco_caption": "A short image description:",
        "textcaps": "OCR tokens: " + ", ".join(f"w{i}" for i in range(30)) + ". A short image description:",
        "vqav2": "Question: Is it raining? Short answer:",
        "okvqa": "Question: What sport is this? Short answer:",
        "aokvqa_mc": "Question: What is the man by the bags awaiting? Options: (a) skateboarder (b) train "
                     "(c) delivery (d) cab. Short answer:",
        "aokvqa_da": "Question: What is the man by the bags awaiting? Short answer:",
        "ocrvqa": "Question: Who wrote this book? Short answer:",
    }
    assert all(result["score"] is not None for result in results["tasks"].values())
    assert "held-in" in (tmp_path / "table1.md").read_text()


# -- metric values on scripted outputs ---------------------------------------------------------------------

# Per task, the model's scripted output for each record in dataset order: an answer (generate) or the
# candidates' log-likelihoods (rank; verbalisers in the order yes, true, no, false).
SCRIPTED = {
    "gqa": ["yes."],  # "yes" after the VQA normalisation
    "textvqa": ["nokia phone"],  # 7 of 10 leave-one-out subsets hold 3 matches, 3 hold 2: (7 + 3 * 2/3) / 10
    "vizwiz": ["unanswerable"],  # 4 humans said so: every subset has >= 3
    "ivqa": ["gloves", "bird"],  # 2 of 5 annotators -> 1; 1 of 5 -> 1/2
    "vsr": [[-1.0, -2.0, -3.0, -4.0], [-1.0, -5.0, -2.0, -3.0]],  # labels 1, 0; both predicted true
    "hateful_memes": [[-2.0, -3.0, -1.0, -4.0], [-1.0, -1.0, -3.0, -3.0]],  # labels 1, 0: the hateful one lower
    "iconqa": [[0.0, 1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],  # answers 1, 0, 1
    "scienceqa": [[1.0, 0.0, 0.0], [1.0, 0.0], [1.0, 0.0]],  # answers 0, 1, 0
    "visdial": [[-float(k) for k in range(100)]] * 5,  # ground truths at 3, 0, 99, 50, 7 -> ranks 4, 1, 100, 51, 8
    "msvd_qa": [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]],  # gold man, ball, (sleep: OOV)
    "msrvtt_qa": [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]],  # gold guitar, man
}
EXPECTED_SCORES = {
    "gqa": 100.0,
    "textvqa": 90.0,
    "vizwiz": 100.0,
    "ivqa": 75.0,
    "vsr": 50.0,
    "hateful_memes": 0.0,
    "iconqa": 100.0 * 2 / 3,
    "scienceqa": 100.0 * 2 / 3,
    "visdial": 100.0 * (1 / 4 + 1 + 1 / 100 + 1 / 51 + 1 / 8) / 5,
    "msvd_qa": 100.0 * 2 / 3,
    "msrvtt_qa": 50.0,
}


def script_outputs(model, processor, outputs):
    """Make `model` answer with `outputs` (a list consumed in call order) instead of computing."""
    from modeling_instructblip.modeling_instructblip import InstructBlipRankingOutput

    queue = list(outputs)

    def generate(input_ids, **kwargs):
        answers = [queue.pop(0) for _ in range(input_ids.shape[0])]
        encoded = processor.tokenizer(answers, add_special_tokens=False)["input_ids"]
        width = max(len(ids) for ids in encoded)
        pad = processor.tokenizer.pad_token_id
        answer_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded])
        if model.config.use_decoder_only_language_model:
            return torch.cat([input_ids, answer_ids], dim=1)
        return answer_ids

    def rank_candidates(candidate_input_ids, candidate_attention_mask, **kwargs):
        batch, num_candidates = candidate_input_ids.shape[:2]
        scores = torch.full((batch, num_candidates), -math.inf)
        for i in range(batch):
            row = queue.pop(0)
            scores[i, : len(row)] = torch.tensor(row)
        return InstructBlipRankingOutput(sum_logprobs=scores, mean_logprobs=scores, num_tokens=None)

    model.generate, model.rank_candidates = generate, rank_candidates


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_metric_values_on_scripted_outputs(name, load, data_dir, cache_dir, tmp_path):
    model, processor = load("llama")
    script_outputs(model, processor, SCRIPTED[name])
    result = run_task(model, processor, TASKS[name], data_dir, str(tmp_path), batch_size=2, cache_dir=cache_dir,
                      progress=False)
    assert result["score"] == pytest.approx(EXPECTED_SCORES[name])
    rows = read_jsonl(tmp_path / name / "predictions.jsonl")
    if name == "hateful_memes":
        assert [row["positive_score"] for row in rows] == pytest.approx(
            [1 / (1 + math.exp(math.log(math.exp(-1) + math.exp(-4)) - math.log(math.exp(-2) + math.exp(-3)))),
             1 / (1 + math.exp(-2.0))])
        assert [row["prediction"] for row in rows] == ["no", "yes"] and [r["references"] for r in rows] == [1, 0]
    if name == "msvd_qa":
        assert [row["prediction"] for row in rows] == ["man", "ball", "man"]
    if name == "textvqa":
        assert rows[0]["prediction"] == "nokia phone"


@pytest.mark.parametrize("name", ["nocaps", "flickr30k"])
def test_cider_against_every_reference_caption(name, load, data_dir, cache_dir, tmp_path):
    model, processor = load("llama")
    answers = ["caption 0", "caption 3"][: {"nocaps": 2, "flickr30k": 1}[name]]
    script_outputs(model, processor, answers)
    result = run_task(model, processor, TASKS[name], data_dir, str(tmp_path), batch_size=2, cache_dir=cache_dir,
                      progress=False)
    rows = read_jsonl(tmp_path / name / "predictions.jsonl")
    references = [row["references"] for row in rows]
    assert [len(r) for r in references] == ({"nocaps": [10, 10], "flickr30k": [5]}[name])
    assert [row["prediction"] for row in rows] == answers
    assert result["score"] == pytest.approx(cider(answers, references)["cider"])
    if name == "nocaps":  # (one Flickr image: every n-gram's document frequency is 1, so CIDEr is 0)
        assert result["score"] > 0


# -- the CLI, the report, --limit ---------------------------------------------------------------------------


def test_cli_writes_predictions_results_table_chart_and_model_index(cli, model_folder, data_dir, cache_dir, tmp_path):
    out = tmp_path / "eval"
    results = cli.main(["--model", model_folder("llama"), "--data_dir", data_dir, "--tasks", "gqa,vsr,hateful_memes",
                        "--output_dir", str(out), "--cache_dir", cache_dir, "--batch_size", "2", "--model_name",
                        "tiny-llama", "--set", "gqa.num_beams=2", "--set", "gqa.max_len=3",
                        # the fixtures stand for the full official splits of GQA and VSR (their record
                        # counts); HM's official size stays unrecorded, so HM is set apart
                        "--set", "gqa.official_records=1", "--set", "vsr.official_records=2"])
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["model"] == "tiny-llama" and list(results["tasks"]) == ["gqa", "vsr", "hateful_memes"]
    assert results["tasks"]["gqa"]["settings"]["num_beams"] == 2
    assert json.loads((out / "gqa" / "task.json").read_text())["task"]["max_len"] == 3
    for name in ("gqa", "vsr", "hateful_memes"):
        assert json.loads((out / name / "metrics.json").read_text())["score"] == results["tasks"][name]["score"]
        assert not (out / name / "partial").exists()
    row = read_jsonl(out / "gqa" / "predictions.jsonl")[0]
    assert set(row) == {"id", "prompt", "prediction", "references"} and row["id"] == "201307251"

    table = (out / "table1.md").read_text()
    for model, values in PUBLISHED_TABLE1.items():
        cells = " | ".join("–" if v is None else f"{v:.1f}" for v in values)
        assert f"| {model} | {cells} |" in table
    assert "| Model | NoCaps | Flickr | GQA | VSR | IconQA | TextVQA | Visdial | HM | VizWiz | SciQA | MSVD | MSRVTT | iVQA |" in table
    ours = (f"| **tiny-llama (ours)** | – | – | {results['tasks']['gqa']['score']:.1f} | "
            f"{results['tasks']['vsr']['score']:.1f} | – | – | – | – | – | – | – | – | – |")
    assert ours in table  # HM ran but is not a full official split: "–" in Table 1, reported below
    assert "Not in this table, because their data is not the full official split: HM (2 questions; the official " \
           "validation's size is not recorded, so it cannot be checked)." in table
    assert "| GQA (held-out) | official test_dev, all 1 question | testdev_balanced_questions.json (1) | test_dev |" in table
    gqa = results["tasks"]["gqa"]["data"]
    assert gqa["files"] == {"testdev_balanced_questions.json": 1} and gqa["num_records"] == 1
    assert gqa["comparable"] and not gqa["synthetic"] and not results["tasks"]["hateful_memes"]["comparable"]
    tasks, title = report.chart_tasks_and_title(results)
    assert tasks == ["gqa", "vsr"] and title.startswith("Zero-shot on the full official splits") and "HM" in title

    with Image.open(out / "table1.png") as image:
        image.verify()
    with Image.open(out / "table1.png") as image:
        assert image.format == "PNG" and image.size[0] > 300

    model_index = json.loads((out / "model_index.json").read_text())
    assert model_index[0]["name"] == "tiny-llama" and len(model_index[0]["results"]) == 2  # not HM's
    entry = model_index[0]["results"][0]
    assert entry["task"]["type"] == "visual-question-answering"
    assert entry["dataset"] == {"name": "GQA", "type": "gqa", "split": "test_dev"}
    assert entry["metrics"][0]["type"] == "accuracy" and entry["metrics"][0]["value"] == round(
        results["tasks"]["gqa"]["score"], 2)
    from huggingface_hub import ModelCardData

    from evaluation import eval_results

    card = ModelCardData(model_name="tiny-llama", eval_results=eval_results(results)).to_dict()
    assert card["model-index"] == model_index


def test_limit_takes_the_first_samples(load, data_dir, cache_dir, tmp_path):
    model, processor = load("llama")
    results = run_tasks(model, processor, ["visdial", "hateful_memes"], data_dir, str(tmp_path), limit=2,
                        cache_dir=cache_dir, progress=False)
    rows = read_jsonl(tmp_path / "visdial" / "predictions.jsonl")
    assert [row["id"] for row in rows] == ["185565_1", "185565_2"]
    assert results["tasks"]["visdial"]["num_samples"] == 2 and results["tasks"]["visdial"]["limit"] == 2
    results = run_tasks(model, processor, ["hateful_memes"], data_dir, str(tmp_path / "one"), limit=1,
                        cache_dir=cache_dir, model_name="tiny", progress=False)
    hm = results["tasks"]["hateful_memes"]  # one class only: no ROC AUC, but the run and report finish
    assert hm["score"] is None and "both positive and negative" in hm["metrics"]["error"]
    table = (tmp_path / "one" / "table1.md").read_text()
    assert "No published numbers are shown" in table and ("| HM (held-out) | 2 questions; the official validation's size is not "
                                                      "recorded, so it cannot be checked; first 1 evaluated (--limit) |") in table


def test_a_limited_or_incomplete_official_split_is_not_comparable(load, data_dir, cache_dir, tmp_path):
    """Only the full official split, nothing skipped and nothing cut, may stand beside the paper."""
    model, processor = load("llama")
    full = dataclasses.replace(TASKS["vsr"], official_records=2)
    result = run_task(model, processor, full, data_dir, None, cache_dir=cache_dir, progress=False)
    assert result["comparable"] and result["data"]["description"] == "official test, all 2 questions"
    result = run_task(model, processor, full, data_dir, None, limit=1, cache_dir=cache_dir, progress=False)
    assert not result["comparable"] and result["data"]["official_split"]
    assert result["data"]["description"] == "official test, all 2 questions; first 1 evaluated (--limit)"
    larger = dataclasses.replace(TASKS["vsr"], official_records=1_222)
    result = run_task(model, processor, larger, data_dir, None, cache_dir=cache_dir, progress=False)
    assert not result["comparable"] and result["data"]["description"] == "2 questions; the official test has 1,222"
    report_ = {"num_records": 2, "num_skipped": 1, "files": {}}
    provenance = data_provenance(full, str(tmp_path), report_, 2, None)
    assert not provenance["comparable"] and "1 raw records skipped" in provenance["description"]


def test_a_synthetic_sample_is_labelled_and_kept_apart_from_the_paper(load, cache_dir, tmp_path):
    """The demo's case: GQA's file name and format, synthetic content. Its score gets no published row
    in the table or chart, and the report says what the data is and how many questions it had."""
    from dataset_builders.sample_data import SYNTHETIC_MARKER, write_gqa

    write_gqa(str(tmp_path / "data" / "gqa"), num_images=4)
    assert (tmp_path / "data" / "gqa" / SYNTHETIC_MARKER).is_file()
    model, processor = load("llama")
    results = run_tasks(model, processor, ["gqa"], str(tmp_path / "data"), str(tmp_path / "eval"), cache_dir=cache_dir,
                        model_name="tiny", overrides=["gqa.max_len=2", "gqa.num_beams=1"], progress=False)
    gqa = results["tasks"]["gqa"]
    assert gqa["data"]["synthetic"] and not gqa["comparable"] and gqa["num_samples"] == 12
    assert gqa["data"]["files"] == {"testdev_balanced_questions.json": 12}
    table = (tmp_path / "eval" / "table1.md").read_text()
    assert "No published numbers are shown" in table
    assert not any(name in table for name in PUBLISHED_TABLE1) and "Table 1 |" not in table
    assert ("| GQA (held-out) | synthetic sample in the official format, 12 questions; the official test_dev "
            "has 12,578 | testdev_balanced_questions.json (12) |") in table
    tasks, title = report.chart_tasks_and_title(results)
    assert tasks == ["gqa"] and title.startswith("Zero-shot on a synthetic sample: not comparable with the paper's")
    assert "12 questions" in title and "12,578" in title
    assert json.loads((tmp_path / "eval" / "model_index.json").read_text()) == []


# -- resuming ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["visdial", "ivqa"])
def test_resume_after_interruption_gives_the_uninterrupted_metrics(name, load, data_dir, cache_dir, tmp_path):
    model, processor = load("llama")
    reference = run_task(model, processor, TASKS[name], data_dir, str(tmp_path / "whole"), batch_size=1,
                         cache_dir=cache_dir, progress=False)

    Spy(model, fail_on_call=2)  # dies while computing the second batch
    with pytest.raises(KeyboardInterrupt):
        run_task(model, processor, TASKS[name], data_dir, str(tmp_path / "cut"), batch_size=1, cache_dir=cache_dir,
                 progress=False)
    partial = tmp_path / "cut" / name / "partial" / "process0.jsonl"
    assert len(read_jsonl(partial)) == 1 and not (tmp_path / "cut" / name / "predictions.jsonl").exists()
    with open(partial, "a") as f:
        f.write('{"id": "half a line')  # killed while writing

    model, processor = load("llama")
    spy = Spy(model)
    resumed = run_task(model, processor, TASKS[name], data_dir, str(tmp_path / "cut"), batch_size=1,
                       cache_dir=cache_dir, progress=False)
    assert len(spy.calls) == NUM_RECORDS[name] - 1  # the finished sample is skipped
    assert resumed == reference
    assert read_jsonl(tmp_path / "cut" / name / "predictions.jsonl") == read_jsonl(
        tmp_path / "whole" / name / "predictions.jsonl")

    spy.calls.clear()  # a finished task is not recomputed
    assert run_task(model, processor, TASKS[name], data_dir, str(tmp_path / "cut"), cache_dir=cache_dir,
                    progress=False) == reference
    assert spy.calls == []

    changed = apply_overrides([TASKS[name]], [f"{name}.num_beams=2"])[0]
    with pytest.raises(ValueError, match="other settings"):
        run_task(model, processor, changed, data_dir, str(tmp_path / "cut"), cache_dir=cache_dir, progress=False)

    with torch.no_grad():  # the same model folder, retrained: its old predictions must not be reused
        next(model.parameters()).add_(0.5)
    with pytest.raises(ValueError, match="other settings"):
        run_task(model, processor, TASKS[name], data_dir, str(tmp_path / "cut"), cache_dir=cache_dir, progress=False)


# -- two processes -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_give_the_single_process_results(model_folder, load, data_dir, cache_dir, tmp_path):
    tasks = "gqa,visdial,msvd_qa,hateful_memes"
    model, processor = load("llama")
    single = run_tasks(model, processor, tasks, data_dir, str(tmp_path / "one"), batch_size=1, cache_dir=cache_dir,
                       model_name="tiny", progress=False)

    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(ROOT / "evaluate.py"),
               "--model", model_folder("llama"), "--data_dir", data_dir, "--tasks", tasks, "--batch_size", "1",
               "--output_dir", str(tmp_path / "two"), "--cache_dir", cache_dir, "--model_name", "tiny"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr  # really two ranks (accelerate's --cpu would run one)

    double = json.loads((tmp_path / "two" / "results.json").read_text())
    for name in single["tasks"]:
        assert double["tasks"][name]["score"] == pytest.approx(single["tasks"][name]["score"], abs=1e-9), name
        one = read_jsonl(tmp_path / "one" / name / "predictions.jsonl")
        two = read_jsonl(tmp_path / "two" / name / "predictions.jsonl")
        assert [row["id"] for row in two] == [row["id"] for row in one]
        assert [row["prediction"] for row in two] == [row["prediction"] for row in one]


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_batching_does_not_change_the_scores(kind, load, data_dir, cache_dir, tmp_path):
    """Prompts of different lengths padded together score as they do alone (the Q-Former's text
    positions must not move with the LLM's left padding)."""
    model, processor = load(kind)
    alone = run_task(model, processor, TASKS["visdial"], data_dir, str(tmp_path / "alone"), batch_size=1,
                     cache_dir=cache_dir, progress=False)
    together = run_task(model, processor, TASKS["visdial"], data_dir, str(tmp_path / "together"), batch_size=5,
                        cache_dir=cache_dir, progress=False)
    one = read_jsonl(tmp_path / "alone" / "visdial" / "predictions.jsonl")
    five = read_jsonl(tmp_path / "together" / "visdial" / "predictions.jsonl")
    assert len({len(row["prompt"]) for row in one}) > 1
    for a, b in zip(one, five):
        assert b["scores"] == pytest.approx(a["scores"], abs=1e-4)
    assert together["score"] == pytest.approx(alone["score"])
