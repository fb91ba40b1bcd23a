"""ScienceQA (held-out, knowledge-grounded QA), the IMG subset, from the official release.

Official release (https://github.com/lupantech/ScienceQA), laid out as its `data/scienceqa/`:

    problems.json                         {pid: problem}   (repository, data/scienceqa/)
    pid_splits.json                       {"train": [pid], "val": [...], "test": [...], ...}
    images/test/<pid>/image.png ...       <- https://scienceqa.s3.us-west-1.amazonaws.com/images/test.zip
                                             (train.zip, val.zip likewise)

A problem: {"question": str, "choices": [str], "answer": int (index into choices),
"hint": str (the text context, often ""), "image": "image.png" | null, "task", "grade",
"subject", "topic", "category", "skill", "lecture", "solution", "split"}.

Records: only problems with an image (the IMG subset of the paper's Table 1; the others are not
errors and are not counted). The instruction is the paper's prompt
"Context: {hint} Question: {question} Options: (a) x (b) y. Answer:", filled verbatim (an empty
hint leaves "Context:  Question:"); the choices are ranked, `answer_index` is ScienceQA's `answer`
`context` keeps the hint and `subset` the subject (natural / social / language science, the
leaderboard's breakdown).
"""

from ._base import InstructBuilder, field
from .iconqa import iter_problems, multiple_choice
from .templates import SCIENCEQA_PROMPT, format_choices_lettered

_REPO = "https://github.com/lupantech/ScienceQA/raw/main/data/scienceqa/"
_IMAGES = "https://scienceqa.s3.us-west-1.amazonaws.com/images/"
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # split -> ScienceQA split name
FILES = {"problems.json": _REPO + "problems.json", "pid_splits.json": _REPO + "pid_splits.json"}

_CITATION = """@inproceedings{lu2022learn,
  title={Learn to Explain: Multimodal Reasoning via Thought Chains for Science Question Answering},
  author={Lu, Pan and Mishra, Swaroop and Xia, Tony and Qiu, Liang and Chang, Kai-Wei and Zhu, Song-Chun
  and Tafjord, Oyvind and Clark, Peter and Kalyan, Ashwin}, booktitle={NeurIPS}, year={2022}}"""


class ScienceQA(InstructBuilder):
    """ScienceQA multiple-choice science questions that come with an image, ranked over their choices."""

    DATASET_NAME = "scienceqa"
    HOMEPAGE = "https://scienceqa.github.io"
    CITATION = _CITATION
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            image_dir = f"images/{SPLITS[split]}"
            paths = self.require_files({**FILES, image_dir: f"{_IMAGES}{SPLITS[split]}.zip"})
            generators.append(
                self.split_generator(
                    split,
                    problems=paths["problems.json"],
                    pid_splits=paths["pid_splits.json"],
                    image_dir=paths[image_dir],
                )
            )
        return generators

    def _iter_raw(self, split, problems, pid_splits, image_dir):
        for pid, problem in iter_problems(problems, pid_splits, SPLITS[split]):
            if isinstance(problem, dict) and problem.get("image") is None:
                continue  # not in the IMG subset
            yield problems, f"pid {pid}", (pid, problem, image_dir)

    def _records(self, raw, split):
        pid, problem, image_dir = raw
        question, choices, answer = multiple_choice(pid, problem)
        image = field(problem, "image", str)
        hint = field(problem, "hint", str)
        subject = problem.get("subject", "")
        return self.make(
            split,
            id=pid,
            image=f"{image_dir}/{pid}/{image}",
            instruction=SCIENCEQA_PROMPT.format(hint, question, format_choices_lettered(choices)),
            question=question,
            context=hint,
            target=choices[answer],
            answers=[choices[answer]],
            choices=choices,
            answer_index=answer,
            question_id=pid,
            image_id=pid,
            subset=subject if isinstance(subject, str) else "",
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (ScienceQA,)}
