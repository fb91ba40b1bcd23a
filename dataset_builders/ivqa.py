"""iVQA (held-out, video QA), test split, from the official release.

Official release (Yang et al. 2021, "Just Ask", https://github.com/antoyang/just-ask; the CSV files
at https://drive.google.com/drive/folders/14e7hUcy4Ti25HdRRH5LUpuJTik2cjlzb), in one folder:

    train.csv  val.csv  test.csv
    video/<youtube id>_<start>_<end>.<ext> ...     the clips (e.g. gU4-15o9j5Q_633_643.webm)

A CSV row: video_id (the 11-character YouTube id), start, end (the clip's seconds in the YouTube
video), question, answer1 ... answer5 (five annotators' answers), plus other columns.

Records: the paper's "Question: {} Short answer:" prompt, generated (no ranking); `answers` holds
the five annotated answers (iVQA's metric counts how many annotators gave the prediction) and
`target` the most frequent. The clip is found as video/<video_id>_<start>_<end>.* ; without
start/end columns, as the file whose name starts with the video id (how the official code maps
features to rows).
"""

import csv
import os

from ._base import MALFORMED_RECORD, TEXT_ERRORS, RecordError, most_common
from ._video import MISSING_VIDEO, VideoError, VideoQABuilder
from .templates import SHORT_ANSWER_PROMPT

_URL = "https://github.com/antoyang/just-ask (iVQA: drive folder 14e7hUcy4Ti25HdRRH5LUpuJTik2cjlzb)"
SPLIT_FILES = {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}
ANSWER_COLUMNS = ("answer1", "answer2", "answer3", "answer4", "answer5")
YOUTUBE_ID_LENGTH = 11

_CITATION = """@inproceedings{yang2021justask,
  title={Just Ask: Learning to Answer Questions from Millions of Narrated Videos},
  author={Yang, Antoine and Miech, Antoine and Sivic, Josef and Laptev, Ivan and Schmid, Cordelia},
  booktitle={ICCV}, year={2021}}"""


def _seconds(value: str) -> str:
    """A CSV time as written in clip names: "633.0" -> "633"."""
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


class IVQA(VideoQABuilder):
    """iVQA questions on instructional video clips, each with five annotated answers."""

    DATASET_NAME = "ivqa"
    HOMEPAGE = "https://antoyang.github.io/just-ask.html"
    CITATION = _CITATION

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLIT_FILES):
            paths = self.require_files({SPLIT_FILES[split]: _URL, "video": _URL})
            generators.append(self.split_generator(split, csv_file=paths[SPLIT_FILES[split]], video_dir=paths["video"]))
        return generators

    def _iter_raw(self, split, csv_file, video_dir):
        videos = {os.path.splitext(name)[0]: os.path.join(video_dir, name) for name in sorted(os.listdir(video_dir))}
        by_youtube_id = {stem[:YOUTUBE_ID_LENGTH]: path for stem, path in sorted(videos.items(), reverse=True)}
        with open(csv_file, encoding="utf-8", newline="", errors=TEXT_ERRORS) as f:
            for number, row in enumerate(csv.DictReader(f), 2):  # line 1 is the header
                yield csv_file, f"line {number} (video_id={row.get('video_id')})", (number, row, videos, by_youtube_id)

    def _records(self, raw, split):
        number, row, videos, by_youtube_id = raw
        missing = [column for column in ("video_id", "question", *ANSWER_COLUMNS) if not row.get(column)]
        if missing:
            raise RecordError(MALFORMED_RECORD, f"empty or missing columns {missing}")
        video_id, question = row["video_id"], row["question"]
        answers = [row[column] for column in ANSWER_COLUMNS]
        if row.get("start") and row.get("end"):
            clip = f"{video_id}_{_seconds(row['start'])}_{_seconds(row['end'])}"
            video = videos.get(clip)
        else:
            clip = video_id
            video = by_youtube_id.get(video_id)
        if video is None:
            raise VideoError(MISSING_VIDEO, f"video/{clip}.*", "no such clip in the video folder")
        return self.make(
            split,
            id=number,  # the CSV line number
            frames=self.frames(video),
            instruction=SHORT_ANSWER_PROMPT.format(question),
            question=question,
            target=most_common(answers),
            answers=answers,
            question_id=number,
            image_id=clip,
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (IVQA,)}
