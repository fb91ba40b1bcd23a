"""Publishing to the Hub, exercised at its HTTP boundary: `HfApi(endpoint=...)` talks to the stand-in
Hub of tests/publish/hub_stub.py, which keeps what it receives. What it received is then laid out as a Hub
cache and loaded by repo id offline, as a user's `from_pretrained` would.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_instructblip import paper_generation_config, tiny
from publish import IncompleteFolderError, check_model_folder, check_space_folder, publish_model, publish_space
from publish.model_repo import files_to_upload
from tests.publish.hub_stub import TOKEN  # the `hub` fixture: conftest.py
from tests.modeling_instructblip.hub_loading import check_loads_by_repo_id_offline

ROOT = Path(__file__).resolve().parents[2]
REPO = "our-org/instructblip-tiny"


# ---- the folder a training run leaves ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, processor, folder): a tiny model saved as `train.py` leaves it, sharded weights, card and
    run leftovers (a Trainer checkpoint, TensorBoard logs, pickled TrainingArguments) included."""
    from publish.model_card import write_model_card

    model, processor = tiny.build("llama")
    model.generation_config = paper_generation_config(model.config.text_config)
    folder = tmp_path_factory.mktemp("trained")
    model.save_pretrained(folder, max_shard_size="300KB")
    processor.save_pretrained(folder)
    write_model_card(
        str(folder),
        model_name="instructblip-tiny",
        base_models=["our-org/blip2-tiny"],
        datasets=["coco_caption", "vqav2"],
        proportions={"coco_caption": 0.6, "vqav2": 0.4},
        hyperparameters={"learning_rate": 1e-5, "max_steps": 10},
        eval_metrics={"eval_loss": 2.5, "eval_answer_accuracy": 0.25},
    )
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"pickle")
    (folder / "runs" / "Nov22").mkdir(parents=True)
    (folder / "runs" / "Nov22" / "events.out.tfevents").write_bytes(b"log")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "trainer_state.json").write_text("{}")
    return model, processor, folder


def test_check_lists_what_would_be_uploaded(trained):
    _, _, folder = trained
    files = check_model_folder(folder)
    assert files == files_to_upload(folder)
    shards = [name for name in files if name.startswith("model-") and name.endswith(".safetensors")]
    assert len(shards) >= 2 and "model.safetensors.index.json" in files  # sharded
    for name in ("config.json", "generation_config.json", "README.md", "processor_config.json", "tokenizer.json",
                 "qformer_tokenizer/tokenizer_config.json", "configuration_instructblip.py",
                 "modeling_instructblip.py", "processing_instructblip.py", "trainer_state.json"):
        assert name in files
    assert not [name for name in files if name.startswith(("checkpoint-", "runs/")) or name.endswith(".bin")]


def _break(folder: Path, how: str):
    if how == "pickle weights":
        (folder / "pytorch_model.bin").write_bytes(b"pickle")
    elif how == "missing shard":
        shard = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].popitem()[1]
        (folder / shard).unlink()
    elif how == "truncated shard":
        shard = sorted(folder.glob("model-*.safetensors"))[0]
        shard.write_bytes(shard.read_bytes()[:100])
    elif how == "no auto_map":
        config = json.loads((folder / "config.json").read_text())
        del config["auto_map"]
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "imported module missing":
        (folder / "configuration_instructblip.py").unlink()
    elif how == "card without metadata":
        (folder / "README.md").write_text("# a model\n")
    else:
        target = folder / how
        shutil.rmtree(target) if target.is_dir() else target.unlink()


@pytest.mark.parametrize(
    "how, named",
    [
        ("qformer_tokenizer", "qformer_tokenizer/tokenizer_config.json"),
        ("tokenizer.json", "no vocabulary for the LLM tokenizer"),
        ("processor_config.json", "processor_config.json"),
        ("generation_config.json", "generation_config.json"),
        ("README.md", "README.md: no model card"),
        ("card without metadata", "README.md: no YAML metadata"),
        ("config.json", "config.json"),
        ("no auto_map", "config.json has no auto_map"),
        ("modeling_instructblip.py", "modeling_instructblip.py: named by an auto_map"),
        ("imported module missing", "configuration_instructblip.py"),
        ("model.safetensors.index.json", "neither model.safetensors nor model.safetensors.index.json"),
        ("missing shard", "weight shard named by model.safetensors.index.json"),
        ("truncated shard", "not a readable safetensors file"),
        ("pickle weights", "pickle files (pytorch_model.bin)"),
    ],
)
def test_an_incomplete_folder_is_refused_naming_what_is_missing(trained, tmp_path, how, named):
    folder = tmp_path / "model"
    shutil.copytree(trained[2], folder)
    _break(folder, how)
    with pytest.raises(IncompleteFolderError) as caught:
        check_model_folder(folder)
    assert named in str(caught.value), str(caught.value)
    assert len(caught.value.problems) == 1, caught.value.problems  # nothing else is blamed


def test_model_card_parses_and_carries_the_metadata(trained):
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained[2] / "README.md")
    assert card.data.base_model == ["our-org/blip2-tiny"]
    assert card.data.datasets is None  # builder names are not Hub dataset ids; the body lists them
    assert card.data.license == "other"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-text-to-text"
    metrics = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert metrics == {"loss": 2.5, "answer_accuracy": 0.25}
    assert "model-index" in card.content
    assert "trust_remote_code=True" in card.text
    assert "| coco_caption | 0.6000 |" in card.text  # the mixture weights
    assert "proportional to sqrt(size) (the paper's balancing)" in card.text  # how they were weighted
    for section in ("## How to use", "## Intended use and limitations", "## Base models", "## Training recipe",
                    "## Citation"):
        assert section in card.text, section
    assert 'revision="<commit sha>"' in card.text and "Q-Former (3 layers" in card.text


def test_model_card_records_an_ablations_sampling(tmp_path):
    """`train.py --sampling uniform` (the paper's "without data balancing" ablation) is on the card."""
    from publish.model_card import write_model_card

    model, processor = tiny.build("llama")
    model.save_pretrained(tmp_path)
    write_model_card(str(tmp_path), model_name="ablation", base_models=[], datasets=["vqav2", "okvqa"],
                     proportions={"vqav2": 0.5, "okvqa": 0.5}, sampling="uniform")
    text = (tmp_path / "README.md").read_text()
    assert "uniform over the datasets" in text and "sqrt(size)" not in text


def test_model_card_takes_zero_shot_results_from_evaluate_py(trained, tmp_path):
    """`python -m publish card FOLDER --eval-dir EVAL` adds evaluate.py's results to the card written by
    training: as model-index entries and as the Table-1 comparison."""
    import json
    import shutil

    from huggingface_hub import ModelCard

    from evaluation.report import results_dict
    from publish.__main__ import main

    folder = tmp_path / "model"
    shutil.copytree(trained[2], folder)
    task = {"title": "GQA", "dataset": "gqa", "split": "test_dev", "metric": "accuracy", "score": 41.5,
            "num_samples": 12, "held_out": True, "comparable": True,
            "data": {"description": "official test_dev, all 12,578 questions", "files": {}}}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps(results_dict("tiny", {"gqa": task})))
    assert main(["card", str(folder), "--eval-dir", str(tmp_path / "eval"), "--repo-id", "org/m",
                 "--revision", "abc123"]) == 0
    card = ModelCard.load(folder / "README.md")
    scores = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert scores[("gqa", "accuracy")] == 41.5
    assert "| InstructBLIP (FlanT5XL) |" in card.text and "41.5" in card.text  # published rows beside ours
    assert 'AutoModel.from_pretrained("org/m", trust_remote_code=True, revision="abc123")' in card.text
    assert "| coco_caption | 0.6000 |" in card.text  # the training part survives the rewrite
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        main(["card", str(folder), "--eval-dir", str(tmp_path / "nowhere")])


@pytest.mark.slow
def test_publish_uploads_the_checked_folder_which_loads_by_repo_id(trained, hub, tmp_path):
    model, processor, folder = trained
    info = publish_model(folder, REPO, token=TOKEN, endpoint=hub.url)

    repo = hub.repo(REPO)
    assert [commit["oid"] for commit in repo["commits"]] == [info.oid]
    assert sorted(repo["files"]) == check_model_folder(folder)
    for name, content in repo["files"].items():
        assert content == (folder / name).read_bytes(), name
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    assert hub.validated == [(folder / "README.md").read_text()]
    # What the Hub received, as a user's cache holds it, loads by repo id with HF_HUB_OFFLINE=1.
    received = tmp_path / "received"
    for name, content in repo["files"].items():
        (received / name).parent.mkdir(parents=True, exist_ok=True)
        (received / name).write_bytes(content)
    check_loads_by_repo_id_offline(model, processor, received, tmp_path)


def test_an_interrupted_upload_resumes_with_the_files_not_yet_on_the_hub(trained, hub):
    _, _, folder = trained
    files = check_model_folder(folder)
    landed = {name: (folder / name).read_bytes() for name in files[: len(files) // 2]}
    hub.seed(REPO, landed)  # the first part of an upload that was cut off

    publish_model(folder, REPO, token=TOKEN, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert [commit["files"] for commit in repo["commits"]] == [sorted(set(files) - set(landed))]
    assert sorted(repo["files"]) == files

    info = publish_model(folder, REPO, token=TOKEN, endpoint=hub.url)  # again: nothing left to send
    assert len(repo["commits"]) == 1 and info.oid == repo["commits"][0]["oid"]


def test_nothing_is_created_for_an_incomplete_folder(trained, hub, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained[2], folder)
    (folder / "generation_config.json").unlink()
    with pytest.raises(IncompleteFolderError, match="generation_config.json"):
        publish_model(folder, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.requests == [] and hub.repos == {}


def _cli(*args, env=None, cwd=ROOT):
    env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "publish", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_cli_publishes_a_model_and_prints_the_revision_to_pin(trained, hub):
    _, _, folder = trained
    result = _cli("model", str(folder), REPO, env={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 0, result.stderr
    oid = hub.repo(REPO)["commits"][-1]["oid"]
    assert f"revision='{oid}'" in result.stdout

    offline = _cli("model", str(folder), REPO, env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr


def test_cli_check_names_what_is_missing(trained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained[2], folder)
    shutil.rmtree(folder / "qformer_tokenizer")
    result = _cli("model", str(folder), REPO, "--check")
    assert result.returncode == 1
    assert "qformer_tokenizer/tokenizer_config.json: the Q-Former tokenizer is not saved" in result.stderr
    assert "Traceback" not in result.stderr


# ---- the Space ------------------------------------------------------------------------------------

def test_space_folder_is_complete_and_bundles_what_the_app_imports():
    files = dict(check_space_folder())
    for name in ("app.py", "requirements.txt", "README.md", "assets/demo.jpg", "modeling_instructblip/tiny.py",
                 "modeling_instructblip/modeling_instructblip.py", "modeling_instructblip/processing_instructblip.py"):
        assert name in files, name
    assert not [name for name in files if name.startswith("dataset_builders/")]  # the app needs none of it
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_space_folder_without_app_file_is_refused(tmp_path):
    shutil.copy(ROOT / "space" / "README.md", tmp_path / "README.md")
    (tmp_path / "requirements.txt").write_text("")
    with pytest.raises(IncompleteFolderError, match="app.py: named as app_file"):
        check_space_folder(tmp_path)


def test_publish_space_creates_a_gradio_space_serving_the_model(hub):
    info = publish_space("our-org/instructblip-demo", model_id=REPO, model_revision="abc123", token=TOKEN,
                         endpoint=hub.url)
    space = hub.repo("our-org/instructblip-demo", "space")
    assert space["sdk"] == "gradio"
    assert space["variables"] == {"INSTRUCTBLIP_MODEL": REPO, "INSTRUCTBLIP_REVISION": "abc123"}
    assert [commit["oid"] for commit in space["commits"]] == [info.oid]  # one commit: never half an app
    assert sorted(space["files"]) == sorted(name for name, _ in check_space_folder())
    assert space["files"]["app.py"] == (ROOT / "space" / "app.py").read_bytes()
