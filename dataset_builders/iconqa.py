"""IconQA (held-out, visual reasoning), the multi-text-choice sub-task, from the official release.

Official release (https://github.com/lupantech/IconQA): `iconqa_data.zip`
(https://iconqa2021.s3.us-west-1.amazonaws.com/iconqa_data.zip), unzipped so that data_dir is
its `iconqa_data/` folder:

    problems.json                                  {pid: problem}
    pid_splits.json                                {"choose_txt_test": [pid, ...], ...}
    iconqa/test/choose_txt/<pid>/image.png ...     one folder per problem

A problem: {"question": str, "choices": [str] (2-5), "answer": int (index into choices),
"ques_type": "choose_txt" | "choose_img" | "fill_in_blank", "split": "train" | "val" | "test",
"grade": str, "label": str, ...}. Split lists are keyed "<sub-task>_<split>".

Records: the paper evaluates the test split of the sub-task whose candidates are text
("choose_txt"; "choose_img" candidates are images and cannot be ranked as text). The prompt is the
paper's "Question: {} Options: {}. Short answer:" with the options written "(a) x (b) y", the
format of the paper's other multiple-choice prompt (ScienceQA); the appendix does not spell it out
for IconQA. The choices are ranked; `answer_index` is IconQA's `answer`.
"""

from ._base import MALFORMED_RECORD, InstructBuilder, RecordError, WRONG_FIELD_TYPE, field, list_field, load_json
from .templates import ICONQA_PROMPT, format_choices_lettered

_URL = "https://iconqa2021.s3.us-west-1.amazonaws.com/iconqa_data.zip"
SUB_TASK = "choose_txt"
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # split -> IconQA split name
FILES = {"problems.json": _URL, "pid_splits.json": _URL}

_CITATION = """@inproceedings{lu2021iconqa,
  title={IconQA: A New Benchmark for Abstract Diagram Understanding and Visual Language Reasoning},
  author={Lu, Pan and Qiu, Liang and Chen, Jiaqi and Xia, Tony and Zhao, Yizhou and Zhang, Wei and
  Yu, Zhou and Liang, Xiaodan and Zhu, Song-Chun}, booktitle={NeurIPS Datasets and Benchmarks}, year={2021}}"""


def iter_problems(problems_file: str, pid_splits_file: str, key: str):
    """Yield (pid, problem or None) for each pid of split list `key`, in the list's order.

    The layout of Pan Lu's releases (IconQA, ScienceQA): problems.json indexed by pid_splits.json.
    """
    pid_splits = load_json(pid_splits_file)
    if key not in pid_splits:
        raise KeyError(f"{pid_splits_file}: no split list {key!r}")
    problems = load_json(problems_file)
    for pid in pid_splits[key]:
        yield str(pid), problems.get(str(pid))


def multiple_choice(pid: str, problem) -> tuple[str, list[str], int]:
    """(question, choices, answer index) of a problem, checked."""
    if problem is None:
        raise RecordError(MALFORMED_RECORD, f"pid {pid} is listed in pid_splits.json but not in problems.json")
    question = field(problem, "question", str)
    choices = list_field(problem, "choices", str)
    answer = field(problem, "answer", int)
    if not 0 <= answer < len(choices):
        raise RecordError(WRONG_FIELD_TYPE, f"answer {answer} is not an index into {len(choices)} choices")
    return question, choices, answer


class IconQA(InstructBuilder):
    """IconQA multi-text-choice questions on abstract diagrams, ranked over their text choices."""

    DATASET_NAME = "iconqa"
    HOMEPAGE = "https://iconqa.github.io"
    CITATION = _CITATION
    FILES = FILES

    def _split_generators(self, dl_manager):
        generators = []
        for split in self.wanted_splits(SPLITS):
            image_dir = f"iconqa/{SPLITS[split]}/{SUB_TASK}"
            paths = self.require_files({**FILES, image_dir: _URL})
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
        for pid, problem in iter_problems(problems, pid_splits, f"{SUB_TASK}_{SPLITS[split]}"):
            yield problems, f"pid {pid}", (pid, problem, image_dir)

    def _records(self, raw, split):
        pid, problem, image_dir = raw
        question, choices, answer = multiple_choice(pid, problem)
        return self.make(
            split,
            id=pid,
            image=f"{image_dir}/{pid}/image.png",
            instruction=ICONQA_PROMPT.format(question, format_choices_lettered(choices)),
            question=question,
            target=choices[answer],
            answers=[choices[answer]],
            choices=choices,
            answer_index=answer,
            question_id=pid,
            image_id=pid,
        )


BUILDERS = {cls.DATASET_NAME: cls for cls in (IconQA,)}
