"""Visual Dialog v1.0 (held-out, visual conversational QA), validation split, from the official release.

Official release (https://visualdialog.org/data):

    visdial_1.0_val.json                                  <- visdial_1.0_val.zip
    VisualDialog_val2018/VisualDialog_val2018_000000XXXXXX.jpg ...  <- VisualDialog_val2018.zip

visdial_1.0_val.json: {"version": "1.0", "split": "val2018", "data": {"questions": [str],
"answers": [str], "dialogs": [{"image_id": int, "caption": str, "dialog": [{"question": int,
"answer": int, "answer_options": [int] (100), "gt_index": int}] (10 rounds)}]}}; every int is an
index into `questions` / `answers`. Questions are stored lower-case without "?".

Records: one per (dialog, round), id "<image_id>_<round>" (rounds from 1).
`history` holds the caption then "Q: <question> A: <answer>" for each earlier round; the
instruction is the paper's "Dialog history: {}\\n Question: {} Short answer:" with that history
joined by " " (the appendix gives the prompt, not how the history is written out). The 100 answer
options are the `choices` to rank (MRR), `answer_index` is `gt_index`. The dense relevance
annotations (visdial_1.0_val_dense_annotations.json) are only used by NDCG, which the paper
does not report, so they are not read.
"""

from ._base import MALFORMED_RECORD, InstructBuilder, RecordError, WRONG_FIELD_TYPE, field, list_field, load_json
from .templates import VISDIAL_PROMPT

_URL = "https://visualdialog.org/data"
DIALOGS_FILE = "visdial_1.0_val.json"
IMAGE_DIR = "VisualDialog_val2018"
FILES = {DIALOGS_FILE: _URL + " (visdial_1.0_val.zip)", IMAGE_DIR: _URL + " (VisualDialog_val2018.zip)"}
NUM_OPTIONS = 100

_CITATION = """@inproceedings{das2017visual,
  title={Visual Dialog}, author={Das, Abhishek and Kottur, Satwik and Gupta, Khushi and Singh, Avi and
  Yadav, Deshraj and Moura, Jos{\\'e} MF and Parikh, Devi and Batra, Dhruv}, booktitle={CVPR}, year={2017}}"""


def history_turns(caption: str, rounds: list[tuple[str, str]]) -> list[str]:
    """The dialog history before a round: the caption, then one "Q: .. A: .." per earlier round."""
    return [caption] + [f"Q: {question} A: {answer}" for question, answer in rounds]


class VisDial(InstructBuilder):
    """Visual Dialog v1.0 val rounds, each ranking its 100 candidate answers given the dialog so far."""

    DATASET_NAME = "visdial"
    HOMEPAGE = "https://visualdialog.org"
    CITATION = _CITATION
    FILES = FILES

    def _split_generators(self, dl_manager):
        self.wanted_splits(["validation"])
        paths = self.require_files()
        return [self.split_generator("validation", dialogs=paths[DIALOGS_FILE], image_dir=paths[IMAGE_DIR])]

    def _iter_raw(self, split, dialogs, image_dir):
        data = load_json(dialogs)["data"]
        questions, answers = data["questions"], data["answers"]
        for index, dialog in enumerate(data["dialogs"]):
            image_id = dialog.get("image_id") if isinstance(dialog, dict) else None
            yield dialogs, f"dialog #{index} (image_id={image_id})", (dialog, questions, answers, image_dir)

    def _records(self, raw, split):
        # A dialog is one raw item: if any round is malformed the whole dialog is rejected, since
        # the later rounds' history would be wrong.
        dialog, questions, answers, image_dir = raw
        image_id = field(dialog, "image_id", int)
        caption = field(dialog, "caption", str)
        image = f"{image_dir}/{IMAGE_DIR}_{image_id:012d}.jpg"
        records, earlier = [], []
        for round_number, turn in enumerate(field(dialog, "dialog", list), 1):
            question = _lookup(questions, field(turn, "question", int), "question")
            answer = _lookup(answers, field(turn, "answer", int), "answer")
            options = [_lookup(answers, i, "answer") for i in list_field(turn, "answer_options", int)]
            gt_index = field(turn, "gt_index", int)
            if len(options) != NUM_OPTIONS:
                raise RecordError(MALFORMED_RECORD, f"round {round_number} has {len(options)} answer options, not 100")
            if not 0 <= gt_index < len(options) or options[gt_index] != answer:
                message = f"round {round_number}: gt_index {gt_index} does not point at the answer"
                raise RecordError(WRONG_FIELD_TYPE, message)
            history = history_turns(caption, earlier)
            records.append(
                self.make(
                    split,
                    id=f"{image_id}_{round_number}",
                    image=image,
                    instruction=VISDIAL_PROMPT.format(" ".join(history), question),
                    question=question,
                    context=caption,
                    history=history,
                    target=answer,
                    answers=[answer],
                    choices=options,
                    answer_index=gt_index,
                    question_id=f"{image_id}_{round_number}",
                    image_id=image_id,
                )
            )
            earlier.append((question, answer))
        return records


def _lookup(table: list, index: int, what: str) -> str:
    if not 0 <= index < len(table):
        raise RecordError(WRONG_FIELD_TYPE, f"{what} index {index} is outside the {len(table)} {what}s")
    return table[index]


BUILDERS = {cls.DATASET_NAME: cls for cls in (VisDial,)}
