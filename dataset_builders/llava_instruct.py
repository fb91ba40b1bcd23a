"""LLaVA-Instruct-150K (held-in): conversation, detailed description and complex reasoning.

Official release (https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K) and the COCO
images it is written on, in one folder:

    conversation_58k.json       (llava_conversation)
    detail_23k.json             (llava_detail)
    complex_reasoning_77k.json  (llava_reasoning)
    train2017/000000215677.jpg ...              <- http://images.cocodataset.org/zips/train2017.zip
      or train2014/COCO_train2014_000000215677.jpg  (the same images under their 2014 names)

Each file: [{"id": "000000215677", "image": "000000215677.jpg", "conversations": [{"from":
"human", "value": "<image>\\nWhat is ...?"}, {"from": "gpt", "value": "..."}, ...]}]; turns
alternate human/gpt, and the first human turn carries the "<image>" marker before or after its text.

Records: the paper keeps LLaVA's own instructions (no template: template_family "native").
Each (human, gpt) exchange is one record: `question` is the human turn with the "<image>" marker
stripped, `target` the gpt turn, `history` the earlier turns (human, gpt, human, ...). The
instruction is the conversation as LLaVA wrote it up to this question, one turn per line
(`"\\n".join(history + [question])`), so a follow-up question keeps its referents; the first
exchange's instruction is LLaVA's instruction verbatim. Detail and reasoning are single-exchange.
"""

import os

from ._base import MALFORMED_RECORD, InstructBuilder, RecordError, field, iter_json_array
from .schema import NATIVE

_HUB = "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K/resolve/main/"
_COCO = "http://images.cocodataset.org/zips/"
IMAGE_MARKER = "<image>"

_CITATION = """@inproceedings{liu2023visual,
  title={Visual Instruction Tuning}, author={Liu, Haotian and Li, Chunyuan and Wu, Qingyang and Lee, Yong Jae},
  booktitle={NeurIPS}, year={2023}}"""


def strip_image_marker(text: str) -> str:
    """The turn's text without the "<image>" marker and the newline that sets it apart."""
    return text.replace(IMAGE_MARKER, "").strip()


def conversation_exchanges(turns) -> list[tuple[list[str], str, str]]:
    """LLaVA's `conversations` (alternating {"from": "human"|"gpt", "value"}) -> one (history, question,
    answer) per exchange, markers stripped; `history` is the earlier turns (human, gpt, human, ...).
    Raises RecordError for turns that are not (human, gpt) pairs."""
    if not isinstance(turns, list):
        raise RecordError(MALFORMED_RECORD, f"conversations is a {type(turns).__name__}, expected a list of turns")
    if not turns or len(turns) % 2:
        raise RecordError(MALFORMED_RECORD, f"{len(turns)} turns; expected (human, gpt) pairs")
    texts = []
    for position, turn in enumerate(turns):
        speaker = field(turn, "from", str)
        expected = "human" if position % 2 == 0 else "gpt"
        if speaker != expected:
            raise RecordError(MALFORMED_RECORD, f"turn {position} is from {speaker!r}, expected {expected!r}")
        texts.append(strip_image_marker(field(turn, "value", str)))
    return [(texts[: 2 * n], texts[2 * n], texts[2 * n + 1]) for n in range(len(texts) // 2)]


def exchange_instruction(history: list[str], question: str) -> str:
    """The instruction of one exchange: the conversation as written up to its question, one turn per line."""
    return "\n".join(history + [question])


class LLaVAInstruct(InstructBuilder):
    """Base of the three LLaVA-Instruct-150K builders; subclasses name their file."""

    TEMPLATE_FAMILY = NATIVE
    HOMEPAGE = "https://llava-vl.github.io"
    CITATION = _CITATION
    FILE = ""

    def _split_generators(self, dl_manager):
        self.wanted_splits(["train"])
        paths = self.require_files({self.FILE: _HUB + self.FILE})
        if os.path.isdir(self.path("train2017")):
            image_prefix = self.path("train2017") + "/"
        elif os.path.isdir(self.path("train2014")):
            image_prefix = self.path("train2014", "COCO_train2014_")
        else:
            raise FileNotFoundError(
                f"{self.DATASET_NAME}: missing from {self.config.data_dir}:\n"
                f"  train2017  <- {_COCO}train2017.zip  (or train2014 <- {_COCO}train2014.zip)"
            )
        return [self.split_generator("train", conversations=paths[self.FILE], image_prefix=image_prefix)]

    def _iter_raw(self, split, conversations, image_prefix):
        for index, item in enumerate(iter_json_array(conversations)):
            item_id = item.get("id") if isinstance(item, dict) else None
            yield conversations, f"#{index} (id={item_id})", (item, image_prefix)

    def _records(self, raw, split):
        item, image_prefix = raw
        item_id = field(item, "id", (str, int))
        image = field(item, "image", str)
        turns = field(item, "conversations", list)
        records = []
        for exchange, (history, question, answer) in enumerate(conversation_exchanges(turns)):
            records.append(
                self.make(
                    split,
                    id=f"{item_id}_{exchange}",
                    image=image_prefix + image,
                    instruction=exchange_instruction(history, question),
                    question=question,
                    history=history,
                    target=answer,
                    answers=[answer],
                    question_id=f"{item_id}_{exchange}",
                    image_id=image.rsplit(".", 1)[0],
                )
            )
        return records


class LLaVAConversation(LLaVAInstruct):
    """LLaVA-Instruct-150K multi-turn conversations, one record per exchange."""

    DATASET_NAME = "llava_conversation"
    FILE = "conversation_58k.json"


class LLaVADetail(LLaVAInstruct):
    """LLaVA-Instruct-150K detailed descriptions."""

    DATASET_NAME = "llava_detail"
    FILE = "detail_23k.json"


class LLaVAReasoning(LLaVAInstruct):
    """LLaVA-Instruct-150K complex reasoning questions."""

    DATASET_NAME = "llava_reasoning"
    FILE = "complex_reasoning_77k.json"


BUILDERS = {cls.DATASET_NAME: cls for cls in (LLaVAConversation, LLaVADetail, LLaVAReasoning)}
