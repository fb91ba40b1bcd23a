"""train.py and training/: arguments, data, optimiser, LoRA, starting points, and whole runs
(end to end, two gloo ranks, SIGKILL + resume) on the bundled sample corpus with tiny models."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `training/` lives at the repository root, next to train.py

from tests.helpers import (  # noqa: E402
    NO_DROPOUT, STREAM_ARGS, STREAM_SIZES, TRAIN_PROBE_SCRIPT, final_weights, free_port, launch_train, runs_end_alike,
    small_run_args,
)
from tests.training.train_fixtures import load_train_script  # noqa: E402
from modeling_instructblip import tiny  # noqa: E402
from training import modeling  # noqa: E402
from training.data import (  # noqa: E402
    InstructBlipCollator, InstructionDataset, InstructionStream, load_training_mixture, prepare_pending,
)
from training.trainer import InstructBlipTrainer, paper_lr_lambda  # noqa: E402

PAPER_CONFIGS = {"flan-t5-xl": 192, "flan-t5-xxl": 64, "vicuna-7b": 128, "vicuna-13b": 64}


train_script = load_train_script()  # once per process: the Trainer pickles its arguments' class by module name


@pytest.fixture(scope="module")
def mixture(held_in_corpus):
    mixture, proportions, reports = load_training_mixture(held_in_corpus["data_dirs"], cache_dir=held_in_corpus["cache"])
    return mixture, proportions, reports


# ---------------------------------------------------------------------------------------------
# arguments and configs
# ---------------------------------------------------------------------------------------------


def test_yaml_config_then_command_line_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "tiny_text_model: t5\ndata_dirs: {vqav2: /data/vqav2}\nmultipliers: {vqav2: 2.0}\n"
        f"output_dir: {tmp_path}/out\nmax_steps: 50\nlearning_rate: 1.0e-5\nuse_cpu: true\n"
    )
    model_args, data_args, training_args = train_script.parse_args([str(config), "--max_steps", "7"])
    assert model_args.tiny_text_model == "t5"
    assert data_args.data_dirs == {"vqav2": "/data/vqav2"} and data_args.multipliers == {"vqav2": 2.0}
    assert training_args.max_steps == 7 and training_args.learning_rate == 1e-5
    assert training_args.remove_unused_columns is False
    _, data_args, _ = train_script.parse_args(
        [str(config), "--data_dirs", '{"okvqa": "/d"}', "--report_to", "none"]
    )
    assert data_args.data_dirs == {"okvqa": "/d"}
    _, data_args, _ = train_script.parse_args([str(config), "--sampling", "uniform"])
    assert data_args.sampling == "uniform"  # the paper's "without data balancing" ablation
    with pytest.raises(ValueError, match="--sampling must be one of sqrt, size, uniform"):
        train_script.parse_args([str(config), "--sampling", "balanced"])
    config.write_text(config.read_text() + "no_such_option: 1\n")
    with pytest.raises(ValueError, match="no_such_option"):
        train_script.parse_args([str(config)])


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_configs_hold_the_paper_recipe(name):
    model_args, data_args, args = train_script.parse_args([str(ROOT / "configs" / f"{name}.yaml"), "--use_cpu", "true"])
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * 16  # 16 GPUs
    assert global_batch == PAPER_CONFIGS[name]
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay) == (0.9, 0.999, 0.05)
    assert (args.warmup_steps, args.warmup_start_lr, args.learning_rate, args.max_steps) == (1000, 1e-8, 1e-5, 60000)
    assert args.bf16 and args.load_best_model_at_end and not model_args.train_language_model
    # LAVIS: blip_image_train (crop, flip, RandAugment) for FlanT5, blip2_image_train (crop, flip) for Vicuna
    assert data_args.train_augmentation and data_args.train_randaugment == name.startswith("flan-t5")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def test_mixture_is_square_root_balanced(mixture):
    _, proportions, reports = mixture
    sizes = {name: report["num_records"] for name, report in reports.items()}
    total = sum(math.sqrt(n) for n in sizes.values())
    for name, p in proportions.items():
        assert p == pytest.approx(math.sqrt(sizes[name]) / total)


def test_samples_are_reproducible_and_templates_redrawn_per_epoch(mixture):
    dataset = InstructionDataset(mixture[0], seed=3)
    first = [dataset[i]["instruction"] for i in range(40)]
    assert [dataset[i]["instruction"] for i in range(40)] == first
    dataset.set_epoch(1)
    assert [dataset[i]["instruction"] for i in range(40)] != first
    again = InstructionDataset(mixture[0], seed=3)
    again.set_epoch(1)
    assert [again[i]["seed"] for i in range(5)] == [dataset[i]["seed"] for i in range(5)]


def test_collator_builds_the_masked_training_batch(mixture):
    model, processor = tiny.build("llama")
    dataset = InstructionDataset(mixture[0], seed=0)
    collator = InstructBlipCollator(processor)
    samples = [dataset[i] for i in range(4)]
    batch = collator(samples)
    again = collator([dataset[i] for i in range(4)])
    assert torch.equal(batch["pixel_values"], again["pixel_values"])  # crops come from the samples' seeds
    assert batch["num_skipped_records"].tolist() == [0, 0, 0, 0]
    targets = processor.tokenizer.batch_decode(
        [row[row != -100] for row in batch["labels"]], skip_special_tokens=True
    )
    assert [t.strip() for t in targets] == [s["target"] for s in samples]
    batch.pop("num_skipped_records")
    assert torch.isfinite(model(**batch).loss)


def test_unreadable_images_are_counted_not_fatal(held_in_corpus, tmp_path):
    import shutil

    folder = tmp_path / "coco"
    shutil.copytree(held_in_corpus["data_dirs"]["coco_caption"], folder)
    mixture, _, _ = load_training_mixture({"coco_caption": str(folder)}, cache_dir=str(tmp_path / "cache"))
    dataset = InstructionDataset(mixture)
    broken = dataset.dataset[0]["image"]["path"]
    Path(broken).write_bytes(b"not an image at all")
    samples = [dataset[i] for i in range(len(dataset))]
    _, processor = tiny.build("llama")
    batch = InstructBlipCollator(processor)(samples[:8])
    uses_broken = sum(dataset.dataset[i]["image"]["path"] == broken for i in range(len(dataset)))
    assert uses_broken > 0 and sum(s["skipped"] for s in samples) == uses_broken
    assert batch["pixel_values"].shape[0] == 8


def test_streaming_reads_the_same_samples_with_any_number_of_workers(held_in_corpus):
    mixture, _, _ = load_training_mixture(
        held_in_corpus["data_dirs"], streaming=True, sizes={"coco_caption": 120, "vqav2": 80, "vqav2_qg": 80},
        stopping_strategy="first_exhausted",
    )
    stream = InstructionStream(mixture, seed=0)

    def draws(num_workers):
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers)
        return sorted(sample["seed"] for sample in prepare_pending(list(loader)))

    single = draws(0)
    assert len(single) > 20 and draws(2) == single


def test_stream_ranks_decode_only_their_own_images(held_in_corpus, tmp_path, monkeypatch):
    """Under two ranks accelerate gives each rank its slice of every global batch of the stream
    (`dispatch_batches=False`, what train.py sets): the stream yields records undecoded, so a
    rank opens the images of its own samples only; the two ranks' batches together are the single
    process's, sample for sample. An unreadable image is dropped from its batch and counted."""
    import shutil

    from accelerate.data_loader import IterableDatasetShard

    from training import data as data_module

    folder = tmp_path / "coco"
    shutil.copytree(held_in_corpus["data_dirs"]["coco_caption"], folder)
    mixture, _, _ = load_training_mixture({"coco_caption": str(folder)}, streaming=True, sizes={"coco_caption": 40})
    stream = InstructionStream(mixture, seed=0)
    _, processor = tiny.build("llama")
    opened = []
    real_open = data_module.open_image
    monkeypatch.setattr(data_module, "open_image", lambda image: opened.append(image["path"]) or real_open(image))

    class Recording(InstructBlipCollator):
        def collate(self, samples):
            self.seen.append([s["seed"] for s in samples])
            return super().collate(samples)

    def batches(rank, world):
        collator = Recording(processor)
        collator.seen = []
        opened.clear()
        shard = IterableDatasetShard(stream, batch_size=2, num_processes=world, process_index=rank, drop_last=True)
        for batch in torch.utils.data.DataLoader(shard, batch_size=2, collate_fn=collator):
            assert batch["num_skipped_records"].sum() == 0 and batch["pixel_values"].shape[0] == 2
        return collator.seen, len(opened)

    single, single_opened = batches(0, 1)
    (rank0, opened0), (rank1, opened1) = batches(0, 2), batches(1, 2)
    assert len(single) >= 8 and single_opened == 2 * len(single)
    assert opened0 == 2 * len(rank0) and opened1 == 2 * len(rank1)  # nobody else's images
    merged = [b for pair in zip(rank0, rank1) for b in pair]
    assert merged == single[: len(merged)] and len(merged) >= len(single) - 1

    # an unreadable image: its record leaves the batch, counted there
    first = next(iter(stream))
    pending = [first, next(s for s in stream if s.record["image"]["path"] != first.record["image"]["path"])]
    Path(pending[1].record["image"]["path"]).write_bytes(b"not an image")
    batch = InstructBlipCollator(processor)(pending)
    assert batch["pixel_values"].shape[0] == 1 and batch["num_skipped_records"].tolist() == [1]
    Path(pending[0].record["image"]["path"]).write_bytes(b"")
    with pytest.raises(RuntimeError, match="none of the 2 records"):
        InstructBlipCollator(processor)(pending)


# ---------------------------------------------------------------------------------------------
# optimiser, schedule, loss scaling
# ---------------------------------------------------------------------------------------------


def _trainer(model, dataset, processor, tmp_path, **kwargs):
    args = train_script.InstructBlipTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", seed=0,
        **{"per_device_train_batch_size": 4, "max_steps": 2, "learning_rate": 1e-3, **kwargs},
    )
    return InstructBlipTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=InstructBlipCollator(processor),
        processing_class=processor,
    )


def tiny_frozen(seed=0):
    model, processor = modeling.build_tiny("llama", seed=seed, config_overrides=NO_DROPOUT)
    return modeling.freeze(model), processor


def test_only_trainable_tensors_reach_adamw_and_decay_needs_two_dims(mixture, tmp_path):
    model, processor = tiny_frozen()
    trainer = _trainer(model, InstructionDataset(mixture[0]), processor, tmp_path, weight_decay=0.05)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {group["weight_decay"]: [names[id(p)] for p in group["params"]] for group in optimizer.param_groups}
    optimised = set(groups[0.05]) | set(groups[0.0])
    assert optimised == {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("language_model.", "vision_model.encoder")) for n in optimised)
    assert "query_tokens" in groups[0.05] and "vision_model.post_layernorm.weight" in groups[0.0]
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in groups[0.05])
    assert all(dict(model.named_parameters())[n].ndim < 2 for n in groups[0.0])
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_answer_report_compares_with_the_best_image_blind_answer_per_question_kind():
    from training.report import answer_report, format_answer_report, question_kind

    assert question_kind("What color are the shapes?") == question_kind("what  COLOR is it") == "what color"
    record = lambda question, target, answers=(): {"question": question, "target": target, "answers": list(answers)}
    train = [record("What color is it?", t) for t in ("red", "red", "blue", "blue", "green")]  # tie: blue < red
    train += [record("How many dogs?", "two"), record("How many cats?", "Two.")]
    validation = [record("What color is it?", "blue"), record("What color is it?", "red"),
                  record("What color is it?", "green", ["green", "blue"]), record("How many birds?", "three"),
                  record("Where is it?", "left")]  # a kind never seen in training: no baseline answer
    report = answer_report(["red", "Red.", "green", "two", "left"], validation, train)
    colour = report["kinds"]["what color"]
    assert colour["baseline_answer"] == "blue" and colour["baseline"] == pytest.approx(2 / 3)
    assert colour["accuracy"] == pytest.approx(2 / 3) and colour["questions"] == 3
    # answers are compared as the official VQA evaluation normalises them ("two", "Two." -> "2")
    assert report["kinds"]["how many"] == {"questions": 1, "accuracy": 0.0, "baseline": 0.0, "baseline_answer": "2"}
    from training.data import answer_matches

    assert answer_matches("Two dogs.", record("How many?", "2 dogs")) and answer_matches("isnt", record("Is it?", "isn't"))
    assert report["kinds"]["where is"]["baseline_answer"] is None and report["kinds"]["where is"]["accuracy"] == 1.0
    assert report["overall"] == {"questions": 5, "accuracy": pytest.approx(3 / 5), "baseline": pytest.approx(2 / 5)}
    table = format_answer_report(report)
    assert "| what color | 3 | 0.67 | 0.67 (blue) |" in table and "| **all** | 5 | 0.60 | 0.40 |" in table
    with pytest.raises(ValueError, match="4 predictions for 5 records"):
        answer_report(["x"] * 4, validation, train)


def test_paper_schedule_warms_up_from_1e_8_then_decays_to_zero():
    factor = paper_lr_lambda(1000, 60000, 1e-8 / 1e-5)
    assert factor(0) * 1e-5 == pytest.approx(1e-8)
    assert factor(500) == pytest.approx(0.5, abs=1e-3)
    assert factor(1000) == 1.0 and factor(60000) == pytest.approx(0.0, abs=1e-12)
    assert factor(30500) == pytest.approx(0.5)


def test_frozen_towers_stay_in_eval_mode_while_training(mixture, tmp_path):
    model, processor = tiny_frozen()
    trainer = _trainer(model, InstructionDataset(mixture[0]), processor, tmp_path, max_steps=1)
    trainer.train()
    model.train()
    assert not model.language_model.training and not model.vision_model.encoder.training
    assert model.qformer.training


@pytest.mark.slow
def test_gradient_accumulation_is_exact(mixture, tmp_path):
    """Batch 4 in one step == 2 x 2 accumulated: the Trainer hands `num_items_in_batch` to the model.
    (SGD: Adam's g / sqrt(v) would amplify float noise in near-zero gradients.)"""
    import copy

    results = []
    initial, processor = tiny_frozen()  # one build: the tiny BERT tokenizer's training is not deterministic
    for batch, accumulation in ((4, 1), (2, 2)):
        model = modeling.freeze(copy.deepcopy(initial))
        trainer = _trainer(
            model, InstructionDataset(mixture[0]), processor, tmp_path / f"{batch}",
            per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, max_steps=2,
        )
        assert trainer.model_accepts_loss_kwargs
        start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        trainer.train()
        results.append({n: p.detach() - start[n] for n, p in model.named_parameters() if p.requires_grad})
    for name, update in results[0].items():
        if update.norm() > 1e-6:  # key biases get no gradient (softmax is shift-invariant): float noise only
            assert (results[1][name] - update).norm() / update.norm() < 1e-4, name


@pytest.mark.slow
def test_activation_checkpointing_and_bf16_autocast_train(mixture, tmp_path):
    import copy

    initial, processor = tiny_frozen()
    model, checkpointed_model, bf16_model = (modeling.freeze(copy.deepcopy(initial)) for _ in range(3))
    _trainer(model, InstructionDataset(mixture[0]), processor, tmp_path / "a", max_steps=1).train()
    _trainer(
        checkpointed_model, InstructionDataset(mixture[0]), processor, tmp_path / "b", max_steps=1,
        activation_checkpointing=True,
    ).train()
    assert checkpointed_model.is_activation_checkpointing
    for (name, a), (_, b) in zip(model.named_parameters(), checkpointed_model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    result = _trainer(bf16_model, InstructionDataset(mixture[0]), processor, tmp_path / "c", max_steps=2, bf16=True).train()
    assert math.isfinite(result.training_loss)


@pytest.mark.slow
@pytest.mark.parametrize("regions", [True, False])
def test_torch_compile_trains_to_the_same_weights(regions, mixture, tmp_path):
    """`--torch_compile` (the Trainer's, through accelerate): TorchDynamo captures the forward and
    AOTAutograd the backward (the `aot_eager` backend: inductor's code generation is what GPUs run,
    too slow to compile on this CPU), per block (`--compile_regions`, the default) or the whole model,
    without a graph break; two steps end with the eager run's weights."""
    import copy

    import torch._dynamo.utils

    initial, processor = tiny_frozen()
    eager, compiled = (modeling.freeze(copy.deepcopy(initial)) for _ in range(2))
    _trainer(eager, InstructionDataset(mixture[0]), processor, tmp_path / "a", max_steps=2).train()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    trainer = _trainer(
        compiled, InstructionDataset(mixture[0]), processor, tmp_path / "b", max_steps=2,
        torch_compile=True, torch_compile_backend="aot_eager", compile_regions=regions,
    )
    trainer.train()
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] > 0  # it was compiled
    assert not counters["graph_break"], dict(counters["graph_break"])
    blocks = trainer.model_wrapped.language_model.model.layers if regions else None
    assert (type(trainer.model_wrapped).__name__ == "OptimizedModule") != regions
    assert not regions or all(type(block).__name__ == "OptimizedModule" for block in blocks)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# starting points and LoRA
# ---------------------------------------------------------------------------------------------


def test_lora_keeps_the_paper_trainable_set_and_saves_adapter_or_merged(mixture, tmp_path):
    from peft import PeftModel

    model, processor = tiny_frozen()
    paper_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora_config = modeling.add_lora(model, r=4, alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert lora and all(n.startswith("language_model.") and ("q_proj" in n or "v_proj" in n) for n in lora)
    assert trainable - lora == paper_trainable
    _trainer(model, InstructionDataset(mixture[0]), processor, tmp_path / "run", max_steps=2, learning_rate=1e-2).train()
    batch = InstructBlipCollator(processor)([InstructionDataset(mixture[0], train=False)[i] for i in range(2)])
    batch.pop("num_skipped_records")
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    modeling.save_lora_adapter(model, lora_config, str(tmp_path / "adapter"))
    import copy

    merged = modeling.remove_lora(copy.deepcopy(model), merge=True)
    base = modeling.remove_lora(model, merge=False)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(base(**batch).logits, expected, atol=1e-5)  # the adapters did learn
        adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
        torch.testing.assert_close(adapted(**batch).logits, expected, rtol=1e-4, atol=1e-5)


def test_compose_a_new_model_from_separate_pretrained_parts(tmp_path):
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    tiny_model, processor = tiny.build("llama")
    tiny_model.save_pretrained(tmp_path / "vision")
    bert_tokenizer = processor.qformer_tokenizer
    bert = BertModel(BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, max_position_embeddings=128))
    bert.save_pretrained(tmp_path / "bert")
    bert_tokenizer.save_pretrained(tmp_path / "bert")
    llm_tokenizer = tiny.train_llama_tokenizer()
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(llm_tokenizer), hidden_size=48, intermediate_size=96,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       bos_token_id=1, eos_token_id=2))
    llm.save_pretrained(tmp_path / "llm")
    llm_tokenizer.save_pretrained(tmp_path / "llm")

    model, composed_processor = modeling.compose_from_parts(
        str(tmp_path / "vision"), str(tmp_path / "bert"), str(tmp_path / "llm"), num_query_tokens=4
    )
    torch.testing.assert_close(model.vision_model.encoder.layers[0].mlp.fc1.weight,
                               tiny_model.vision_model.encoder.layers[0].mlp.fc1.weight)
    bert_ffn = bert.encoder.layer[1].intermediate.dense.weight
    torch.testing.assert_close(model.qformer.encoder.layer[1].intermediate_query.dense.weight, bert_ffn)
    torch.testing.assert_close(model.qformer.encoder.layer[1].intermediate.dense.weight, bert_ffn)
    torch.testing.assert_close(model.qformer.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    torch.testing.assert_close(model.language_model.model.layers[0].mlp.up_proj.weight,
                               llm.model.layers[0].mlp.up_proj.weight)
    from PIL import Image

    batch = composed_processor(images=[Image.new("RGB", (40, 30), "red")], text=["What color?"], targets=["red"],
                               return_tensors="pt")
    loss = modeling.freeze(model)(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.query_tokens.grad is not None
    model.save_pretrained(tmp_path / "composed")
    composed_processor.save_pretrained(tmp_path / "composed")
    reloaded, _ = modeling.load_checkpoint(str(tmp_path / "composed"))
    torch.testing.assert_close(reloaded.query_tokens, model.query_tokens)


# ---------------------------------------------------------------------------------------------
# whole runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_style_run_learns_and_leaves_a_hub_ready_folder(held_in_corpus, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from transformers import AutoModel, AutoProcessor

    calls = []
    def create_repo(self, repo_id, **kw):
        calls.append(("create", repo_id))
        return SimpleNamespace(repo_id=repo_id)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw["folder_path"])))
    output = tmp_path / "out"
    argv = [str(ROOT / "configs" / "demo.yaml")] + small_run_args(
        held_in_corpus, output, train_language_model="true", config_overrides="", sample_corpus_dir="",  # the test's corpus only
        max_steps=40, per_device_train_batch_size=8,
        logging_steps=5, eval_strategy="steps", eval_steps=20, save_steps=20, load_best_model_at_end="true",
        metric_for_best_model="eval_loss", max_eval_samples=8, generation_eval_samples=4, loss_curve="true",
        report_to="tensorboard", push_to_hub="true", hub_model_id="someone/instructblip-tiny",
    )
    results = train_script.main(argv)

    losses = [e["loss"] for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert losses[-1] < losses[0] - 0.5  # 40 steps: about 5.9 -> 4.8 (the full demo reaches about 0.3)
    assert "eval_loss" in results["eval"] and "eval_answer_accuracy" in results["eval"]
    assert results["train"]["skipped_records"] == 0
    files = {p.name for p in output.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_instructblip.py", "processor_config.json",
            "generation_config.json", "README.md", "loss_curve.png"} <= files
    generation = json.loads((output / "generation_config.json").read_text())
    assert generation["num_beams"] == 5 and generation["repetition_penalty"] == 1.5
    card = (output / "README.md").read_text()
    assert "coco_caption" in card and "model-index" in card and "0.05" in card
    model = AutoModel.from_pretrained(output, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(output, trust_remote_code=True)
    assert type(model).__name__ == "InstructBlipForConditionalGeneration" and processor.num_query_tokens == 8
    assert calls == [("create", "someone/instructblip-tiny"), ("upload", "someone/instructblip-tiny", str(output))]


@pytest.mark.slow
def test_demo_config_learns_to_answer_from_the_image(tmp_path):
    """`make demo`'s training, unchanged but for where it writes: the loss falls clearly, and on
    held-in validation images (not trained on) the model beats the best image-blind answer per kind
    of question, by far on colour questions. A model that only learned the answer priors per question
    (what the demo did before) scores the baseline. Measured: loss 6.3 -> 0.3; colour 0.28 -> ~0.9;
    all kinds 0.28 -> ~0.4 (count, shape and position stay near their priors: see the issue note)."""
    import demo as demo_script
    from transformers import AutoModel, AutoProcessor

    output, corpus, cache = tmp_path / "model", tmp_path / "corpus", tmp_path / "cache"
    train_script.main([
        str(ROOT / "configs" / "demo.yaml"), "--output_dir", str(output), "--sample_corpus_dir", str(corpus),
        "--dataset_cache_dir", str(cache), "--report_to", "none",
    ])
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < 0.15 * losses[0], losses

    model = AutoModel.from_pretrained(output, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(output, trust_remote_code=True)
    report = demo_script.held_in_report(model, processor, str(corpus), str(cache))
    colour, overall = report["kinds"]["what color"], report["overall"]
    assert overall["questions"] == 1000 and colour["questions"] == 200
    assert colour["accuracy"] >= max(0.6, colour["baseline"] + 0.3), report
    assert overall["accuracy"] >= overall["baseline"] + 0.07, report


def test_a_streamed_run_with_dataloader_workers_trains_as_the_run_without(held_in_corpus, tmp_path):
    """Two dataloader workers reading the stream give the batches of the run that reads it in the main
    process: the same weights after every step's update, the same losses."""
    runs = runs_end_alike(
        held_in_corpus, tmp_path, {"main_process": {}, "two_workers": {"dataloader_num_workers": 2}},
        streaming="true", dataset_sizes=STREAM_SIZES, max_steps=3, save_strategy="no",
    )
    losses = {name: [e["loss"] for e in json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
                     if "loss" in e] for name in runs}
    assert len(losses["main_process"]) == 3 and losses["two_workers"] == pytest.approx(losses["main_process"], rel=1e-5)
    assert runs["two_workers"]["train"]["skipped_records"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_resume_after_sigkill_ends_with_the_same_weights(streaming, held_in_corpus, tiny_checkpoint, request, tmp_path):
    """Killed after its first checkpoint and resumed, a run ends with the uninterrupted run's weights;
    a streamed one too (the resumed stream skips the batches already trained on)."""
    reference_run = request.getfixturevalue("stream_reference_run" if streaming else "reference_run")
    output = tmp_path / "out"
    stream_args = STREAM_ARGS if streaming else {}
    process = launch_train(small_run_args(held_in_corpus, output, tiny_checkpoint, **stream_args), tmp_path / "probe",
                      {"TRAIN_STEP_SLEEP": "1.5"}, background=True)
    deadline = time.time() + 240
    while not (output / "checkpoint-2" / "trainer_state.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "model.safetensors").exists()
    launch_train(small_run_args(held_in_corpus, output, tiny_checkpoint, resume_from_checkpoint="latest", **stream_args),
            tmp_path / "probe")

    expected, resumed = final_weights(reference_run / "out"), final_weights(output)
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_two_gloo_ranks_split_the_data_and_match_one_process(streaming, held_in_corpus, tiny_checkpoint, request, tmp_path):
    """Two ranks of per-device batch 2 train as one process of batch 4: the same global batches,
    sample for sample, and the same weights. A stream is read by both ranks and each collates
    (decodes) its own slice of every global batch (test_stream_ranks_decode_only_their_own_images
    checks that no rank decodes another's images)."""
    launch = [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(TRAIN_PROBE_SCRIPT),
    ]
    stream_args = STREAM_ARGS if streaming else {}
    reference_run = request.getfixturevalue("stream_reference_run" if streaming else "reference_run")
    probe = tmp_path / "probe"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", TRAIN_PROBE_DIR=str(probe), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    args = small_run_args(held_in_corpus, tmp_path / "out", tiny_checkpoint, per_device_train_batch_size=2, save_strategy="no",
                          **stream_args)
    result = subprocess.run([sys.executable, *launch, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # 6 steps x 2 samples per rank (the dataloader may fetch one batch ahead: not trained on)
    draws = [(probe / f"draws_rank{r}.txt").read_text().split()[:12] for r in (0, 1)]
    assert len(draws[0]) == len(draws[1]) == 12 and not set(draws[0]) & set(draws[1])
    reference_draws = (reference_run / "probe" / "draws_rank0.txt").read_text().split()[:24]
    assert sorted(draws[0] + draws[1]) == sorted(reference_draws)  # the same global batches
    weights = [(probe / f"weights_rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    assert weights[0] == weights[1]  # identical on both ranks after every step
    expected, distributed = final_weights(reference_run / "out"), final_weights(tmp_path / "out")
    for name, value in expected.items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-4, atol=1e-5, msg=name)
