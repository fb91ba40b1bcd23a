"""Fault injection: what a user relies on when things go wrong.

- Data: any JSON-like junk in a raw release (wrong types, None, nesting, huge or non-UTF-8 text)
  becomes a valid record or a counted `RecordError`, never another exception (hypothesis).
- Training: a disk that fills up during a checkpoint save fails the run with the error and leaves
  the previous checkpoint as the one `--resume_from_checkpoint latest` picks; a run killed twice
  (once in the middle of a save) resumes to the same weights as an uninterrupted run.
- Demo: a burst of hostile requests gets answers or refusals, and the server keeps serving with
  bounded memory.
"""

import errno
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset_builders import get_builder  # noqa: E402
from dataset_builders._base import RecordError, check_items, field, list_field  # noqa: E402
from dataset_builders.schema import FEATURES  # noqa: E402
from tests.helpers import ask, final_weights, launch_train, small_run_args  # noqa: E402  (app, url, client: conftest.py)
from tests.training.train_fixtures import load_train_script  # noqa: E402

train_script = load_train_script()

# ---------------------------------------------------------------------------------------------
# data: junk in, a record or a RecordError out
# ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as a file decoded with "surrogateescape" can hold it: any code point, lone surrogates included.
any_text = st.one_of(
    *[st.text(max_size=40)] * 4, st.text(st.characters(exclude_categories=()), max_size=40),
    st.integers(1, 3).map(lambda n: "é" * 50_000 * n), st.just("\udcff"),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text
json_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=12
)


def keyed(fields, junk=True):
    """Dicts that hold each expected key ({name: plausible value strategy}) or not, with a plausible
    value or a junk one; with `junk`, sometimes junk altogether."""
    values = {name: st.one_of(*[plausible] * 6, json_like) for name, plausible in fields.items()}
    dicts = st.fixed_dictionaries(values) | st.fixed_dictionaries({}, optional=values)
    return dicts | json_like if junk else dicts


def _checked(value, expected) -> bool:
    """Whether `value` is what `field(..., expected)` promises: an `expected` (float taking int), a bool
    only where bool was asked for."""
    types = expected if isinstance(expected, tuple) else (expected,)
    types = types + (int,) if float in types else types
    return isinstance(value, types) and (not isinstance(value, bool) or bool in types)


@FUZZ
@given(raw=json_like, name=any_text, expected=st.sampled_from([str, int, float, list, dict, (int, str), bool]))
def test_field_helpers_return_the_type_asked_for_or_raise_record_error(raw, name, expected):
    checks = [
        (lambda: field(raw, name, expected), lambda value: _checked(value, expected)),
        (lambda: list_field(raw, name, str), lambda value: all(type(item) is str for item in value)),
        (lambda: check_items(raw if isinstance(raw, list) else [raw], int, name),
         lambda values: all(_checked(item, int) for item in values)),
    ]
    for check, holds in checks:
        try:
            value = check()
        except RecordError as error:
            assert error.reason in ("malformed_record", "wrong_field_type") and error.message
            continue
        assert holds(value)


def _generate(builder, **gen_kwargs):
    """The records of a split under errors="skip" (each checked against the schema) and its error
    report, or None for a raw file too broken to read past (a RecordError no policy can skip)."""
    try:
        records = [record for _, record in builder._generate_examples(split="train", **gen_kwargs)]
    except RecordError as error:
        assert error.reason == "malformed_record" and "malformed raw file" in error.message
        return None
    for record in records:
        FEATURES.encode_example(record)
    event("some records valid" if records else "no record valid")
    return records, builder.error_reports["train"]


def _hashable_id(item):
    if isinstance(item, dict) and isinstance(item.get("question_id"), (list, dict)):
        return {**item, "question_id": 1}
    return item


def _unhashable_id(item) -> bool:
    return isinstance(item, dict) and isinstance(item.get("question_id"), (list, dict))


small_id = st.integers(0, 3)
question_fields = {"question": any_text, "question_id": small_id, "image_id": st.integers(0, 10**15)}
answers = st.lists(st.fixed_dictionaries({"answer": any_text}), max_size=4)
annotation_fields = {"question_id": small_id, "answers": answers, "multiple_choice_answer": any_text,
                     "answer_type": any_text}
# Well-formed items (with any text) or items with junk fields. VQAv2 indexes annotations by question_id,
# so a non-object annotation or an unhashable question_id breaks the whole file: one list in three.
question = st.fixed_dictionaries(question_fields) | keyed(question_fields).map(_hashable_id)
annotation = st.fixed_dictionaries(annotation_fields) | keyed(
    {**annotation_fields, "answers": st.lists(keyed({"answer": any_text}), max_size=4)}, junk=False
).map(_hashable_id)
questions = st.lists(question, max_size=5) | st.lists(question, max_size=5) | st.lists(
    keyed(question_fields), max_size=5
)
annotations = st.lists(annotation, max_size=5) | st.lists(annotation, max_size=5) | st.lists(
    annotation | json_like, max_size=5
)


@FUZZ
@given(questions=questions, annotations=annotations, complete=st.booleans())
def test_vqav2_junk_questions_and_annotations_become_records_or_counted_reasons(questions, annotations, complete):
    if complete:  # annotate every question (valid records need that), keeping the junk annotations too
        ids = [q["question_id"] for q in questions if isinstance(q, dict) and type(q.get("question_id")) is int]
        annotations = annotations + [{"question_id": i, "answers": [{"answer": "yes"}] * 10,
                                      "multiple_choice_answer": "yes", "answer_type": "yes/no"} for i in ids]
    with tempfile.TemporaryDirectory() as folder:
        q_path, a_path = os.path.join(folder, "q.json"), os.path.join(folder, "a.json")
        for path, content in ((q_path, {"questions": questions}), (a_path, {"annotations": annotations})):
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:  # lone surrogates: bad bytes
                json.dump(content, f, ensure_ascii=False)
        builder = get_builder("vqav2", folder, cache_dir=os.path.join(folder, "cache"), split="train",
                              errors="skip", image_check="none")
        built = _generate(builder, questions=q_path, annotations=a_path, image_prefix=folder + "/COCO_")
        if built is None:
            assert any(not isinstance(a, dict) or _unhashable_id(a) for a in annotations) or any(
                _unhashable_id(q) for q in questions
            )
            return
        records, report = built
        assert len(records) + report.num_skipped == len(questions)  # every question kept or counted


meme = keyed({"id": st.integers() | any_text, "img": any_text, "text": any_text, "label": st.integers(-1, 2)})
jsonl_line = meme.map(lambda value: json.dumps(value, ensure_ascii=False)) | st.binary(max_size=60).map(
    lambda raw: raw.decode("utf-8", "surrogateescape")
)


@FUZZ
@given(lines=st.lists(jsonl_line, max_size=6))
def test_hateful_memes_junk_lines_become_records_or_counted_reasons(lines):
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "train.jsonl")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write("\n".join(lines) + "\n")
        builder = get_builder("hateful_memes", folder, cache_dir=os.path.join(folder, "cache"), split="train",
                              errors="skip", image_check="none")
        built = _generate(builder, jsonl=path)
        assert built is not None  # one bad line is one bad record, never a broken file
        records, report = built
        assert len(records) + report.num_skipped == sum(1 for line in lines if line.strip())


# ---------------------------------------------------------------------------------------------
# training: a full disk during a checkpoint save
# ---------------------------------------------------------------------------------------------

def _disk_full(path):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _write_half_then_fail(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    _disk_full(path)


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the launched runs (tests/training/train_fixtures.py), for equal weights
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("failing_file", ["optimizer.pt", "trainer_state.json"])
def test_a_full_disk_during_a_save_fails_the_run_and_resume_uses_the_previous_checkpoint(
    held_in_corpus, tiny_checkpoint, reference_run, tmp_path, monkeypatch, one_thread, failing_file
):
    import io

    import torch
    from transformers.trainer_callback import TrainerState

    output = tmp_path / "out"
    failing = output / "checkpoint-4" / failing_file
    save, save_to_json = torch.save, TrainerState.save_to_json

    def full_torch_save(obj, f, *args, **kwargs):
        if str(f) == str(failing):
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            _write_half_then_fail(f, buffer.getvalue())
        return save(obj, f, *args, **kwargs)

    def full_save_to_json(self, json_path):
        if str(json_path) == str(failing):
            _write_half_then_fail(json_path, json.dumps(self.__dict__, default=str).encode())
        return save_to_json(self, json_path)

    monkeypatch.setattr(torch, "save", full_torch_save)
    monkeypatch.setattr(TrainerState, "save_to_json", full_save_to_json)
    with pytest.raises(OSError) as caught:
        train_script.main(small_run_args(held_in_corpus, output, tiny_checkpoint))
    assert caught.value.errno == errno.ENOSPC and failing_file in str(caught.value)
    assert failing.exists() and not (output / "model.safetensors").exists()  # stopped there, half-written

    # the half-written checkpoint is never the one to resume from; the one before is whole
    assert train_script.last_complete_checkpoint(str(output)) == str(output / "checkpoint-2")
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    intact, expected = final_weights(output / "checkpoint-2"), final_weights(reference_run / "out" / "checkpoint-2")
    assert intact.keys() == expected.keys() and all(torch.equal(intact[k], expected[k]) for k in expected)
    assert torch.load(output / "checkpoint-2" / "optimizer.pt", weights_only=True)["state"]

    monkeypatch.undo()  # the disk has room again
    train_script.main(small_run_args(held_in_corpus, output, tiny_checkpoint, resume_from_checkpoint="latest"))
    expected, resumed = final_weights(reference_run / "out"), final_weights(output)
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# training: killed twice, once in the middle of writing a checkpoint
# ---------------------------------------------------------------------------------------------

# Loaded at start-up by the launched run (on its PYTHONPATH): when the Trainer writes the trainer state
# of $HANG_IN_SAVE (a checkpoint folder), it writes half of it, says so in $HANG_MARKER, and hangs, so
# the test can SIGKILL it in the middle of that save.
HANG_IN_SAVE = '''
import os
from transformers.trainer_callback import TrainerState

_save_to_json = TrainerState.save_to_json


def save_to_json(self, json_path):
    if os.path.dirname(os.path.abspath(json_path)) == os.environ["HANG_IN_SAVE"]:
        _save_to_json(self, json_path)
        with open(json_path, "r+") as f:
            f.truncate(len(f.read()) // 2)
        open(os.environ["HANG_MARKER"], "w").close()
        import time
        time.sleep(300)
    return _save_to_json(self, json_path)


TrainerState.save_to_json = save_to_json
'''


def _kill_when(process, ready, what, timeout=240):
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before {what}: " + process.stdout.read().decode()[-3000:]
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.slow
def test_killed_between_steps_and_during_a_save_resumes_to_the_same_weights(
    held_in_corpus, tiny_checkpoint, reference_run, tmp_path
):
    import torch

    output, probe = tmp_path / "out", tmp_path / "probe"
    args = small_run_args(held_in_corpus, output, tiny_checkpoint)
    resume = small_run_args(held_in_corpus, output, tiny_checkpoint, resume_from_checkpoint="latest")

    # 1. killed in the middle of step 3 (the step sleep leaves time), after checkpoint-2 was saved
    process = launch_train(args, probe, {"TRAIN_STEP_SLEEP": "1.5"}, background=True)
    _kill_when(process, lambda: (output / "checkpoint-2" / "trainer_state.json").exists(), "checkpoint-2")
    assert train_script.last_complete_checkpoint(str(output)) == str(output / "checkpoint-2")

    # 2. resumed, then killed while writing checkpoint-4's trainer state (half of it is on disk)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG_IN_SAVE)
    marker = tmp_path / "hanging"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
           "HANG_IN_SAVE": str(output / "checkpoint-4"), "HANG_MARKER": str(marker)}
    process = launch_train(resume, probe, env, background=True)
    _kill_when(process, marker.exists, "the hanging save of checkpoint-4")
    assert (output / "checkpoint-4" / "trainer_state.json").exists()  # torn
    assert train_script.last_complete_checkpoint(str(output)) == str(output / "checkpoint-2")
    assert not (output / "model.safetensors").exists()

    # 3. resumed again: runs to the end, with the weights of the run that was never interrupted
    launch_train(resume, probe)
    expected, resumed = final_weights(reference_run / "out"), final_weights(output)
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# demo: a hostile burst
# ---------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/status") as f:  # the app is served from this process
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.slow
def test_a_hostile_burst_gets_answers_or_refusals_and_the_server_keeps_serving(app, url, client, tmp_path):
    import concurrent.futures

    import httpx
    import PIL.Image
    from gradio_client.exceptions import AppError

    garbage = tmp_path / "photo.jpg"
    garbage.write_bytes(b"\xff\xd8\xff this is not a JPEG " * 50)
    canvas = tmp_path / "canvas.png"
    PIL.Image.new("1", (8_000, 6_000)).save(canvas)
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(app.LIMITS.max_upload_bytes + 1))

    def upload_big():
        with big.open("rb") as handle:
            response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", handle, "image/jpeg")},
                                  timeout=60)
        assert response.status_code == 413, response.text[:300]
        return "refused"

    def call(refusal=None, **kwargs):
        def request():
            try:
                answer = ask(client, **kwargs)
            except AppError as error:
                assert refusal and refusal in str(error) and "Traceback" not in str(error), str(error)[:300]
                return "refused"
            assert isinstance(answer, str) and answer.strip()
            return "answered"

        return request

    valid = call(max_new_tokens=4)
    kinds = {
        "valid": (valid, "answered"),
        "not an image": (call("Could not read the image", image=str(garbage)), "refused"),
        "huge canvas": (call("this demo takes up to 40,000,000 pixels", image=str(canvas)), "refused"),
        "oversized upload": (upload_big, "refused"),
        "huge prompt": (call("The instruction is 200,000 characters", instruction="why?!" * 40_000), "refused"),
        "beams": (call("Beams must be between", beams=1_000), "refused"),
        "tokens": (call("Max new tokens must be between", max_new_tokens=10**9), "refused"),
        "temperature": (call("Temperature must be between", sample=True, temperature=-3.0), "refused"),
        "top_p": (call("Top-p must be between", sample=True, top_p=7.5), "refused"),
        "not a number": (call("Beams must be between", beams="many"), "refused"),
    }
    names = [name for _ in range(10) for name in kinds]  # 100 requests, every kind spread through the burst
    assert valid() == "answered"  # warm: the first generation allocates what every later one reuses
    before = _rss_mb()
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        futures = {pool.submit(kinds[name][0]): name for name in names}
        done, pending = concurrent.futures.wait(futures, timeout=240)
        for future in pending:
            future.cancel()
    assert not pending, f"{len(pending)} requests unanswered after {time.time() - started:.0f} s"
    outcomes = {}
    for future, name in futures.items():
        outcomes.setdefault(name, []).append(future.result())  # re-raises a failed check, naming it below
    for name, results in outcomes.items():
        assert results == [kinds[name][1]] * 10, name

    assert valid() == "answered"  # still serving
    growth = _rss_mb() - before
    print(f"RSS growth over the burst: {growth:.0f} MB")
    assert growth < 500, f"the server grew by {growth:.0f} MB over 100 requests"


# ---------------------------------------------------------------------------------------------
# A training mixture holding every kind of bad data at once
# ---------------------------------------------------------------------------------------------


def _bad_data_corpus(root):
    """The sample corpus (COCO Karpathy + VQAv2) with: a truncated JPEG, a zero-byte file, a missing
    image, a 20000x20000 image, PNGs/JPEGs in modes L, LA, P, RGBA, CMYK and I;16 (valid: they must
    train), a question with bytes that are not UTF-8, and a question with an image_id of the wrong type."""
    import numpy as np
    from PIL import Image

    from dataset_builders.sample_data import write_sample_corpus
    from tests.dataset_builders.fixtures_heldout import truncate_file, write_declared_size_png

    coco = Path(write_sample_corpus(str(root), num_images=48)["vqav2"])
    images = sorted((coco / "train2014").glob("*.jpg"))
    truncate_file(str(images[0]), keep=0.5)
    images[1].write_bytes(b"")
    images[2].unlink()
    write_declared_size_png(str(images[3]), 20000, 20000)
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for path, mode in zip(images[4:10], ("L", "LA", "P", "RGBA", "CMYK", "I;16")):
        image = Image.fromarray(pixels).convert("RGBA" if mode in ("LA", "RGBA") else "RGB")
        image = image.convert(mode) if mode != "I;16" else Image.fromarray((pixels[..., 0].astype("uint16") * 257))
        image.save(path, "JPEG" if mode in ("L", "CMYK") else "PNG")  # content decides the format, not the name
    questions_file = coco / "v2_OpenEnded_mscoco_train2014_questions.json"
    questions = json.loads(questions_file.read_text())
    healthy = [q for q in questions["questions"] if q["image_id"] not in {int(p.stem[-12:]) for p in images[:4]}]
    healthy[0]["question"], healthy[1]["image_id"] = "caf\u00e9 or tea?", "abc"
    questions_file.write_bytes(json.dumps(questions, ensure_ascii=False).encode().replace("caf\u00e9".encode(), b"caf\xe9"))
    return {"coco_caption": str(coco), "vqav2": str(coco)}


@pytest.mark.slow
def test_training_goes_on_over_bad_data_and_reports_every_skip(tmp_path):
    data_dirs = _bad_data_corpus(tmp_path / "corpus")
    corpus = {"data_dirs": data_dirs, "cache": str(tmp_path / "cache")}
    output = tmp_path / "out"
    results = train_script.main(small_run_args(corpus, output, max_steps=3, save_strategy="no", record_errors="skip"))

    assert results["train"]["skipped_records"] == 0  # nothing bad got past the build
    vqa = results["data"]["at build"]["vqav2"]["counts"]
    for reason in ("missing_image", "oversized_image", "non_utf8_text", "wrong_field_type"):
        assert vqa.get(reason, 0) >= 1, (reason, vqa)
    # the zero-byte file is corrupt; the cut JPEG is truncated or, when its data already fails to decode, corrupt
    per_image = vqa["missing_image"]  # questions about one image (the missing one)
    assert vqa.get("corrupt_image", 0) + vqa.get("truncated_image", 0) == 2 * per_image, vqa
    captions = results["data"]["at build"]["coco_caption"]["counts"]
    assert {"missing_image", "oversized_image"} <= set(captions) and "corrupt_image" in captions
    saved = json.loads((output / "data_report.json").read_text())
    assert saved["at build"]["vqav2"]["counts"] == vqa
    card = (output / "README.md").read_text()
    assert "oversized_image" in card and "non_utf8_text" in card  # the card says what was skipped, and why

    with pytest.raises(RecordError) as first:  # the fail policy stops at the first, naming file and record
        train_script.main(small_run_args(dict(corpus, cache=str(tmp_path / "cache-fail")), tmp_path / "out2",
                                         max_steps=3, save_strategy="no", record_errors="fail"))
    assert ".json, record " in str(first.value)
