"""Publishing instruction data as a Hub dataset repo: the folder that would be uploaded (embedded Parquet
shards and the dataset card), read back with `load_dataset` after the raw releases are gone, and the
upload at its HTTP boundary (the stand-in Hub of tests/publish/hub_stub.py).

The data: COCO Caption (train) and VQAv2 (validation) from the synthetic sample corpus, GQA (test-dev,
held-out) and MSVD-QA (test, video: 4 frames per record) from the builder-test fixtures.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Image, List, load_dataset
from PIL import Image as PILImage

from dataset_builders import load
from dataset_builders.sample_data import write_sample_corpus
from dataset_builders.templates import CAPTION_TEMPLATES, SHORT_ANSWER_PROMPT, VQA_TEMPLATES
from publish.dataset_repo import check_dataset_folder, export_instruction_data, publish_instruction_data
from publish.model_repo import IncompleteFolderError
from tests.dataset_builders.fixtures_heldout import write_msvd_qa
from tests.publish.hub_stub import TOKEN  # the `hub` fixture: conftest.py

REPO = "our-org/instructblip-data"
SPLITS = {"coco_caption": "train", "vqav2": "validation", "gqa": "test_dev", "msvd_qa": "test"}
COMMAND = "python -m publish dataset our-org/instructblip-data --data_dir ROOT --datasets coco_caption,vqav2,gqa,msvd_qa"


def pixels(image) -> np.ndarray:
    """An image (a path or a decoded PIL image) as an array."""
    if isinstance(image, str):
        with PILImage.open(image) as opened:
            return np.asarray(opened.convert("RGB"))
    return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(folder, {(name, split): source records}, reports): the four datasets built, exported in small shards,
    and then the raw corpus and the builders' cache (video frames included) deleted. Source records keep
    their images as pixel arrays (and file names), read before the deletion."""
    root = tmp_path_factory.mktemp("publish_dataset")
    raw, cache, folder = root / "raw", root / "cache", root / "hub_folder"
    data_dirs = write_sample_corpus(str(raw), num_images=6)
    data_dirs["msvd_qa"] = write_msvd_qa(str(raw / "msvd"))
    built, reports, sources = {}, {}, {}
    for name, split in SPLITS.items():
        dataset, report = load(name, data_dirs[name], split, cache_dir=str(cache), return_report=True)
        built[name], reports[name] = {split: dataset}, {split: report}
        undecoded = dataset.cast_column("image", Image(decode=False)).cast_column("frames", List(Image(decode=False)))
        records = undecoded.to_list()
        for record in records:
            for image in ([record["image"]] if record["image"] else []) + record["frames"]:
                assert str(root) in image["path"]  # deleted below with raw/ and cache/
                image["pixels"] = pixels(image["path"])
        sources[(name, split)] = records
    export_instruction_data(built, folder, max_shard_size="10KB", rows_per_batch=4, reports=reports, commands=[COMMAND])
    shutil.rmtree(raw)
    shutil.rmtree(cache)
    return folder, sources, reports


def shards(folder, name, split):
    return sorted(str(path) for path in (Path(folder) / name).glob(f"{split}-*.parquet"))


def assert_same_records(read_back, source):
    assert len(read_back) == len(source)
    for got, want in zip(read_back, source):
        for field, value in want.items():
            if field == "image":
                assert (got["image"] is None) == (value is None)
                if value is not None:
                    np.testing.assert_array_equal(pixels(got["image"]), value["pixels"])
            elif field == "frames":
                assert len(got["frames"]) == len(value)
                for frame, wanted in zip(got["frames"], value):
                    np.testing.assert_array_equal(pixels(frame), wanted["pixels"])
            else:
                assert got[field] == value, (want["id"], field)


def test_every_config_reads_back_with_the_same_records_and_pixels_without_the_raw_files(exported, tmp_path):
    folder, sources, _ = exported
    for (name, split), source in sources.items():
        files = shards(folder, name, split)
        read_back = load_dataset("parquet", data_files={split: files}, split=split, cache_dir=str(tmp_path))
        assert_same_records(read_back, source)
    assert sum(len(frames) for frames in read_back["frames"]) == 4 * len(sources[("msvd_qa", "test")])


def test_the_cards_configs_load_by_name_from_the_folder(exported, tmp_path):
    folder, sources, _ = exported
    for name in ("vqav2", "msvd_qa"):
        read_back = load_dataset(str(folder), name, split=SPLITS[name], cache_dir=str(tmp_path))
        assert_same_records(read_back, sources[(name, SPLITS[name])])


def test_splits_are_sharded_by_size_and_named_n_of_total(exported):
    folder, sources, _ = exported
    files = shards(folder, "coco_caption", "train")
    assert len(files) >= 2
    assert [Path(f).name for f in files] == [f"train-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))]
    assert sum(pq.read_metadata(f).num_rows for f in files) == len(sources[("coco_caption", "train")])
    assert not [p for p in Path(folder).rglob("*") if p.name.endswith(".partial")]


def test_the_card_states_configs_licences_counts_templates_and_how_it_was_built(exported):
    from huggingface_hub import DatasetCard

    folder, sources, reports = exported
    card = DatasetCard.load(Path(folder) / "README.md")
    configs = {c["config_name"]: c["data_files"] for c in card.data.configs}
    assert configs == {name: [{"split": split, "path": f"{name}/{split}-*.parquet"}] for name, split in SPLITS.items()}
    assert card.data.license == ["cc-by-4.0", "other", "unknown"]  # COCO images: Flickr terms; MSVD: unknown
    assert card.data.to_dict()["license_name"] == "per-source"
    assert card.data.size_categories == ["n<1K"]
    assert {"image-to-text", "visual-question-answering", "video-text-to-text"} <= set(card.data.task_categories)
    text = card.text
    for (name, split), source in sources.items():
        assert f"  - {split}: {len(source):,} (0 skipped)" in text
        assert f"### {name}" in text
    assert "| gqa | held_out | visual_reasoning | test_dev (12) | cc-by-4.0 / cc-by-4.0 |" in text
    assert "https://visualqa.org" in text and "v2_Questions_Val_mscoco.zip" in text  # official sources
    assert "Flickr Terms of Use" in text
    assert all(f"`{template}`" in text for template in CAPTION_TEMPLATES + VQA_TEMPLATES)
    assert f"zero-shot prompt `{SHORT_ANSWER_PROMPT}`" in text
    assert COMMAND in text


def test_sources_all_under_hub_licences_are_listed_and_an_empty_split_is_left_out(exported, tmp_path):
    from huggingface_hub import DatasetCard

    folder, _, _ = exported
    reread = load_dataset("parquet", data_files=shards(folder, "gqa", "test_dev"), split="train",
                          cache_dir=str(tmp_path / "cache"))
    export_instruction_data({"gqa": {"test_dev": reread, "empty": reread.select([])}}, tmp_path / "gqa_only")
    card = DatasetCard.load(tmp_path / "gqa_only" / "README.md")
    assert card.data.license == ["cc-by-4.0"] and "license_name" not in card.data.to_dict()
    assert "test_dev: 12 (no report)" in card.text  # no build report was passed
    # datasets cannot read a Parquet split without rows: it is named in the card, not in the configs
    assert card.data.configs == [{"config_name": "gqa", "data_files": [{"split": "test_dev", "path": "gqa/test_dev-*.parquet"}]}]
    assert "empty: 0 (no report); empty, so not in the repo" in card.text
    assert check_dataset_folder(tmp_path / "gqa_only") == ["README.md", "gqa/test_dev-00000-of-00001.parquet"]


def _break(folder: Path, how: str):
    gqa = sorted((folder / "gqa").glob("*.parquet"))
    if how == "no card":
        (folder / "README.md").unlink()
    elif how == "card without configs":
        text = (folder / "README.md").read_text()
        (folder / "README.md").write_text(text.replace("configs:", "old_configs:", 1))
    elif how == "card that does not parse":
        (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# data\n")
    elif how == "missing split files":
        for path in gqa:
            path.unlink()
    elif how == "truncated shard":
        gqa[0].write_bytes(gqa[0].read_bytes()[:100])
    elif how == "images by path":
        table = pq.read_table(gqa[0])
        image = table["image"].combine_chunks()
        by_path = pa.StructArray.from_arrays([pa.nulls(len(image), pa.binary()), image.field("path")], ["bytes", "path"])
        pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", by_path), gqa[0])
    elif how == "stray shard":
        shutil.copy(gqa[0], folder / "gqa" / "validation-00000-of-00001.parquet")


@pytest.mark.parametrize(
    "how, named",
    [
        ("no card", "README.md: no dataset card"),
        ("card without configs", "README.md: no `configs:`"),
        ("card that does not parse", "README.md: the card's metadata does not parse"),
        ("missing split files", "gqa/test_dev-*.parquet: data files of config 'gqa' split 'test_dev': no such file"),
        ("truncated shard", "gqa/test_dev-00000-of-00002.parquet: not a readable Parquet file"),
        ("images by path", "gqa/test_dev-00000-of-00002.parquet: images are stored by path, not embedded"),
        ("stray shard", "Parquet files in no config (left from an earlier export?): gqa/validation-00000-of-00001"),
    ],
)
def test_a_bad_folder_is_refused_naming_what_is_wrong(exported, tmp_path, how, named):
    folder = tmp_path / "data"
    shutil.copytree(exported[0], folder)
    assert len(list((folder / "gqa").glob("*.parquet"))) == 2
    _break(folder, how)
    with pytest.raises(IncompleteFolderError) as caught:
        check_dataset_folder(folder)
    assert named in str(caught.value), str(caught.value)
    assert len(caught.value.problems) == 1, caught.value.problems  # nothing else is blamed


def test_nothing_is_created_for_a_bad_folder(exported, hub, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(exported[0], folder)
    _break(folder, "missing split files")
    with pytest.raises(IncompleteFolderError, match="no such file"):
        publish_instruction_data(folder, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.requests == [] and hub.repos == {}


def test_upload_sends_the_folder_to_a_dataset_repo_and_what_lands_loads(exported, hub, tmp_path):
    folder, sources, _ = exported
    info = publish_instruction_data(folder, REPO, token=TOKEN, endpoint=hub.url)
    repo = hub.repo(REPO, "dataset")
    assert [commit["oid"] for commit in repo["commits"]] == [info.oid]
    assert info.commit_url.startswith(f"{hub.url}/datasets/{REPO}/commit/")
    assert sorted(repo["files"]) == check_dataset_folder(folder)
    for name, content in repo["files"].items():
        assert content == (Path(folder) / name).read_bytes(), name
    assert hub.validated == [(Path(folder) / "README.md").read_text()]
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    received = tmp_path / "received"
    for name, content in repo["files"].items():
        (received / name).parent.mkdir(parents=True, exist_ok=True)
        (received / name).write_bytes(content)
    read_back = load_dataset(str(received), "gqa", split="test_dev", cache_dir=str(tmp_path / "cache"))
    assert_same_records(read_back, sources[("gqa", "test_dev")])


def test_an_interrupted_upload_resumes_with_the_files_not_yet_on_the_hub(exported, hub):
    folder = exported[0]
    files = check_dataset_folder(folder)
    landed = {name: (folder / name).read_bytes() for name in files[::2]}
    hub.seed(REPO, landed, repo_type="dataset")

    publish_instruction_data(folder, REPO, token=TOKEN, endpoint=hub.url)
    repo = hub.repo(REPO, "dataset")
    assert [commit["files"] for commit in repo["commits"]] == [sorted(set(files) - set(landed))]
    assert sorted(repo["files"]) == files

    info = publish_instruction_data(folder, REPO, token=TOKEN, endpoint=hub.url)  # again: nothing left to send
    assert len(repo["commits"]) == 1 and info.oid == repo["commits"][0]["oid"]


# ---- the command line --------------------------------------------------------------------------------

@pytest.fixture
def raw_root(tmp_path):
    """ROOT/<name> for coco_caption and gqa, as `python -m publish dataset --data_dir ROOT` expects."""
    data_dirs = write_sample_corpus(str(tmp_path / "corpus"), num_images=3)
    root = tmp_path / "root"
    root.mkdir()
    for name in ("coco_caption", "gqa"):
        os.symlink(data_dirs[name], root / name)
    return root


def test_cli_builds_exports_checks_and_uploads(raw_root, hub, tmp_path, monkeypatch, capsys):
    from huggingface_hub import DatasetCard, constants

    from publish.__main__ import main

    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["dataset", REPO, "--data_dir", str(raw_root), "--datasets", "coco_caption,gqa", "--out", str(out),
            "--cache_dir", str(cache), "--errors", "skip"]
    assert main([*argv, "--check"]) == 0
    printed = capsys.readouterr().out
    assert "coco_caption/train-00000-of-00001.parquet" in printed and "gqa/test_dev-00000-of-00001.parquet" in printed
    assert hub.requests == []  # --check sends nothing
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["coco_caption", "gqa"]  # default splits: train, test_dev
    assert "python -m publish dataset our-org/instructblip-data --data_dir" in card.text

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["dataset", REPO, "--out", str(out), "--upload_only"]) == 0
    repo = hub.repo(REPO, "dataset")
    assert f"revision='{repo['commits'][-1]['oid']}'" in capsys.readouterr().out
    assert sorted(repo["files"]) == check_dataset_folder(out)


def test_cli_names_missing_raw_files_and_unknown_datasets(raw_root, tmp_path, capsys):
    from publish.__main__ import main

    common = ["--data_dir", str(raw_root), "--out", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache")]
    assert main(["dataset", REPO, "--datasets", "vqav2", *common, "--check"]) == 1
    assert "vqav2: missing from" in capsys.readouterr().err
    assert main(["dataset", REPO, "--datasets", "coco", *common, "--check"]) == 1
    assert "unknown dataset 'coco'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
