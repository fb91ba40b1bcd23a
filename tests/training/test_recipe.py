"""The recipe around instruction tuning: starting from a transformers BLIP-2 checkpoint (built here with
transformers' own `Blip2ForConditionalGeneration`), the instruction-aware switch (the paper's Table 2
ablation), and these through `train.py`. LAVIS's own BLIP-2 files are checked in test_lavis_blip2.py."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from modeling_instructblip import tiny
from tests.training.train_fixtures import load_train_script
from tests.helpers import small_run_args
from training import blip2, modeling

ROOT = Path(__file__).resolve().parents[2]
train_script = load_train_script()
IMAGE_MEAN, IMAGE_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]  # not CLIP's: the processor must take the folder's


def make_bert(folder: Path, hidden=32):
    """A tiny BERT (bert-base-uncased's layout) and its tokenizer, saved to `folder`."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny.train_bert_tokenizer()
    torch.manual_seed(1)
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return bert, tokenizer


def make_blip2(folder: Path, text: str, image_token: bool = False):
    """A tiny BLIP-2 in transformers' format (weights, config, tokenizer, image processor), random weights
    with non-trivial norms; FlanT5-like (separate lm_head) for t5, OPT for opt."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, BlipImageProcessor

    tokenizer = tiny.train_t5_tokenizer() if text == "t5" else tiny.train_llama_tokenizer()
    if image_token:  # newer Salesforce/blip2-* snapshots: `<image>` already in the tokenizer and config
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vocab = len(tokenizer)
    text_config = (
        dict(model_type="t5", d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, vocab_size=vocab,
             feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=tokenizer.pad_token_id,
             eos_token_id=tokenizer.eos_token_id)
        if text == "t5"
        else dict(model_type="opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=vocab,
                  word_embed_proj_dim=32, max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    )
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                           patch_size=14),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            encoder_hidden_size=32, max_position_embeddings=64, vocab_size=len(tiny.train_bert_tokenizer())),
        text_config=text_config,
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>") if image_token else None,
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn_like(param) * 0.2 + (1.0 if "layernorm" in name.lower() and name.endswith("weight") else 0))
        if text == "t5":  # FlanT5 (T5 v1.1): the output layer is not the input embedding
            model.language_model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.language_model.lm_head.weight) * 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 28, "width": 28}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD).save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    model, tokenizer = make_bert(folder)
    return folder, model, tokenizer


@pytest.fixture(scope="module", params=["t5", "opt"])
def blip2_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"blip2-{request.param}")
    model, tokenizer = make_blip2(folder, request.param)
    return request.param, folder, model


def _inputs(processor, instruction="What is in the picture?"):
    image = Image.new("RGB", (40, 30), (200, 30, 60))
    return processor(images=[image], text=[instruction], return_tensors="pt")


# ---------------------------------------------------------------------------------------------
# Starting from a transformers BLIP-2
# ---------------------------------------------------------------------------------------------


def test_blip2_tensors_arrive_bit_identical_and_text_parts_come_from_bert(blip2_folder, bert):
    kind, folder, reference = blip2_folder
    bert_folder, bert_model, bert_tokenizer = bert
    assert blip2.blip2_format(str(folder)) == "transformers"
    model, processor, sources = blip2.load_blip2(str(folder), qformer_model=str(bert_folder))
    assert [name for name, _ in sources] == [str(folder), str(bert_folder)]
    assert "text parts" in sources[1][1]
    ours = model.state_dict()
    file = load_file(str(folder / "model.safetensors"))
    for name, tensor in file.items():
        mapped = name.replace("qformer.layernorm.", "qformer.embeddings.layernorm.")
        if name.startswith("language_model.") and tensor.dim() == 2 and tensor.shape[0] == reference.config.text_config.vocab_size:
            # the vocabulary grew by `<image>`: BLIP-2's rows unchanged
            assert torch.equal(ours[mapped][: tensor.shape[0]], tensor), name
        else:
            assert torch.equal(ours[mapped], tensor), name
    # FlanT5's output layer stays its own matrix
    head, embedding = model.language_model.get_output_embeddings(), model.language_model.get_input_embeddings()
    assert (head.weight is embedding.weight) == (kind == "opt")
    # the instruction-aware parts BLIP-2 lacks: BERT's, and one more row for LAVIS's [DEC]
    words = model.qformer.embeddings.word_embeddings.weight
    assert words.shape[0] == len(bert_tokenizer) + 1 == len(processor.qformer_tokenizer)
    assert torch.equal(words[:-1], bert_model.embeddings.word_embeddings.weight)
    torch.testing.assert_close(words[-1], bert_model.embeddings.word_embeddings.weight.mean(0))
    assert torch.equal(model.qformer.embeddings.position_embeddings.weight, bert_model.embeddings.position_embeddings.weight)
    for i in range(2):
        layer, bert_layer = model.qformer.encoder.layer[i], bert_model.encoder.layer[i]
        assert torch.equal(layer.intermediate.dense.weight, bert_layer.intermediate.dense.weight)
        assert torch.equal(layer.output.LayerNorm.bias, bert_layer.output.LayerNorm.bias)
        # the query feed-forward is BLIP-2's, not BERT's
        assert not torch.equal(layer.intermediate_query.dense.weight, bert_layer.intermediate.dense.weight)
    # the processor: the BLIP-2 folder's image settings and tokenizer, the Q-Former tokenizer of --qformer_model
    assert list(processor.image_processor.image_mean) == IMAGE_MEAN and list(processor.image_processor.image_std) == IMAGE_STD
    assert model.config.image_token_index == processor.image_token_id
    assert processor.qformer_tokenizer.truncation_side == "left"
    if kind == "t5":
        assert model.config.text_config.dense_act_fn == "gelu"  # LAVIS's exact GELU, as the paper trained


def test_blip2_start_is_instruction_aware_trains_and_reloads(blip2_folder, bert, tmp_path):
    kind, folder, _ = blip2_folder
    model, processor, _ = blip2.load_blip2(str(folder), qformer_model=str(bert[0]))
    logits = []
    for prompt in ("What is in the picture?", "Describe the colours."):
        inputs = _inputs(processor, "Answer:")  # the LLM reads the same text, the Q-Former `prompt`
        q = processor.qformer_tokenizer([prompt], return_tensors="pt")
        inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = q["input_ids"], q["attention_mask"]
        with torch.no_grad():
            logits.append(model(**inputs).logits)
    assert not torch.allclose(logits[0], logits[1]), "the Q-Former must read the instruction (BERT's text parts)"
    batch = processor(images=[Image.new("RGB", (30, 30), "blue")], text=["Colour?"], targets=["blue"], return_tensors="pt")
    modeling.freeze(model)
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.qformer.embeddings.word_embeddings.weight.grad is not None
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    reloaded, _ = modeling.load_checkpoint(str(tmp_path / "saved"))
    assert torch.equal(reloaded.qformer.embeddings.word_embeddings.weight, model.qformer.embeddings.word_embeddings.weight)


def test_blip2_with_image_token_already_in_its_vocabulary_is_not_resized(tmp_path, bert):
    folder = tmp_path / "blip2"
    reference, tokenizer = make_blip2(folder, "t5", image_token=True)
    model, processor, _ = blip2.load_blip2(str(folder), qformer_model=str(bert[0]))
    assert processor.image_token_id == tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index
    assert model.language_model.get_input_embeddings().weight.shape == reference.language_model.get_input_embeddings().weight.shape


def test_blip2_loads_by_hub_id_from_an_offline_cache(tmp_path, bert):
    """`models--Salesforce--blip2-tiny` laid out by hand under HF_HOME and read with HF_HUB_OFFLINE=1."""
    source = tmp_path / "blip2"
    make_blip2(source, "opt")
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hf_home" / "hub" / "models--Salesforce--blip2-tiny"
    shutil.copytree(source, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    script = (
        "import sys, json; from training import blip2\n"
        "m, p, s = blip2.load_blip2('Salesforce/blip2-tiny', qformer_model=sys.argv[1])\n"
        "print(json.dumps({'sources': s, 'sum': float(m.query_tokens.double().sum())}))\n"
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", script, str(bert[0])], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["sources"][0][0] == "Salesforce/blip2-tiny"
    assert got["sum"] == pytest.approx(float(load_file(str(source / "model.safetensors"))["query_tokens"].double().sum()))


def test_blip2_start_refuses_what_it_cannot_use(blip2_folder, bert, tmp_path):
    kind, folder, _ = blip2_folder
    with pytest.raises(ValueError, match="whole BLIP-2"):
        blip2.load_blip2(str(folder), qformer_model=str(bert[0]), language_model=str(folder))
    (tmp_path / "not_blip2").mkdir()
    (tmp_path / "not_blip2" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a BLIP-2 checkpoint"):
        blip2.load_blip2(str(tmp_path / "not_blip2"), qformer_model=str(bert[0]))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        blip2.load_blip2(str(tmp_path / "missing.pth"), qformer_model=str(bert[0]), language_model=str(folder))


def test_urls_are_downloaded_once_into_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = tmp_path / "blip2_pretrained.pth"
    torch.save({"model": {"query_tokens": torch.ones(1, 2, 3)}}, source)
    local = blip2.local_file(source.as_uri())
    assert local == str(tmp_path / "hub" / "checkpoints" / "blip2_pretrained.pth")
    source.unlink()  # the second call reads the cache
    assert blip2.local_file(source.as_uri()) == local


# ---------------------------------------------------------------------------------------------
# The instruction-aware switch (Table 2: "w/o instruction-aware visual features")
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_instruction_unaware_outputs_do_not_depend_on_the_qformer_instruction(kind, tmp_path):
    from tests.helpers import randomize_

    model, processor = tiny.build(kind, seed=0)
    randomize_(model)
    model.eval()
    image = Image.new("RGB", (30, 30), (10, 200, 90))
    prompts = ["What colour is it?", "Describe the image in detail please."]

    def outputs():
        out = []
        for prompt in prompts:
            inputs = processor(images=[image], text=["Answer:"], return_tensors="pt")
            # the Q-Former sees `prompt`, the LLM always the same text
            q = processor.qformer_tokenizer([prompt], return_tensors="pt")
            inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = q["input_ids"], q["attention_mask"]
            with torch.no_grad():
                logits = model(**inputs).logits
                generated = model.generate(**inputs, num_beams=2, max_new_tokens=4, min_new_tokens=4, do_sample=False)
                candidates = processor.tokenize_candidates([["yes", "no", "green"]])
                ranked = model.rank_candidates(**candidates, **inputs).sum_logprobs
            out.append((logits, generated, ranked))
        return out

    aware = outputs()
    assert not torch.allclose(aware[0][0], aware[1][0]), "the instruction must reach the Q-Former by default"
    model.config.instruction_aware = False
    unaware = outputs()
    assert torch.equal(unaware[0][0], unaware[1][0])
    assert torch.equal(unaware[0][1], unaware[1][1])
    assert torch.equal(unaware[0][2], unaware[1][2])
    # the queries alone are BLIP-2's Q-Former input: same as passing no instruction at all
    inputs = processor(images=[image], text=["Answer:"], return_tensors="pt")
    inputs.pop("qformer_input_ids"), inputs.pop("qformer_attention_mask")
    model.config.instruction_aware = True
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, unaware[0][0])
    # stored in the config and loaded back by AutoModel
    model.config.instruction_aware = False
    model.save_pretrained(tmp_path / "saved")
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert reloaded.config.instruction_aware is False


def test_instruction_unaware_training_freezes_the_unused_text_parts():
    model, _ = tiny.build("llama", seed=0)
    model.config.instruction_aware = False
    modeling.freeze(model)
    trainable = {n for n, p in model.qformer.named_parameters() if p.requires_grad}
    assert not any(modeling.QFORMER_TEXT_ONLY.match(n) for n in trainable)
    assert "encoder.layer.0.intermediate_query.dense.weight" in trainable
    assert "embeddings.layernorm.weight" in trainable  # the queries go through it


# ---------------------------------------------------------------------------------------------
# Through train.py
# ---------------------------------------------------------------------------------------------


def _run_args(corpus, output_dir, checkpoint, **model_args):
    """helpers.small_run_args, shorter: 3 steps of batch 2, nothing saved on the way."""
    return small_run_args(corpus, output_dir, checkpoint, max_steps=3, per_device_train_batch_size=2, save_strategy="no",
                          **model_args)


def test_train_from_a_transformers_blip2_records_the_start_on_the_card(held_in_corpus, bert, tmp_path):
    folder = tmp_path / "blip2"
    make_blip2(folder, "t5")
    train_script.main(_run_args(held_in_corpus, tmp_path / "out", str(folder), qformer_model=str(bert[0]),
                                instruction_aware="false"))
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["instruction_aware"] is False
    card = (out / "README.md").read_text()
    assert str(folder) in card and "queries only" in card
    weights = load_file(str(out / "model.safetensors"))
    start = load_file(str(folder / "model.safetensors"))
    # frozen towers are BLIP-2's, bit for bit; the Q-Former's text parts stayed frozen (not instruction-aware)
    assert torch.equal(weights["vision_model.encoder.layers.0.mlp.fc1.weight"], start["vision_model.encoder.layers.0.mlp.fc1.weight"])
    assert not torch.equal(weights["query_tokens"], start["query_tokens"])
    bert_words = bert[1].embeddings.word_embeddings.weight
    assert torch.equal(weights["qformer.embeddings.word_embeddings.weight"][:-1], bert_words)


def test_train_arguments_for_a_blip2_start_are_checked():
    with pytest.raises(ValueError, match="blip2_stage1"):
        train_script.parse_args(["--tiny_text_model", "llama", "--blip2_stage1", "x.pth", "--sample_corpus_dir", "d",
                                 "--output_dir", "o"])


@pytest.mark.parametrize("name", ["flan-t5-xl", "flan-t5-xxl", "vicuna-7b", "vicuna-13b"])
def test_paper_configs_start_from_blip2_as_the_paper(name):
    model_args, _, _ = train_script.parse_args([str(ROOT / "configs" / f"{name}.yaml"), "--use_cpu", "true"])
    stage1 = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/blip2_pretrained.pth"
    if name.startswith("flan-t5"):  # BLIP-2 FlanT5 (stage 2), text parts from stage 1
        assert model_args.model_name_or_path == f"Salesforce/blip2-{name}" and model_args.blip2_stage1 == stage1
    else:  # no Vicuna BLIP-2 was released: stage 1 + the LLM
        assert model_args.model_name_or_path == stage1 and blip2.blip2_format(stage1) == "lavis"
        assert model_args.language_model == f"lmsys/{name}-v1.1" and model_args.vision_model.endswith("eva_vit_g.pth")
    assert model_args.qformer_model == "bert-base-uncased" and model_args.num_query_tokens in (None, 32)
    if name.startswith("flan-t5"):  # the README's "text parts from BERT instead"
        unset, _, _ = train_script.parse_args([str(ROOT / "configs" / f"{name}.yaml"), "--blip2_stage1", "null",
                                              "--use_cpu", "true"])
        assert unset.blip2_stage1 is None


def test_an_instructblip_start_refuses_blip2_parts(tmp_path):
    model, processor = tiny.build("llama", seed=0)
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    model_args, _, _ = train_script.parse_args(["--model_name_or_path", str(tmp_path / "ckpt"), "--language_model", "x",
                                                "--sample_corpus_dir", "d", "--output_dir", "o"])
    with pytest.raises(ValueError, match="holds every part: drop language_model"):
        train_script.build_model(model_args, seed=0)


# ---------------------------------------------------------------------------------------------
# Downstream fine-tuning (Table 3): held-out data only with --finetune_on_held_out, then never zero-shot
# ---------------------------------------------------------------------------------------------


def write_scienceqa_with_train(root: Path) -> str:
    """ScienceQA's official layout (problems.json, pid_splits.json, images/<split>/<pid>/image.png) with a
    train split, so a fine-tuning run has something to train on."""
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    problems, splits = {}, {"train": [], "val": [], "test": []}
    for i in range(12):
        split = "train" if i < 6 else "val" if i < 8 else "test"
        answer = list(colours)[i % 3]
        pid = str(100 + i)
        problems[pid] = {"question": "Which colour is the square?", "choices": list(colours), "answer": i % 3,
                         "hint": "", "image": "image.png", "split": split, "task": "closed choice", "grade": "grade1",
                         "subject": "natural science", "topic": "colours", "category": "c", "skill": "s",
                         "lecture": "", "solution": ""}
        splits[split].append(pid)
        image_dir = root / "images" / split / pid
        image_dir.mkdir(parents=True)
        Image.new("RGB", (28, 28), colours[answer]).save(image_dir / "image.png")
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps(splits))
    return str(root)


@pytest.fixture(scope="module")
def finetuned_on_scienceqa(tmp_path_factory):
    """A tiny checkpoint fine-tuned for 2 steps on a ScienceQA folder with --finetune_on_held_out."""
    root = tmp_path_factory.mktemp("finetune")
    data = {"scienceqa": write_scienceqa_with_train(root / "data" / "scienceqa")}
    start = root / "start"
    model, processor = tiny.build("t5", seed=0)
    model.save_pretrained(start)
    processor.save_pretrained(start)
    args = {"model_name_or_path": str(start), "data_dirs": json.dumps(data), "dataset_cache_dir": str(root / "cache"),
            "output_dir": str(root / "out"), "max_steps": 2, "per_device_train_batch_size": 2, "eval_strategy": "no",
            "save_strategy": "no", "report_to": "none", "use_cpu": "true", "loss_curve": "false"}
    argv = [item for key, value in args.items() for item in (f"--{key}", str(value))]
    with pytest.raises(ValueError, match="held-out dataset.*--finetune_on_held_out true"):
        train_script.main(argv)
    train_script.main(argv + ["--finetune_on_held_out", "true"])
    return root


def test_finetuning_on_held_out_data_is_recorded_in_config_and_card(finetuned_on_scienceqa):
    out = finetuned_on_scienceqa / "out"
    assert json.loads((out / "config.json").read_text())["trained_on_held_out"] == ["scienceqa"]
    card = (out / "README.md").read_text()
    assert "## Not zero-shot on scienceqa" in card and "fine-tuned results, not zero-shot" in card


def test_evaluate_reports_a_finetuned_held_out_task_as_finetuned(finetuned_on_scienceqa, monkeypatch):
    import importlib.util

    from evaluation import report

    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "evaluate.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    output = finetuned_on_scienceqa / "eval"
    cli.main(["--model", str(finetuned_on_scienceqa / "out"), "--data_dir", str(finetuned_on_scienceqa / "data"),
              "--tasks", "scienceqa", "--output_dir", str(output), "--cache_dir", str(finetuned_on_scienceqa / "cache"),
              "--batch_size", "2"])
    results = json.loads((output / "results.json").read_text())
    result = results["tasks"]["scienceqa"]
    assert result["held_out"] and result["finetuned"]
    assert "scienceqa" not in report.comparable_tasks(results)
    # a full official split would put it in Table 1 and the model index as zero-shot: it must not
    results["tasks"]["scienceqa"]["comparable"] = True
    table = report.markdown_table(results)
    assert "## Zero-shot" not in table and "| Model |" not in table  # no Table 1 beside published rows
    assert f"fine-tuned on {result['title']} (not zero-shot)" in table and f"{result['title']} (fine-tuned)" in table
    names = [entry.task_name for entry in report.eval_results(results)]
    assert names == [f"Fine-tuned {result['title']}"]
    _, title = report.chart_tasks_and_title(results)
    assert "fine-tuned on, not zero-shot" in title
    # the same model not fine-tuned on it: zero-shot as before
    results["tasks"]["scienceqa"]["finetuned"] = False
    assert [entry.task_name for entry in report.eval_results(results)] == [f"Zero-shot {result['title']}"]


@pytest.mark.parametrize("name", ["scienceqa", "ocrvqa", "okvqa", "aokvqa"])
def test_downstream_finetuning_configs(name):
    model_args, data_args, args = train_script.parse_args([str(ROOT / "configs" / "finetune" / f"{name}.yaml"),
                                                           "--use_cpu", "true"])
    assert model_args.model_name_or_path.startswith("Salesforce/instructblip-")
    assert list(data_args.data_dirs) == [name]
    assert data_args.finetune_on_held_out == (name == "scienceqa")  # the only held-out one of the four
    assert not model_args.train_language_model and not model_args.train_vision_model and not model_args.lora_r
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay, args.learning_rate) == (0.9, 0.999, 0.05, 1e-5)
    # OK-VQA and A-OKVQA report on their validation split: no checkpoint may be chosen on it
    assert (args.eval_strategy == "no") == (name in ("okvqa", "aokvqa"))


@pytest.mark.slow
def test_blip2_start_and_ablation_through_accelerate_launch(held_in_corpus, bert, tmp_path):
    """The command users run: `accelerate launch train.py ...` from a BLIP-2 folder, instruction-unaware,
    uniform sampling (one process on the CPU)."""
    folder = tmp_path / "blip2"
    make_blip2(folder, "opt")
    launcher = Path(sys.executable).with_name("accelerate")
    command = [str(launcher), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", str(ROOT / "train.py"),
               *_run_args(held_in_corpus, tmp_path / "out", str(folder), qformer_model=str(bert[0]),
                          instruction_aware="false", sampling="uniform")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["instruction_aware"] is False
    card = (tmp_path / "out" / "README.md").read_text()
    assert str(folder) in card and "uniform" in card
