"""iVQA builder: CSV rows with five answers, clips named <youtube id>_<start>_<end>, generation prompt."""

import csv
import os

import pytest

from dataset_builders import RecordError
from tests.dataset_builders.fixtures_heldout import IVQA_COLUMNS, IVQA_ROWS, build_records, write_corrupt_file, write_ivqa


@pytest.fixture
def ivqa_dir(tmp_path):
    return write_ivqa(str(tmp_path / "ivqa"))


def _write_rows(data_dir, columns, rows):
    with open(os.path.join(data_dir, "test.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def test_test_records_field_by_field(ivqa_dir, tmp_path):
    records, report = build_records("ivqa", ivqa_dir, "test", tmp_path / "cache")
    assert report["num_skipped"] == 0
    gloves, parrot = records
    assert (gloves["id"], gloves["dataset"], gloves["task"], gloves["role"], gloves["split"]) == (
        "2", "ivqa", "video_qa", "held_out", "test")
    assert gloves["instruction"] == "Question: What does she wear on her hands? Short answer:"
    assert gloves["answers"] == ["surgical gloves", "gloves", "surgical gloves", "gloves", "surgical gloves"]
    assert gloves["target"] == "surgical gloves"
    assert (gloves["choices"], gloves["answer_index"]) == ([], -1)  # generated, not ranked
    assert (gloves["image_id"], gloves["question_id"]) == ("gU4-15o9j5Q_633_643", "2")
    assert gloves["image"] is None and len(gloves["frames"]) == 4
    assert parrot["target"] == "parrot" and parrot["frames"] != gloves["frames"]


def test_clip_found_by_youtube_id_without_start_end_columns(ivqa_dir, tmp_path):
    columns = [c for c in IVQA_COLUMNS if c not in ("start", "end")]
    _write_rows(ivqa_dir, columns, [[row[0]] + row[3:] for row in IVQA_ROWS])
    records, _ = build_records("ivqa", ivqa_dir, "test", tmp_path / "cache")
    assert [r["image_id"] for r in records] == ["gU4-15o9j5Q", "uiLr9bdOL0M"] and len(records[1]["frames"]) == 4


def test_missing_csv_is_named(ivqa_dir, tmp_path):
    os.remove(os.path.join(ivqa_dir, "test.csv"))
    with pytest.raises(FileNotFoundError, match=r"test.csv.*just-ask"):
        build_records("ivqa", ivqa_dir, "test", tmp_path / "cache")


def test_fail_and_skip_policies(ivqa_dir, tmp_path):
    write_corrupt_file(os.path.join(ivqa_dir, "video", "uiLr9bdOL0M_23_30.webm"))
    with pytest.raises(RecordError, match=r"test.csv, record line 3 \(video_id=uiLr9bdOL0M\): corrupt video: .*uiLr9bdOL0M_23_30.webm"):
        build_records("ivqa", ivqa_dir, "test", tmp_path / "cache")

    rows = IVQA_ROWS + [
        ["AAAAAAAAAAA", "1", "9", "What is this?", "cup", "cup", "cup", "cup", "cup"],  # no clip
        ["gU4-15o9j5Q", "633", "643", "What is here?", "cup", "", "cup", "cup", "cup"],  # empty answer
    ]
    _write_rows(ivqa_dir, IVQA_COLUMNS, rows)
    records, report = build_records("ivqa", ivqa_dir, "test", tmp_path / "cache2", errors="skip")
    assert [r["id"] for r in records] == ["2"]
    assert report["counts"] == {"corrupt_video": 1, "missing_video": 1, "malformed_record": 1}
