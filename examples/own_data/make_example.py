"""Write this folder's example data: small pictures of one coloured shape, and questions about them in
the record formats `train.py --train_file` reads (README, "Fine-tune on your own data").

    python examples/own_data/make_example.py        # rewrites images/, train.jsonl, validation.jsonl

train.jsonl mixes the two formats: {"image", "instruction", "answer"} records, and LLaVA-style
{"image", "conversations"} records of two exchanges (colour, then shape). validation.jsonl asks the
colour of shapes in pictures the training data does not hold. Deterministic (seeded).
"""

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

FOLDER = Path(__file__).resolve().parent
COLORS = {"red": (215, 45, 45), "green": (45, 165, 65), "blue": (45, 85, 215), "yellow": (230, 205, 45)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ((245, 245, 245), (205, 205, 205), (150, 150, 150))
QUESTIONS = ("What color is the shape?", "What is the color of the shape in the picture?")
NUM_TRAIN, NUM_VALIDATION, SIZE = 48, 24, 64


def draw(path: Path, color: str, shape: str, rng: random.Random) -> None:
    image = Image.new("RGB", (SIZE, SIZE), rng.choice(BACKGROUNDS))
    radius = rng.randint(14, 20)
    cx, cy = rng.randint(radius, SIZE - radius), rng.randint(radius, SIZE - radius)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        pen.rectangle(box, fill=COLORS[color])
    else:
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=COLORS[color])
    image.save(path, optimize=True)


def main() -> None:
    rng = random.Random(0)
    (FOLDER / "images").mkdir(exist_ok=True)
    for old in (FOLDER / "images").glob("*.png"):
        old.unlink()
    splits = {"train": [], "validation": []}
    for index in range(NUM_TRAIN + NUM_VALIDATION):
        split = "train" if index < NUM_TRAIN else "validation"
        color, shape = list(COLORS)[index % len(COLORS)], rng.choice(SHAPES)  # colours balanced in each split
        image = f"images/{index:03d}.png"
        draw(FOLDER / image, color, shape, rng)
        question = rng.choice(QUESTIONS)
        if split == "train" and index % 3 == 2:
            record = {"id": f"{index:03d}", "image": image, "conversations": [
                {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": color},
                {"from": "human", "value": "What shape is it?"}, {"from": "gpt", "value": shape},
            ]}
        else:
            record = {"id": f"{index:03d}", "image": image, "instruction": question, "answer": color}
        splits[split].append(record)
    rng.shuffle(splits["train"])
    for split, records in splits.items():
        with open(FOLDER / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)


if __name__ == "__main__":
    main()
