"""A small synthetic corpus written in the official raw formats, so the real builders can run with
no download: COCO Karpathy captions (coco_caption), VQAv2 (vqav2, vqav2_qg) and GQA test-dev
(held-out).

Every image is a scene a tiny model can learn from: 1-4 shapes of one kind and colour, placed in
one region, on a plain background, with a word written at the bottom. Captions and answers are
derived from the scene, so they are consistent with the pixels.

    python -m dataset_builders.sample_data /tmp/sample      # writes /tmp/sample/{coco,gqa}

This module writes files only; it must not import the builders.
"""

import argparse
import json
import os
import random
from dataclasses import dataclass

# Written into every folder of the sample, so a report can say its scores are on synthetic data
# (evaluation.runner reads it): the files carry the official names and formats, not the official data.
SYNTHETIC_MARKER = "SYNTHETIC_SAMPLE.txt"
SYNTHETIC_NOTE = (
    "This folder holds a synthetic sample written by `python -m dataset_builders.sample_data`, in the\n"
    "official raw format of the dataset but not its data: scores on it are not comparable with published ones.\n"
)

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40)}
POSITIONS = ("left", "right", "top", "bottom")
NUMBERS = ("zero", "one", "two", "three", "four")
WORDS = ("stop", "cafe", "exit", "open", "sale", "taxi", "bus", "park")
BACKGROUNDS = ((245, 245, 245), (200, 200, 200), (120, 120, 120))


@dataclass
class Scene:
    """What one synthetic image shows."""

    shape: str
    color: str
    count: int
    position: str
    word: str
    background: tuple

    def caption(self, variant: int = 0) -> str:
        """One of five captions describing the scene."""
        noun = self.shape if self.count == 1 else f"{self.shape}s"
        number = "a" if self.count == 1 else NUMBERS[self.count]
        captions = (
            f"{number} {self.color} {noun} on the {self.position}",
            f"{number} {self.color} {noun} near the {self.position} of the picture",
            f"a sign that says {self.word} below {number} {self.color} {noun}",
            f"{NUMBERS[self.count]} {noun} in {self.color}",
            f"{self.color} {noun} placed at the {self.position}",
        )
        return captions[variant % len(captions)]

    def qa_pairs(self) -> list[tuple[str, str]]:
        """(question, answer) pairs the image answers."""
        noun = f"{self.shape}s"
        return [
            (f"How many {noun} are there?", NUMBERS[self.count]),
            ("What color are the shapes?", self.color),
            ("What shape is shown?", self.shape),
            ("Where are the shapes?", self.position),
            ("What word is written in the image?", self.word),
        ]


def random_scene(rng: random.Random) -> Scene:
    """A scene with every attribute drawn uniformly."""
    return Scene(
        shape=rng.choice(SHAPES),
        color=rng.choice(list(COLORS)),
        count=rng.randint(1, 4),
        position=rng.choice(POSITIONS),
        word=rng.choice(WORDS),
        background=rng.choice(BACKGROUNDS),
    )


def draw_scene(scene: Scene, path: str, size: int = 128) -> None:
    """Render `scene` to `path` (format from the extension)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), scene.background)
    draw = ImageDraw.Draw(image)
    radius = size // 12
    # region centres: shapes of a scene sit side by side in one region
    centre = {"left": (0.25, 0.45), "right": (0.75, 0.45), "top": (0.5, 0.2), "bottom": (0.5, 0.65)}[scene.position]
    vertical = scene.position in ("left", "right")
    for i in range(scene.count):
        offset = (i - (scene.count - 1) / 2) * 2.4 * radius
        cx = centre[0] * size + (0 if vertical else offset)
        cy = centre[1] * size + (offset if vertical else 0)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        fill = COLORS[scene.color]
        if scene.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif scene.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    draw.text((size * 0.3, size * 0.85), scene.word.upper(), fill=(0, 0, 0))
    image.save(path)


def mark_synthetic(data_dir: str) -> None:
    """Leave the SYNTHETIC_MARKER note in `data_dir`."""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, SYNTHETIC_MARKER), "w", encoding="utf-8") as f:
        f.write(SYNTHETIC_NOTE)


def _dump(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def _vqa_answers(answer: str, rng: random.Random) -> list[dict]:
    """Ten human answers as VQAv2 stores them: mostly the answer, sometimes a near miss."""
    answers = [answer if rng.random() < 0.95 else rng.choice(WORDS + NUMBERS) for _ in range(10)]
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


def write_coco_vqav2(
    data_dir: str,
    num_train_images: int = 32,
    num_val_images: int = 16,
    questions_per_image: int = 5,
    seed: int = 0,
    image_size: int = 128,
) -> dict:
    """Write COCO-2014-named images plus Karpathy's dataset_coco.json and the VQAv2 question and
    annotation files for train2014 and val2014 into `data_dir`. Returns {image path: Scene}.

    Karpathy splits: train2014 images are "train"; val2014 images alternate "val", "test",
    "restval". `questions_per_image` above 5 repeats the QA kinds (benchmark-sized corpora).
    """
    rng = random.Random(seed)
    scenes, karpathy_images = {}, []
    sentence_id = 0
    for subset, count, image_id0 in (("train2014", num_train_images, 9), ("val2014", num_val_images, 42)):
        os.makedirs(os.path.join(data_dir, subset), exist_ok=True)
        questions, annotations = [], []
        for i in range(count):
            image_id = image_id0 + i
            scene = random_scene(rng)
            filename = f"COCO_{subset}_{image_id:012d}.jpg"
            path = os.path.join(data_dir, subset, filename)
            draw_scene(scene, path, image_size)
            scenes[path] = scene
            karpathy_split = "train" if subset == "train2014" else ("val", "test", "restval")[i % 3]
            sentences = []
            for variant in range(5):
                raw = scene.caption(variant)
                sentences.append({"tokens": raw.split(), "raw": raw, "imgid": len(karpathy_images), "sentid": sentence_id})
                sentence_id += 1
            karpathy_images.append(
                {
                    "filepath": subset,
                    "sentids": [s["sentid"] for s in sentences],
                    "filename": filename,
                    "imgid": len(karpathy_images),
                    "split": karpathy_split,
                    "sentences": sentences,
                    "cocoid": image_id,
                }
            )
            pairs = scene.qa_pairs()
            for q in range(questions_per_image):
                question, answer = pairs[q % len(pairs)]
                question_id = image_id * 1000 + q
                questions.append({"image_id": image_id, "question": question, "question_id": question_id})
                annotations.append(
                    {
                        "question_type": question.split()[0].lower(),
                        "multiple_choice_answer": answer,
                        "answers": _vqa_answers(answer, rng),
                        "image_id": image_id,
                        "answer_type": "number" if answer in NUMBERS else "other",
                        "question_id": question_id,
                    }
                )
        header = {"info": {"description": "synthetic sample"}, "license": {"name": "CC BY 4.0"}, "data_subtype": subset}
        _dump(
            os.path.join(data_dir, f"v2_OpenEnded_mscoco_{subset}_questions.json"),
            {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
        )
        _dump(
            os.path.join(data_dir, f"v2_mscoco_{subset}_annotations.json"),
            {**header, "data_type": "mscoco", "annotations": annotations},
        )
    _dump(os.path.join(data_dir, "dataset_coco.json"), {"images": karpathy_images, "dataset": "coco"})
    mark_synthetic(data_dir)
    return scenes


def write_gqa(data_dir: str, num_images: int = 16, seed: int = 1, image_size: int = 128) -> dict:
    """Write GQA's testdev_balanced_questions.json and images/<imageId>.jpg into `data_dir`.
    Returns {image path: Scene}."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(data_dir, "images"), exist_ok=True)
    scenes, questions = {}, {}
    for i in range(num_images):
        image_id = f"n{161313 + i}"
        scene = random_scene(rng)
        path = os.path.join(data_dir, "images", f"{image_id}.jpg")
        draw_scene(scene, path, image_size)
        scenes[path] = scene
        for q, (question, answer) in enumerate(scene.qa_pairs()[:3]):
            question_id = f"20{i:05d}{q}"
            questions[question_id] = {
                "semantic": [{"operation": "select", "dependencies": [], "argument": f"{scene.shape} (0)"}],
                "entailed": [],
                "equivalent": [question_id],
                "question": question,
                "imageId": image_id,
                "isBalanced": True,
                "groups": {"global": None, "local": f"synthetic-{q}"},
                "answer": answer,
                "semanticStr": f"select: {scene.shape} (0)",
                "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                "types": {"detailed": "synthetic", "semantic": "attr", "structural": "query"},
                "fullAnswer": f"The answer is {answer}.",
            }
    _dump(os.path.join(data_dir, "testdev_balanced_questions.json"), questions)
    mark_synthetic(data_dir)
    return scenes


def write_sample_corpus(root: str, seed: int = 0, num_images: int = 48) -> dict:
    """Write the whole sample corpus under `root`; return {dataset name: data_dir} for `load`."""
    coco_dir, gqa_dir = os.path.join(root, "coco"), os.path.join(root, "gqa")
    write_coco_vqav2(coco_dir, num_train_images=num_images * 2 // 3, num_val_images=num_images // 3, seed=seed)
    write_gqa(gqa_dir, num_images=max(4, num_images // 3), seed=seed + 1)
    return {"coco_caption": coco_dir, "vqav2": coco_dir, "vqav2_qg": coco_dir, "gqa": gqa_dir}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--num-images", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, data_dir in write_sample_corpus(args.root, args.seed, args.num_images).items():
        print(f"{name}: {data_dir}")


if __name__ == "__main__":
    main()
