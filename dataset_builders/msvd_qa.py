"""MSVD-QA (held-out, video QA), from the official release. MSRVTT-QA (msrvtt_qa.py) shares its format.

Official release: the QA files of Xu et al. 2017 (https://github.com/xudejing/video-question-answering,
data at https://data.mendeley.com/datasets/h5j7cpwnvn) and the MSVD videos
(https://www.cs.utexas.edu/users/ml/clamp/videoDescription/YouTubeClips.tar), in one folder:

    train_qa.json  val_qa.json  test_qa.json
    youtube_mapping.txt                 one "<clip name> vid<N>" per line, e.g. "-4wsuPCjDBc_5_15 vid1"
    YouTubeClips/-4wsuPCjDBc_5_15.avi ...

A QA file: [{"answer": str, "id": int, "question": str, "video_id": int (the N of vid<N>)}].

Records: one per question, with the paper's "Question: {} Short answer:" prompt and the video's 4
sampled frames in `frames` (see _video.py). The paper ranks an answer vocabulary for MSVD-QA and
MSRVTT-QA; it does not publish one, so `choices` is the dataset's own answer set as its authors
built it for classification: the `num_candidates` (default 1000) most frequent answers of
train_qa.json (ties broken by first occurrence). `answer_index` is the gold answer's index in it,
or -1 when the answer is outside the vocabulary (such a question can only be counted wrong, as in
the classification setting). `subset` is the question word (what, who, how, when, where), the
breakdown video QA papers report. Every record carries the same list, which costs disk
(~num_candidates short strings per record) but keeps every ranked dataset's candidates in
`choices`; lower `num_candidates` to trade recall for size. The train answers are only read to
build the vocabulary, so test needs train_qa.json too.
"""

import os
from collections import Counter
from dataclasses import dataclass

from ._base import TEXT_ERRORS, field, load_json
from ._video import MISSING_VIDEO, VideoError, VideoQABuilder, VideoQAConfig
from .templates import SHORT_ANSWER_PROMPT

_QA_URL = "https://data.mendeley.com/datasets/h5j7cpwnvn (MSVD-QA)"
_VIDEO_URL = "https://www.cs.utexas.edu/users/ml/clamp/videoDescription/YouTubeClips.tar"
SPLIT_FILES = {"train": "train_qa.json", "validation": "val_qa.json", "test": "test_qa.json"}

_CITATION = """@inproceedings{xu2017video,
  title={Video Question Answering via Gradually Refined Attention over Appearance and Motion},
  author={Xu, Dejing and Zhao, Zhou and Xiao, Jun and Wu, Fei and Zhang, Hanwang and He, Xiangnan
  and Zhuang, Yueting}, booktitle={ACM Multimedia}, year={2017}}"""


@dataclass
class VideoQAVocabularyConfig(VideoQAConfig):
    """`num_candidates`: size of the ranked answer vocabulary (most frequent train answers)."""

    num_candidates: int = 1000


def answer_vocabulary(train_qa: list, size: int) -> list[str]:
    """The `size` most frequent answers of a QA file's items, most frequent first."""
    answers = [item.get("answer") for item in train_qa if isinstance(item, dict)]
    counts = Counter(answer for answer in answers if isinstance(answer, str))
    return [answer for answer, _ in counts.most_common(size)]


class MSVDQA(VideoQABuilder):
    """MSVD-QA questions on short YouTube clips, ranked over the train answer vocabulary."""

    BUILDER_CONFIG_CLASS = VideoQAVocabularyConfig
    DATASET_NAME = "msvd_qa"
    HOMEPAGE = "https://github.com/xudejing/video-question-answering"
    CITATION = _CITATION
    QA_URL = _QA_URL

    def video_files(self, split: str) -> dict:
        """{relative path: download URL} of what the split's videos need."""
        return {"youtube_mapping.txt": self.QA_URL, "YouTubeClips": _VIDEO_URL}

    def video_index(self, split: str):
        """What `video_path` needs to find a split's videos: here {N of "vid<N>": clip name}."""
        clips = {}
        with open(self.path("youtube_mapping.txt"), encoding="utf-8", errors=TEXT_ERRORS) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].startswith("vid") and parts[1][3:].isdigit():
                    clips[int(parts[1][3:])] = parts[0]
        return clips

    def video_path(self, video_id: int, clips) -> str:
        """Path of the video of `video_id` (the file may be missing: frames() reports it)."""
        if video_id not in clips:
            raise VideoError(MISSING_VIDEO, f"vid{video_id}", "not in youtube_mapping.txt")
        return self.path("YouTubeClips", f"{clips[video_id]}.avi")

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLIT_FILES):
            qa_files = {SPLIT_FILES[split]: self.QA_URL, SPLIT_FILES["train"]: self.QA_URL}
            paths = self.require_files({**qa_files, **self.video_files(split)})
            generators.append(
                self.split_generator(split, qa_file=paths[SPLIT_FILES[split]], train_file=paths[SPLIT_FILES["train"]])
            )
        return generators

    def _iter_raw(self, split, qa_file, train_file):
        vocabulary = answer_vocabulary(load_json(train_file), self.config.num_candidates)
        index = {answer: i for i, answer in enumerate(vocabulary)}
        videos = self.video_index(split)
        for number, item in enumerate(load_json(qa_file)):
            item_id = item.get("id") if isinstance(item, dict) else None
            yield qa_file, f"#{number} (id={item_id})", (item, videos, vocabulary, index)

    def _records(self, raw, split):
        item, videos, vocabulary, index = raw
        question_id = field(item, "id", int)
        question = field(item, "question", str)
        answer = field(item, "answer", str)
        video = self.video_path(field(item, "video_id", int), videos)
        return self.make(
            split,
            id=question_id,
            frames=self.frames(video),
            instruction=SHORT_ANSWER_PROMPT.format(question),
            question=question,
            target=answer,
            answers=[answer],
            choices=vocabulary,
            answer_index=index.get(answer, -1),
            question_id=question_id,
            image_id=os.path.splitext(os.path.basename(video))[0],
            subset=question.split()[0].lower() if question.split() else "",
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (MSVDQA,)}
