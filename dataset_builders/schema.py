"""The one record schema every builder writes, and `make_record`, which fills its defaults.

Declared once here; builders never add columns of their own (a mixture can only interleave
datasets whose features are identical). Images are stored by path (`datasets.Image` given a str
keeps only the path); video records leave `image` empty and list their frames in `frames`.
"""

from datasets import Features, Image, List, Value

# Values of `role`.
HELD_IN = "held_in"
HELD_OUT = "held_out"

# Values of `template_family`: which template pool fills `instruction` (see templates.py).
CAPTION = "caption"  # captioning templates, no placeholder
VQA = "vqa"  # VQA templates, {Question} <- `question`
VQA_MULTIPLE_CHOICE = "vqa_mc"  # VQA templates, {Question} <- `question` + its `choices`
QG = "qg"  # question-generation templates, {Answer} <- `answer`; the target is the question (the task category
# of the *_qg datasets is another name: dataset_builders.QUESTION_GENERATION = "question_generation")
ZERO_SHOT = "zero_shot"  # held-out: the paper's fixed zero-shot prompt, never re-drawn
NATIVE = "native"  # the source's own instruction (LLaVA-Instruct-150K), never re-drawn
TEMPLATE_FAMILIES = (CAPTION, VQA, VQA_MULTIPLE_CHOICE, QG, ZERO_SHOT, NATIVE)


class RecordFeatures(Features):
    """`Features` whose `encode_example` knows the record schema.

    `datasets` encodes each generated example generically (a recursive cast of every value, then
    a per-feature walk), which costs ~190 us per record and dominated building time. Records from
    `make_record` already hold plain str/int/list values that Arrow casts itself, so only the image
    columns need encoding: ~10x faster, same Arrow output.
    """

    def encode_example(self, example):
        encoded = dict(example)
        image_feature = self["image"]
        if example["image"] is not None:
            encoded["image"] = image_feature.encode_example(example["image"])
        encoded["frames"] = [image_feature.encode_example(frame) for frame in example["frames"]]
        return encoded

    def __reduce__(self):
        return RecordFeatures, (dict(self),)


FEATURES = RecordFeatures(
    {
        # identity
        "id": Value("string"),  # unique within (dataset, split), e.g. "vqav2/val/262148000"
        "dataset": Value("string"),  # registry name, e.g. "vqav2_qg"
        "task": Value("string"),  # task category (Dai et al. 2023, Figure 2), e.g. "image_qa"
        "role": Value("string"),  # HELD_IN or HELD_OUT
        "split": Value("string"),  # split name as the builder exposes it
        # inputs
        "image": Image(),  # path to the image file; None for video records
        "frames": List(Image()),  # video frames (paths or encoded bytes); [] for images
        "instruction": Value("string"),  # filled template or zero-shot prompt, OCR prefix included
        "template_family": Value("string"),  # one of TEMPLATE_FAMILIES
        "template_id": Value("int32"),  # index in the family's pool; -1 for fixed prompts
        "question": Value("string"),  # raw question ("" for captioning)
        "answer": Value("string"),  # the QA pair's answer fed to QG templates ("" otherwise)
        "context": Value("string"),  # extra text: ScienceQA hint, meme text, ... ("" if none)
        "history": List(Value("string")),  # Visual Dialog / conversation history turns
        "ocr_tokens": List(Value("string")),  # scene-text tokens (all of them, not only the 30 used)
        # targets
        "target": Value("string"),  # the training target / main reference
        "answers": List(Value("string")),  # every reference answer or caption (with repeats)
        "choices": List(Value("string")),  # candidates for ranking; [] if none
        "answer_index": Value("int32"),  # index of the correct choice; -1 if none
        # ids the official evaluation servers and scripts key on
        "question_id": Value("string"),
        "image_id": Value("string"),
        "subset": Value("string"),  # evaluation subgroup: NoCaps domain, VQA answer type, ... ("" if none)
    }
)

_DEFAULTS = {
    "image": None,
    "frames": [],
    "instruction": "",
    "template_family": ZERO_SHOT,
    "template_id": -1,
    "question": "",
    "answer": "",
    "context": "",
    "history": [],
    "ocr_tokens": [],
    "target": "",
    "answers": [],
    "choices": [],
    "answer_index": -1,
    "question_id": "",
    "image_id": "",
    "subset": "",
}
_REQUIRED = ("id", "dataset", "task", "role", "split")


def make_record(**fields) -> dict:
    """Return a full record: `fields` over the schema's defaults.

    `id`, `dataset`, `task`, `role` and `split` are required; an unknown field name raises
    `KeyError` so a typo cannot silently create a column the other builders lack. Ids are
    converted to str (sources use ints and strs alike).
    """
    unknown = set(fields) - set(FEATURES)
    if unknown:
        raise KeyError(f"fields not in the record schema: {sorted(unknown)}")
    missing = [name for name in _REQUIRED if fields.get(name) is None or fields.get(name) == ""]
    if missing:
        raise KeyError(f"required record fields missing: {missing}")
    record = {name: (list(value) if isinstance(value, list) else value) for name, value in _DEFAULTS.items()}
    record.update(fields)
    for name in ("id", "question_id", "image_id"):
        record[name] = str(record[name])
    return record
