"""Writers of tiny raw releases in the official formats of VSR, IconQA, ScienceQA, Visual Dialog,
Hateful Memes, LLaVA-Instruct-150K, MSVD-QA, MSRVTT-QA and iVQA (layouts as each builder's module
docstring gives them), plus corrupt images and videos for the error-policy tests.

Each `write_<dataset>(root)` writes a valid release under `root` and returns `root`; the tests
then damage copies of it. Videos are real, tiny (32x24, a few frames) and encoded with PyAV; frame
i of a video is a flat grey of level `frame_level(i)`, so a test can tell which frames were sampled.
Only `build` (the one way the tests build a dataset) imports the builders.
"""

import csv
import json
import os

import av
import numpy as np
from PIL import Image


# --- generic files --------------------------------------------------------------------------


def write_image(path, color=(200, 30, 30), size=(8, 8)):
    """A small solid image; the format follows the extension (.png, .jpg)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_declared_size_png(path, width, height):
    """A small valid PNG whose header declares `width` x `height`: PIL checks the declared size at open."""
    import struct
    import zlib

    Image.new("L", (8, 8), 128).save(path, "PNG")
    data = bytearray(open(path, "rb").read())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    open(path, "wb").write(bytes(data))
    return path


def write_corrupt_file(path):
    """A file that is neither an image nor a video."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"this is not an image nor a video\n" * 4)
    return path


def truncate_file(path, keep=0.9):
    """Cut a file to `keep` of its length (a download that stopped half way)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return path


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    return path


def write_jsonl(path, items):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    return path


def append_line(path, line):
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def frame_level(i):
    """Grey level of frame i of a fixture video."""
    return 10 + 20 * i


_CODECS = {".avi": "mpeg4", ".mp4": "mpeg4", ".webm": "libvpx"}


def write_video(path, num_frames=7, size=(32, 24), fps=10):
    """A tiny real video (codec from the extension) whose frame i is grey `frame_level(i)`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream(_CODECS[os.path.splitext(path)[1]], rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            pixels = np.full((size[1], size[0], 3), frame_level(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- VSR ------------------------------------------------------------------------------------

VSR_ITEMS = [
    {"image": "000000050403.jpg", "caption": "The teddy bear is in front of the person.", "label": 1, "relation": "in front of"},
    {"image": "000000401552.jpg", "caption": "The umbrella is far away from the motorcycle.", "label": 0, "relation": "far away from"},
]


def write_vsr(root, split_type="zeroshot"):
    for item in VSR_ITEMS:
        write_image(os.path.join(root, "images", item["image"]))
    lines = [
        {
            **item,
            "image_link": f"http://images.cocodataset.org/train2017/{item['image']}",
            "annotator_id": 31,
            "vote_true_validator_id": [2, 6] if item["label"] else [],
            "vote_false_validator_id": [] if item["label"] else [2, 9, 1],
        }
        for item in VSR_ITEMS
    ]
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        write_jsonl(os.path.join(root, "splits", split_type, name), lines)
    return root


# --- IconQA ---------------------------------------------------------------------------------

ICONQA_PROBLEMS = {
    "1": {"question": "Which shape is a circle?", "choices": ["square", "circle", "star"], "answer": 1,
          "ques_type": "choose_txt", "split": "test", "grade": "grade1", "label": "shape"},
    "2": {"question": "Is the dot inside the box?", "choices": ["yes", "no"], "answer": 0,
          "ques_type": "choose_txt", "split": "test", "grade": "grade2", "label": "position"},
    "3": {"question": "Which picture shows three?", "choices": ["image", "image"], "answer": 0,
          "ques_type": "choose_img", "split": "test", "grade": "grade1", "label": "count"},
    "4": {"question": "What time is shown?", "choices": ["3:00", "4:00"], "answer": 1,
          "ques_type": "choose_txt", "split": "train", "grade": "grade1", "label": "time"},
    "5": {"question": "Which is heavier?", "choices": ["feather", "brick"], "answer": 1,
          "ques_type": "choose_txt", "split": "test", "grade": "grade3", "label": "weight"},
}


def write_iconqa(root):
    for pid, problem in ICONQA_PROBLEMS.items():
        write_image(os.path.join(root, "iconqa", problem["split"], problem["ques_type"], pid, "image.png"))
    write_json(os.path.join(root, "problems.json"), ICONQA_PROBLEMS)
    write_json(
        os.path.join(root, "pid_splits.json"),
        {"choose_txt_test": ["1", "2", "5"], "choose_img_test": ["3"], "choose_txt_train": ["4"],
         "choose_txt_val": [], "fill_in_blank_test": []},
    )
    return root


# --- ScienceQA ------------------------------------------------------------------------------

SCIENCEQA_PROBLEMS = {
    "1": {"question": "Which animal's feet are adapted for digging?", "choices": ["mole", "duck", "frog"], "answer": 0,
          "hint": "Moles live underground.", "image": "image.png", "split": "test"},
    "2": {"question": "Which word would you find on a dictionary page?", "choices": ["cap", "zoo"], "answer": 0,
          "hint": "", "image": None, "split": "test"},
    "3": {"question": "Which state is highlighted?", "choices": ["Ohio", "Utah"], "answer": 1,
          "hint": "", "image": "image.png", "split": "test"},
    "4": {"question": "Which material is this spoon made of?", "choices": ["wood", "rubber"], "answer": 0,
          "hint": "", "image": "image.png", "split": "test"},
    "5": {"question": "What is the mass of a pencil?", "choices": ["10 grams", "10 kilograms"], "answer": 0,
          "hint": "Select the better estimate.", "image": "image.png", "split": "val"},
}


def write_scienceqa(root):
    for pid, problem in SCIENCEQA_PROBLEMS.items():
        problem.update(task="closed choice", grade="grade4", subject="natural science", topic="biology",
                       category="Adaptations", skill="Animal adaptations", lecture="", solution="")
        if problem["image"]:
            write_image(os.path.join(root, "images", problem["split"], pid, "image.png"))
    os.makedirs(os.path.join(root, "images", "train"), exist_ok=True)
    write_json(os.path.join(root, "problems.json"), SCIENCEQA_PROBLEMS)
    write_json(os.path.join(root, "pid_splits.json"),
               {"train": [], "val": ["5"], "test": ["1", "2", "3", "4"], "trainval": ["5"], "minitest": ["1"]})
    return root


# --- Visual Dialog --------------------------------------------------------------------------

VISDIAL_QUESTIONS = ["is the photo in color", "how many people are there", "is it sunny", "what color is the car"]
VISDIAL_ANSWERS = ["yes", "no", "2", "red"] + [f"filler answer {i}" for i in range(100)]
# (image_id, caption, [(question index, answer index, gt_index)])
VISDIAL_DIALOGS = [
    (185565, "a man riding a bike down the street", [(0, 0, 3), (1, 2, 0), (2, 1, 99)]),
    (284024, "a red car parked by a fence", [(3, 3, 50), (0, 0, 7)]),
]


def _answer_options(answer, gt_index):
    fillers = [4 + i for i in range(100) if 4 + i != answer][:99]
    return fillers[:gt_index] + [answer] + fillers[gt_index:]


def write_visdial(root):
    dialogs = []
    for image_id, caption, rounds in VISDIAL_DIALOGS:
        write_image(os.path.join(root, "VisualDialog_val2018", f"VisualDialog_val2018_{image_id:012d}.jpg"))
        dialogs.append({
            "image_id": image_id,
            "caption": caption,
            "dialog": [
                {"question": q, "answer": a, "answer_options": _answer_options(a, gt), "gt_index": gt}
                for q, a, gt in rounds
            ],
        })
    write_json(os.path.join(root, "visdial_1.0_val.json"), {
        "version": "1.0", "split": "val2018",
        "data": {"questions": VISDIAL_QUESTIONS, "answers": VISDIAL_ANSWERS, "dialogs": dialogs},
    })
    return root


# --- Hateful Memes --------------------------------------------------------------------------

HATEFUL_MEMES_ITEMS = [
    {"id": 8291, "img": "img/08291.png", "label": 1, "text": "white people is this a shooting range"},
    {"id": 46971, "img": "img/46971.png", "label": 0, "text": "bravery at its finest"},
]


def write_hateful_memes(root, dev_name="dev_seen.jsonl"):
    for item in HATEFUL_MEMES_ITEMS:
        write_image(os.path.join(root, item["img"]))
    write_jsonl(os.path.join(root, dev_name), HATEFUL_MEMES_ITEMS)
    write_jsonl(os.path.join(root, "train.jsonl"), HATEFUL_MEMES_ITEMS[:1])
    return root


# --- LLaVA-Instruct-150K --------------------------------------------------------------------

LLAVA_FILES = {
    "conversation_58k.json": [
        {"id": "000000215677", "image": "000000215677.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat skateboarding trick is the man performing?"},
            {"from": "gpt", "value": "The man is performing a kickflip."},
            {"from": "human", "value": "Is it a difficult trick?"},
            {"from": "gpt", "value": "Yes, it takes practice."},
        ]},
        {"id": "000000033471", "image": "000000033471.jpg", "conversations": [
            {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
        ]},
    ],
    "detail_23k.json": [
        {"id": "000000442786", "image": "000000442786.jpg", "conversations": [
            {"from": "human", "value": "What do you see happening in this image?\n<image>"},
            {"from": "gpt", "value": "The scene depicts a lively plaza."},
        ]},
    ],
    "complex_reasoning_77k.json": [
        {"id": "000000138878", "image": "000000138878.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat may be the purpose of this gathering?"},
            {"from": "gpt", "value": "They are likely celebrating a birthday."},
        ]},
    ],
}


def write_llava(root, image_folder="train2017"):
    for name, items in LLAVA_FILES.items():
        write_json(os.path.join(root, name), items)
        for item in items:
            image = item["image"] if image_folder == "train2017" else f"COCO_train2014_{item['image']}"
            write_image(os.path.join(root, image_folder, image), color=(20, 90, 200))
    return root


# --- MSVD-QA and MSRVTT-QA ------------------------------------------------------------------

# train answers by frequency: man (3), dog (2), guitar (1), ball (1)
VIDEO_QA_TRAIN = ["man", "dog", "man", "guitar", "dog", "man", "ball"]


def _video_qa_items(video_ids, questions):
    return [
        {"answer": answer, "id": i, "question": question, "video_id": video_id}
        for i, (video_id, (question, answer)) in enumerate(zip(video_ids, questions))
    ]


MSVD_TEST = [("who is playing a guitar?", "man"), ("what is the dog chasing?", "ball"), ("what is a cat doing?", "sleep")]


def write_msvd_qa(root):
    clips = {1: "-4wsuPCjDBc_5_15", 2: "-7KMZQEsJW4_205_208"}
    with open(os.path.join(_mkdir(root), "youtube_mapping.txt"), "w") as f:
        for vid, clip in clips.items():
            f.write(f"{clip} vid{vid}\n")
    for clip in clips.values():
        write_video(os.path.join(root, "YouTubeClips", f"{clip}.avi"))
    write_json(os.path.join(root, "train_qa.json"),
               _video_qa_items([1] * len(VIDEO_QA_TRAIN), [("q?", a) for a in VIDEO_QA_TRAIN]))
    write_json(os.path.join(root, "val_qa.json"), _video_qa_items([2], [("who is there?", "man")]))
    write_json(os.path.join(root, "test_qa.json"), _video_qa_items([1, 2, 2], MSVD_TEST))
    return root


MSRVTT_TEST = [("what is a man playing?", "guitar"), ("who is talking?", "man")]


def write_msrvtt_qa(root):
    for video_id in (7010, 7011):
        write_video(os.path.join(root, "TestVideo", f"video{video_id}.mp4"))
    write_video(os.path.join(root, "TrainValVideo", "video0.mp4"))
    items = _video_qa_items([0] * len(VIDEO_QA_TRAIN), [("q?", a) for a in VIDEO_QA_TRAIN])
    write_json(os.path.join(root, "train_qa.json"), [{**item, "category_id": 3} for item in items])
    write_json(os.path.join(root, "val_qa.json"), [])
    test = _video_qa_items([7010, 7011], MSRVTT_TEST)
    write_json(os.path.join(root, "test_qa.json"), [{**item, "category_id": 9} for item in test])
    return root


# --- iVQA -----------------------------------------------------------------------------------

IVQA_COLUMNS = ["video_id", "start", "end", "question", "answer1", "answer2", "answer3", "answer4", "answer5"]
IVQA_ROWS = [
    ["gU4-15o9j5Q", "633", "643", "What does she wear on her hands?",
     "surgical gloves", "gloves", "surgical gloves", "gloves", "surgical gloves"],
    ["uiLr9bdOL0M", "23", "30", "Who moves the red glass?", "parrot", "grey parrot", "parrot", "bird", "parrot"],
]


def write_ivqa(root):
    for row in IVQA_ROWS:
        write_video(os.path.join(root, "video", f"{row[0]}_{row[1]}_{row[2]}.webm"))
    for name in ("train.csv", "val.csv", "test.csv"):
        with open(os.path.join(root, name), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(IVQA_COLUMNS)
            writer.writerows(IVQA_ROWS)
    return root


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path


# --- building -------------------------------------------------------------------------------


def build_records(name, data_dir, split, cache_dir, **options):
    """Build `split` of `name` from `data_dir`; return (records as dicts, error report).

    Images and frames come back undecoded ({"path", "bytes"}), so tests see the stored paths.
    """
    from datasets import Image as ImageFeature
    from datasets import List

    from dataset_builders import load

    dataset, report = load(name, str(data_dir), split, cache_dir=str(cache_dir), return_report=True, **options)
    dataset = dataset.cast_column("image", ImageFeature(decode=False))
    dataset = dataset.cast_column("frames", List(ImageFeature(decode=False)))
    return dataset.to_list(), report
