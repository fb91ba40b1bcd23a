"""`RawData`: writers of the official raw releases of the image datasets (VQA format, Karpathy
captions, NoCaps, TextCaps/TextVQA with Rosetta OCR, OCR-VQA, VizWiz, GQA), a few records and tiny
images each, under a tmp dir. The builder tests get one as the `raw` fixture (conftest.py); the
evaluation tests write their data folders with it. fixtures_heldout.py writes the other releases.
"""

import os

from tests.dataset_builders.fixtures_heldout import truncate_file, write_corrupt_file, write_image
from tests.dataset_builders.fixtures_heldout import write_json as dump


def corrupt_image(path: str) -> None:
    """Replace the file with bytes that are no image."""
    write_corrupt_file(path)


def truncate_image(path: str) -> None:
    """Cut the file in half: the header survives, the data and end marker do not."""
    truncate_file(path, keep=0.5)


def vqa_answers(*answers):
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


class RawData:
    """Writers of official-format releases under a tmp dir."""

    def __init__(self, root):
        self.root = str(root)

    def dir(self, name):
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def vqa_format(self, name, questions_file, annotations_file, subset, answer_sets, mc=True):
        """VQA-format questions + annotations (VQAv2, OK-VQA) over COCO 2014 images."""
        d = self.dir(name)
        questions, annotations = [], []
        for i, (question, answers) in enumerate(answer_sets):
            image_id, question_id = 100 + i, 1000 + i
            write_image(f"{d}/{subset}/COCO_{subset}_{image_id:012d}.jpg")
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotation = {
                "question_type": "what",
                "answers": vqa_answers(*answers),
                "image_id": image_id,
                "answer_type": "other",
                "question_id": question_id,
            }
            if mc:
                annotation["multiple_choice_answer"] = answers[0]
            annotations.append(annotation)
        header = {"info": {}, "license": {}, "data_subtype": subset, "data_type": "mscoco"}
        dump(f"{d}/{questions_file}", {**header, "task_type": "Open-Ended", "questions": questions})
        dump(f"{d}/{annotations_file}", {**header, "annotations": annotations})
        return d

    def vqav2(self):
        sets = [("What color is the bus?", ["red"] * 8 + ["blue"] * 2), ("How many dogs?", ["2"] * 9 + ["two"])]
        self.vqa_format("vqav2", "v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json", "train2014", sets)
        return self.vqa_format(
            "vqav2", "v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json", "val2014",
            [("Is it raining?", ["no"] * 10)],
        )

    def okvqa(self):
        sets = [("What sport is this?", ["tennis"] * 4 + ["ball"] * 6), ("Who made it?", ["apple"] * 10)]
        return self.vqa_format(
            "okvqa", "OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json", "train2014", sets, mc=False
        )

    def aokvqa(self):
        d = self.dir("aokvqa")
        items = [
            {
                "split": "train", "image_id": 299207, "question_id": "22MexNkBPpdZGX6sxbxVBH",
                "question": "What is the man by the bags awaiting?", "choices": ["skateboarder", "train", "delivery", "cab"],
                "correct_choice_idx": 3, "direct_answers": ["ride", "ride", "bus", "taxi", "travelling", "traffic", "taxi", "cab", "cab", "his ride"],
                "difficult_direct_answer": False, "rationales": ["A train would not be on the street."],
            },
        ]
        write_image(f"{d}/train2017/{299207:012d}.jpg")
        dump(f"{d}/aokvqa_v1p0_train.json", items)
        test = [{"split": "test", "image_id": 5, "question_id": "T1", "question": "Why?", "choices": ["a", "b", "c", "d"],
                 "difficult_direct_answer": False}]
        write_image(f"{d}/test2017/{5:012d}.jpg")
        dump(f"{d}/aokvqa_v1p0_test.json", test)
        return d

    def karpathy(self, name, filename, image_folder=None):
        d = self.dir(name)
        images = []
        for i, split in enumerate(("train", "restval", "val", "test")):
            folder = image_folder or ("train2014" if split == "train" else "val2014")
            file = f"COCO_{folder}_{i:012d}.jpg" if image_folder is None else f"{1000 + i}.jpg"
            write_image(f"{d}/{folder}/{file}")
            sentences = [{"tokens": [], "raw": f"caption {j} of image {i} ", "imgid": i, "sentid": 10 * i + j} for j in range(5)]
            entry = {"sentids": [s["sentid"] for s in sentences], "filename": file, "imgid": i, "split": split, "sentences": sentences}
            if image_folder is None:
                entry.update(filepath=folder, cocoid=i)
            images.append(entry)
        dump(f"{d}/{filename}", {"images": images, "dataset": name})
        return d

    def coco_caption(self):
        return self.karpathy("coco_caption", "dataset_coco.json")

    def flickr30k(self):
        return self.karpathy("flickr30k", "dataset_flickr30k.json", image_folder="flickr30k-images")

    def web_capfilt(self):
        d = self.dir("web_capfilt")
        pairs = [{"url": "http://example.com/a.jpg", "caption": "a dog on a beach"}] * 3
        pairs[1] = {"url": "http://example.com/b.jpg", "caption": "a red car "}
        for row in (0, 1):  # row 2's download "failed"
            write_image(f"{d}/images/00000/{row:09d}.jpg")
        dump(f"{d}/ccs_synthetic_filtered_large.json", pairs)
        return d

    def nocaps(self):
        d = self.dir("nocaps")
        images = [
            {"id": 0, "open_images_id": "0013ea2087020901", "file_name": "0013ea2087020901.jpg", "height": 8, "width": 8,
             "domain": "near-domain", "coco_url": "", "license": 1, "date_captured": ""},
            {"id": 1, "open_images_id": "0015ea2087020901", "file_name": "0015ea2087020901.jpg", "height": 8, "width": 8,
             "domain": "out-domain", "coco_url": "", "license": 1, "date_captured": ""},
        ]
        annotations = [{"image_id": i % 2, "id": i, "caption": f"caption {i}"} for i in range(20)]
        for image in images:
            write_image(f"{d}/val/{image['file_name']}")
        dump(f"{d}/nocaps_val_4500_captions.json", {"licenses": [], "info": {}, "images": images, "annotations": annotations})
        return d

    def rosetta_ocr(self, d, split, tokens):
        dump(f"{d}/TextVQA_Rosetta_OCR_v0.2_{split}.json",
             {"data": [{"image_id": image_id, "ocr_tokens": words, "ocr_info": [{"word": w} for w in words]}
                       for image_id, words in tokens.items()]})

    def textcaps(self):
        d = self.dir("textcaps")
        refs = ["a sign that says stop", "a stop sign", "red sign", "stop", "a sign"]
        data = [
            {"image_id": "011e7e629fb9ae7b", "caption_id": 10 + i, "caption_str": ref, "reference_strs": refs,
             "image_path": "train/011e7e629fb9ae7b.jpg", "set_name": "train", "image_classes": []}
            for i, ref in enumerate(refs)
        ]
        write_image(f"{d}/train_images/011e7e629fb9ae7b.jpg")
        header = {"dataset_type": "train", "dataset_name": "textcaps", "dataset_version": "0.1"}
        dump(f"{d}/TextCaps_0.1_train.json", {**header, "data": data})
        dump(f"{d}/TextCaps_0.1_val.json", {**header, "data": [dict(x, set_name="val") for x in data]})
        tokens = {"011e7e629fb9ae7b": [f"w{i}" for i in range(35)]}
        self.rosetta_ocr(d, "train", tokens)
        self.rosetta_ocr(d, "val", tokens)
        return d

    def textvqa(self):
        d = self.dir("textvqa")
        data = [
            {"question": "what is the brand?", "image_id": "0054c91397f2fe05", "question_id": 34602,
             "answers": ["nokia"] * 7 + ["nokia phone"] * 3, "image_classes": ["phone"], "set_name": "val",
             "flickr_original_url": "", "flickr_300k_url": "", "image_width": 8, "image_height": 8},
        ]
        write_image(f"{d}/train_images/0054c91397f2fe05.jpg")
        dump(f"{d}/TextVQA_0.5.1_val.json", {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
        self.rosetta_ocr(d, "val", {"0054c91397f2fe05": ["NOKIA", "Connecting", "People"]})
        return d

    def ocrvqa(self):
        d = self.dir("ocrvqa")
        entries = {
            "1937799551": {"imageURL": "http://ecx.images-amazon.com/images/I/51Tw.jpg", "title": "Sheet Music",
                           "authorName": "A", "genre": "Arts & Photography", "split": 1,
                           "questions": ["Who wrote this book?", "What is the title of this book?"],
                           "answers": ["A", "Sheet Music"]},
            "0000000002": {"imageURL": "http://x/2.jpg", "title": "T", "authorName": "B", "genre": "Travel", "split": 3,
                           "questions": ["Who wrote this book?"], "answers": ["B"]},
        }
        write_image(f"{d}/images/1937799551.jpg")
        write_image(f"{d}/images/0000000002.jpg")
        dump(f"{d}/dataset.json", entries)
        return d

    def vizwiz(self):
        d = self.dir("vizwiz")
        items = [
            {"image": "VizWiz_val_00000000.jpg", "question": "Ok. There is another picture. What is this?",
             "answers": [{"answer": a, "answer_confidence": "yes"} for a in ["soda"] * 6 + ["unanswerable"] * 4],
             "answer_type": "other", "answerable": 1},
        ]
        write_image(f"{d}/val/VizWiz_val_00000000.jpg")
        dump(f"{d}/Annotations/val.json", items)
        dump(f"{d}/Annotations/test.json", [{"image": "VizWiz_test_00000000.jpg", "question": "What is it?"}])
        write_image(f"{d}/test/VizWiz_test_00000000.jpg")
        return d

    def gqa(self):
        d = self.dir("gqa")
        questions = {
            "201307251": {"question": "Is the plate to the left of the cup?", "imageId": "n161313", "answer": "yes",
                          "fullAnswer": "Yes, the plate is to the left of the cup.", "isBalanced": True,
                          "types": {"structural": "verify", "semantic": "rel", "detailed": "relVerify"},
                          "groups": {"global": None, "local": "13-plate_cup"}, "semantic": [], "semanticStr": "",
                          "entailed": [], "equivalent": ["201307251"], "annotations": {}},
        }
        write_image(f"{d}/images/n161313.jpg")
        dump(f"{d}/testdev_balanced_questions.json", questions)
        return d
