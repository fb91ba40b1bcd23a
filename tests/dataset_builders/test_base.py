"""The base builder: streaming JSON, image checks, the errors policy and its report, missing files."""

import json

import pytest
from PIL import Image

from dataset_builders import _base
from dataset_builders._base import RecordError, check_image, iter_json_array
from tests.dataset_builders.fixtures_heldout import write_declared_size_png


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_iter_json_array_streams_top_level_and_keyed_arrays(tmp_path, chunk_size):
    items = [{"a": i, "s": "x" * i, "n": [1.5, None, True]} for i in range(50)] + [12345, "str"]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(items, indent=1))
    assert list(iter_json_array(str(path), chunk_size=chunk_size)) == items
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"info": {"x": [1, 2]}, "license": "y", "questions": items, "after": 1}))
    assert list(iter_json_array(str(keyed), key="questions", chunk_size=chunk_size)) == items
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"questions": []}))
    assert list(iter_json_array(str(empty), key="questions", chunk_size=chunk_size)) == []
    with pytest.raises(KeyError):
        list(iter_json_array(str(keyed), key="annotations", chunk_size=chunk_size))


def _noisy_image(path, fmt):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, fmt)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_check_image_detects_missing_corrupt_and_truncated(tmp_path, image_damage, fmt, ext):
    path = str(tmp_path / f"x.{ext}")
    _noisy_image(path, fmt)
    for mode in ("header", "full"):
        check_image(path, mode)
    with pytest.raises(RecordError) as missing:
        check_image(str(tmp_path / "nope.jpg"))
    assert missing.value.reason == _base.MISSING_IMAGE
    image_damage.truncate(path)
    for mode in ("header", "full"):
        with pytest.raises(RecordError) as truncated:
            check_image(path, mode)
        assert truncated.value.reason in (_base.TRUNCATED_IMAGE, _base.CORRUPT_IMAGE)
    with pytest.raises(RecordError) as cut:
        check_image(path, "header")
    assert cut.value.reason == _base.TRUNCATED_IMAGE
    image_damage.corrupt(path)
    with pytest.raises(RecordError) as corrupt:
        check_image(path)
    assert corrupt.value.reason == _base.CORRUPT_IMAGE
    check_image(path, "exists")  # the cheap modes trust the file
    check_image(str(tmp_path / "nope.jpg"), "none")


def test_field_checks_presence_and_type():
    assert _base.field({"a": 1}, "a", int) == 1
    assert _base.field({"a": 1}, "a", float) == 1
    with pytest.raises(RecordError, match="missing field 'b'") as missing:
        _base.field({"a": 1}, "b", int)
    assert missing.value.reason == _base.MALFORMED_RECORD
    for value in ("1", True, None):
        with pytest.raises(RecordError) as wrong:
            _base.field({"a": value}, "a", int)
        assert wrong.value.reason == _base.WRONG_FIELD_TYPE
    with pytest.raises(RecordError) as not_object:
        _base.field(["a"], "a", int)
    assert not_object.value.reason == _base.MALFORMED_RECORD


def test_decompression_bombs_are_a_reported_reason_not_a_crash(tmp_path):
    path = write_declared_size_png(str(tmp_path / "bomb.png"), 20000, 20000)
    for mode in ("header", "full"):
        with pytest.raises(RecordError) as bomb:
            check_image(path, mode)
        assert bomb.value.reason == _base.OVERSIZED_IMAGE and "bomb.png" in str(bomb.value)
    check_image(write_declared_size_png(str(tmp_path / "fine.png"), 8, 8), "full")


def _damaged_vqav2(raw, image_damage):
    """A VQAv2 train split with one good question and one of each problem."""
    d = raw.vqav2()
    q_path = f"{d}/v2_OpenEnded_mscoco_train2014_questions.json"
    a_path = f"{d}/v2_mscoco_train2014_annotations.json"
    questions, annotations = json.load(open(q_path)), json.load(open(a_path))
    base_q, base_a = questions["questions"][0], annotations["annotations"][0]
    problems = {
        "missing_image": ({"image_id": 900}, {}),
        "corrupt_image": ({"image_id": 901}, {}),
        "truncated_image": ({"image_id": 902}, {}),
        "oversized_image": ({"image_id": 903}, {}),
        "malformed_record": ({"question": None}, {}),  # key present, wrong type -> wrong_field_type
        "no_question": ({}, {}),
        "wrong_answers": ({}, {"answers": "red"}),
    }
    for i, (name, (q_change, a_change)) in enumerate(problems.items()):
        question_id = 5000 + i
        q = dict(base_q, question_id=question_id, **q_change)
        if name == "no_question":
            q.pop("question")
        questions["questions"].append(q)
        annotations["annotations"].append(dict(base_a, question_id=question_id, **a_change))
    for image_id, damage in ((901, image_damage.corrupt), (902, image_damage.truncate)):
        path = f"{d}/train2014/COCO_train2014_{image_id:012d}.jpg"
        _noisy_image(path, "JPEG")
        damage(path)
    write_declared_size_png(f"{d}/train2014/COCO_train2014_{903:012d}.jpg", 20000, 20000)
    json.dump(questions, open(q_path, "w"))
    json.dump(annotations, open(a_path, "w"))
    return d


def test_errors_skip_counts_every_reason(raw, build, image_damage):
    d = _damaged_vqav2(raw, image_damage)
    ds, report = build("vqav2", d, "train", errors="skip", return_report=True)
    assert len(ds) == 2
    assert report["num_records"] == 2 and report["num_skipped"] == 7
    assert report["counts"] == {
        "missing_image": 1, "corrupt_image": 1, "truncated_image": 1, "oversized_image": 1, "wrong_field_type": 2,
        "malformed_record": 1,
    }
    assert any("COCO_train2014_000000000900.jpg" in m for m in report["examples"]["missing_image"])
    # the report survives cache reuse
    _, cached_report = build("vqav2", d, "train", errors="skip", return_report=True)
    assert cached_report == report


def test_errors_fail_names_file_and_record(raw, build, image_damage):
    d = _damaged_vqav2(raw, image_damage)
    with pytest.raises(RecordError) as error:
        build("vqav2", d, "train")  # errors="fail" is the default
    message = str(error.value)
    assert "v2_OpenEnded_mscoco_train2014_questions.json" in message
    assert "question_id=5000" in message and "image not found" in message


def test_invalid_options_are_rejected(raw, build):
    d = raw.gqa()
    with pytest.raises(ValueError, match="errors must be"):
        build("gqa", d, "test_dev", errors="ignore")
    with pytest.raises(ValueError, match="image_check"):
        build("gqa", d, "test_dev", image_check="deep")
    with pytest.raises(ValueError, match="not 'train'"):
        build("gqa", d, "train")


def test_missing_file_error_names_file_and_url(tmp_path, build):
    with pytest.raises(FileNotFoundError) as error:
        build("gqa", str(tmp_path), "test_dev")
    message = str(error.value)
    assert "testdev_balanced_questions.json" in message
    assert "https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip" in message


def test_non_utf8_text_skips_only_its_record(raw, build):
    """One question with a byte that is not UTF-8 (a Latin-1 'é'): that record is reported, the rest build."""
    d = raw.vqav2()
    q_path = f"{d}/v2_OpenEnded_mscoco_train2014_questions.json"
    questions = json.load(open(q_path))
    bad = dict(questions["questions"][0], question_id=7777, question="caf\u00e9 or tea?")
    questions["questions"].append(bad)
    text = json.dumps(questions, ensure_ascii=False).encode("utf-8").replace("caf\u00e9".encode(), b"caf\xe9")
    open(q_path, "wb").write(text)
    annotations_path = f"{d}/v2_mscoco_train2014_annotations.json"
    annotations = json.load(open(annotations_path))
    annotations["annotations"].append(dict(annotations["annotations"][0], question_id=7777))
    json.dump(annotations, open(annotations_path, "w"))
    ds, report = build("vqav2", d, "train", errors="skip", return_report=True)
    assert report["counts"] == {"non_utf8_text": 1}
    assert len(ds) == report["num_records"] and 7777 not in {int(q) for q in ds["question_id"]}
    assert any("question_id=7777" in m and "caf\\xe9" in m for m in report["examples"]["non_utf8_text"])
    with pytest.raises(RecordError, match="not valid UTF-8"):
        build("vqav2", d, "train")


def test_a_broken_question_or_annotation_costs_one_record_not_the_file(raw, build):
    """An unhashable question_id and annotations that are not objects are per-record problems."""
    d = raw.vqav2()
    q_path = f"{d}/v2_OpenEnded_mscoco_train2014_questions.json"
    a_path = f"{d}/v2_mscoco_train2014_annotations.json"
    questions, annotations = json.load(open(q_path)), json.load(open(a_path))
    good = len(questions["questions"])
    questions["questions"].append(dict(questions["questions"][0], question_id=[1, 2]))
    annotations["annotations"] += [None, "red", {"question_id": {"x": 1}}]
    json.dump(questions, open(q_path, "w"))
    json.dump(annotations, open(a_path, "w"))
    ds, report = build("vqav2", d, "train", errors="skip", return_report=True)
    assert len(ds) == good and report["num_skipped"] == 1
    assert report["counts"] == {"wrong_field_type": 1}
