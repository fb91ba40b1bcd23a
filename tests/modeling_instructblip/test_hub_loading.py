"""Loading the way users do: `AutoModel` / `AutoModelForImageTextToText` / `AutoProcessor` with
`trust_remote_code=True`, from a saved folder and by repo id from a Hub cache laid out by hand."""

import json

import pytest
import torch

from modeling_instructblip import tiny
from tests.modeling_instructblip.hub_loading import check_loads_by_repo_id_offline, expected_outputs


@pytest.fixture(scope="module", params=["llama", "t5"])
def saved(request, tmp_path_factory):
    model, processor = tiny.build(request.param)
    folder = tmp_path_factory.mktemp(f"saved-{request.param}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return request.param, model, processor, folder


def test_folder_is_hub_ready(saved):
    _, _, _, folder = saved
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name in ("config.json", "model.safetensors", "generation_config.json", "configuration_instructblip.py",
                 "modeling_instructblip.py", "processing_instructblip.py", "processor_config.json",
                 "tokenizer.json", "tokenizer_config.json", "qformer_tokenizer/tokenizer_config.json"):
        assert name in files, f"{name} missing from {sorted(files)}"
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    # the code a `trust_remote_code` user runs (and should read): the three modules, nothing they do not import
    assert {name for name in files if name.endswith(".py")} == {
        "configuration_instructblip.py", "modeling_instructblip.py", "processing_instructblip.py"}
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_instructblip.InstructBlipConfig",
        "AutoModel": "modeling_instructblip.InstructBlipForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_instructblip.InstructBlipForConditionalGeneration",
    }
    assert "tiny" not in " ".join(files)  # only the Hub-shipped modules are copied
    # what a careful user reads before trusting it: at most 2,000 lines (transformers' own InstructBLIP is ~1,540)
    shipped = sum(len((folder / name).read_text().splitlines()) for name in files if name.endswith(".py"))
    assert shipped <= 2000, f"the remote code is {shipped} lines; the budget is 2,000"


@pytest.mark.parametrize("auto_class", ["AutoModel", "AutoModelForImageTextToText"])
def test_auto_classes_load_our_model_with_remote_code(saved, auto_class):
    import transformers

    kind, model, processor, folder = saved
    loaded = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    loaded_processor = transformers.AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(loaded).__name__ == "InstructBlipForConditionalGeneration"
    assert type(loaded).__module__.startswith("transformers_modules.")  # the copied remote code, not our package
    assert type(loaded_processor).__name__ == "InstructBlipProcessor"
    assert type(loaded_processor.image_processor).__name__ == "InstructBlipImageProcessor"
    inputs, logits, generated = expected_outputs(model, processor)
    reloaded_inputs, reloaded_logits, reloaded_generated = expected_outputs(loaded, loaded_processor)
    for key in inputs:
        assert torch.equal(reloaded_inputs[key], inputs[key]), key
    torch.testing.assert_close(reloaded_logits, logits, atol=0, rtol=0)
    assert torch.equal(reloaded_generated, generated)


def test_loads_by_repo_id_from_an_offline_hub_cache(saved, tmp_path):
    """`models--org--name/{refs/main, snapshots/<sha>/...}` under HF_HOME, loaded with HF_HUB_OFFLINE=1
    in a fresh process (the offline flag is read at import)."""
    _, model, processor, folder = saved
    check_loads_by_repo_id_offline(model, processor, folder, tmp_path)
