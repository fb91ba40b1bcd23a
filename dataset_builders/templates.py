"""The paper's instruction templates and zero-shot prompts (Dai et al. 2023, appendix; verbatim), and the
functions that fill them.

Training records draw one template uniformly per example, seeded by (seed, dataset, id) so a
build is reproducible whatever the order or sharding; `redraw_instruction` re-draws it from a
record's raw fields (question, answer, choices, ocr_tokens) with any `random.Random`, so training
can show a new template every epoch. Held-out records carry the fixed zero-shot prompt.
This module must not read files or know any dataset's raw format.
"""

import random

from .schema import CAPTION, NATIVE, QG, VQA, VQA_MULTIPLE_CHOICE, ZERO_SHOT

CAPTION_TEMPLATES = (
    "A short image caption:",
    "A short image description:",
    "A photo of",
    "An image that shows",
    "Write a short description for the image.",
    "Write a description for the photo.",
    "Provide a description of what is presented in the photo.",
    "Briefly describe the content of the image.",
    "Can you briefly explain what you see in the image?",
    "Could you use a few words to describe what you perceive in the photo?",
    "Please provide a short depiction of the picture.",
    "Using language, provide a short account of the image.",
    "Use a few words to illustrate what is happening in the picture.",
)

VQA_TEMPLATES = (
    "{Question}",
    "Question: {Question}",
    "{Question} A short answer to the question is",
    "Q: {Question} A:",
    "Question: {Question} Short answer:",
    "Given the image, answer the following question with no more than three words. {Question}",
    "Based on the image, respond to this question with a short answer: {Question}. Answer:",
    "Use the provided image to answer the question: {Question} Provide your answer as short as possible:",
    'What is the answer to the following question? "{Question}"',
    'The question "{Question}" can be answered using the image. A short answer is',
)

QUESTION_GENERATION_TEMPLATES = (
    "Given the image, generate a question whose answer is: {Answer}. Question:",
    "Based on the image, provide a question with the answer: {Answer}. Question:",
    'Given the visual representation, create a question for which the answer is "{Answer}".',
    "From the image provided, craft a question that leads to the reply: {Answer}. Question:",
    "Considering the picture, come up with a question where the answer is: {Answer}.",
    "Taking the image into account, generate an question that has the answer: {Answer}. Question:",
)

TEMPLATES = {
    CAPTION: CAPTION_TEMPLATES,
    VQA: VQA_TEMPLATES,
    VQA_MULTIPLE_CHOICE: VQA_TEMPLATES,
    QG: QUESTION_GENERATION_TEMPLATES,
}

# Zero-shot prompts of the held-out datasets (paper appendix E). "{}" slots are filled in order.
CAPTION_PROMPT = "A short image description:"
SHORT_ANSWER_PROMPT = "Question: {} Short answer:"  # GQA, VizWiz, iVQA, MSVD-QA, MSRVTT-QA
TEXTVQA_PROMPT = "OCR tokens: {}. Question: {} Short answer:"
VSR_PROMPT = 'Based on the image, is this statement true or false? "{}" Answer:'
ICONQA_PROMPT = "Question: {} Options: {}. Short answer:"
SCIENCEQA_PROMPT = "Context: {} Question: {} Options: {}. Answer:"
VISDIAL_PROMPT = "Dialog history: {}\n Question: {} Short answer:"
HATEFUL_MEMES_PROMPT = 'This is an image with: "{}" written on it. Is it hateful? Answer:'

ZERO_SHOT_PROMPTS = {
    "nocaps": CAPTION_PROMPT,
    "flickr30k": CAPTION_PROMPT,
    "gqa": SHORT_ANSWER_PROMPT,
    "vizwiz": SHORT_ANSWER_PROMPT,
    "ivqa": SHORT_ANSWER_PROMPT,
    "msvd_qa": SHORT_ANSWER_PROMPT,
    "msrvtt_qa": SHORT_ANSWER_PROMPT,
    "textvqa": TEXTVQA_PROMPT,
    "vsr": VSR_PROMPT,
    "iconqa": ICONQA_PROMPT,
    "scienceqa": SCIENCEQA_PROMPT,
    "visdial": VISDIAL_PROMPT,
    "hateful_memes": HATEFUL_MEMES_PROMPT,
}

MAX_OCR_TOKENS = 30  # LAVIS keeps the first 30 OCR tokens


def format_ocr_tokens(ocr_tokens) -> str:
    """The first 30 OCR tokens joined with ", " (LAVIS)."""
    return ", ".join(ocr_tokens[:MAX_OCR_TOKENS])


def ocr_prefix(ocr_tokens) -> str:
    """`"OCR tokens: a, b, c. "`, the text the paper puts before the instruction; "" without tokens."""
    return f"OCR tokens: {format_ocr_tokens(ocr_tokens)}. " if ocr_tokens else ""


def format_choices_lettered(choices) -> str:
    """`"(a) x (b) y ..."`, the ScienceQA option format of the paper's prompts."""
    return " ".join(f"({chr(ord('a') + i)}) {choice}" for i, choice in enumerate(choices))


def fill_template(family: str, template_id: int, *, question="", answer="", choices=(), ocr_tokens=()) -> str:
    """The instruction of template `template_id` of `family`, filled and OCR-prefixed.

    For `vqa_mc`, {Question} becomes the question followed by " Options: (a) x (b) y".
    `ocr_tokens` adds the OCR prefix (pass [] for datasets without scene text).
    """
    template = TEMPLATES[family][template_id]
    if family == VQA_MULTIPLE_CHOICE and choices:
        question = f"{question} Options: {format_choices_lettered(choices)}"
    text = template.replace("{Question}", question).replace("{Answer}", answer)
    return ocr_prefix(ocr_tokens) + text


def draw_template_id(family: str, rng: random.Random) -> int:
    """One template index of `family`, uniformly at random."""
    return rng.randrange(len(TEMPLATES[family]))


def example_rng(seed: int, dataset: str, example_id: str) -> random.Random:
    """A `random.Random` for one example, independent of build order (str seeds are hashed with SHA-512)."""
    return random.Random(f"{seed}/{dataset}/{example_id}")


def redraw_instruction(record: dict, rng: random.Random) -> dict:
    """Return `record` with a freshly drawn template in `instruction` and `template_id`.

    Works on a record dict (e.g. inside `Dataset.map` or a collator); records with a fixed
    instruction (zero-shot prompts, LLaVA's native instructions) come back unchanged.
    """
    family = record["template_family"]
    if family in (ZERO_SHOT, NATIVE):
        return record
    template_id = draw_template_id(family, rng)
    instruction = fill_template(
        family,
        template_id,
        question=record["question"],
        answer=record["answer"],
        choices=record["choices"],
        ocr_tokens=record["ocr_tokens"],
    )
    return {**record, "instruction": instruction, "template_id": template_id}


def redraw_transform(seed: int):
    """A function for `Dataset.map` / `IterableDataset.map` that re-draws every record's template.

    Each record's rng is seeded by (seed, dataset, id), so the draw does not depend on order,
    sharding or workers; pass a new seed each epoch (e.g. `base_seed + epoch`).
    """

    def _redraw(record):
        return redraw_instruction(record, example_rng(seed, record["dataset"], record["id"]))

    return _redraw
