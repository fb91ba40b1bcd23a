"""Low-memory loading: transformers' quantization configs (torchao, bitsandbytes) and bf16 through our
`from_pretrained`, quantizing the LLM only; generation through our `generate` (the `match_lavis` hook
included); save and reload; the saved folders pass `publish model`'s check.

Everything here runs on a CPU. bitsandbytes' GPU kernels are not exercised (its CPU backend is)."""

import copy
import json

import pytest
import torch
from PIL import Image

from evaluation.tasks import TASKS, generate_kwargs
from modeling_instructblip import InstructBlipForConditionalGeneration, InstructBlipProcessor, tiny
from tests.helpers import randomize_

torchao = pytest.importorskip("torchao")
from torchao.quantization import Int8WeightOnlyConfig  # noqa: E402
from transformers import BitsAndBytesConfig, TorchAoConfig  # noqa: E402

SKIPPED = set(InstructBlipForConditionalGeneration._quantization_skip_modules)


def _save_tiny(folder, text, hidden=None):
    """A tiny random model (non-trivial weights) and its processor, saved as a Hub folder. `hidden`
    widens the LLM (bitsandbytes' CPU 4-bit kernel wants input widths that are multiples of 64)."""
    model, processor = tiny.build(text)
    if hidden is not None:
        config = copy.deepcopy(model.config)
        width = "d_model" if text == "t5" else "hidden_size"
        setattr(config.text_config, width, hidden)
        setattr(config.text_config, "d_ff" if text == "t5" else "intermediate_size", 2 * hidden)
        if text == "t5":
            config.text_config.d_kv = hidden // config.text_config.num_heads
        else:
            config.text_config.head_dim = hidden // config.text_config.num_attention_heads
        torch.manual_seed(0)
        model = InstructBlipForConditionalGeneration(config).eval()
    randomize_(model)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    cache = {}

    def get(text, hidden=None):
        key = (text, hidden)
        if key not in cache:
            cache[key] = _save_tiny(tmp_path_factory.mktemp(f"tiny-{text}-{hidden}"), text, hidden)
        return cache[key]

    return get


def _inputs(folder, count=6, seed=0):
    processor = InstructBlipProcessor.from_pretrained(folder, trust_remote_code=True)
    generator = torch.Generator().manual_seed(seed)
    images = [
        Image.fromarray((torch.rand(28, 28, 3, generator=generator) * 255).to(torch.uint8).numpy()) for _ in range(count)
    ]
    prompts = ["Question: what color is the square? Short answer:", "A short image description:"] * (count // 2)
    return processor(images=images, text=prompts, return_tensors="pt", padding=True)


def _quantized_linears(model) -> dict[str, str]:
    """Module name -> what holds its weight, for every linear layer whose weight is no plain parameter."""
    found = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and (type(module) is not torch.nn.Linear or type(weight) is not torch.nn.Parameter):
            found[name] = f"{type(module).__name__}/{type(weight).__name__}"
    return found


def _llm_linears(model) -> set[str]:
    return {
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith("language_model.") and name != "language_model.lm_head"
    }


def _assert_only_the_llm_quantized(model, dtype=torch.float32):
    quantized = _quantized_linears(model)
    assert set(quantized) == _llm_linears(model), quantized
    for name, param in model.named_parameters():
        if not name.startswith("language_model.") or name.startswith("language_model.lm_head"):
            assert type(param) is torch.nn.Parameter and param.dtype == dtype, (name, type(param), param.dtype)


@pytest.mark.parametrize("text", ["llama", "t5"])
def test_torchao_int8_quantizes_the_llm_only_and_says_so_in_the_saved_config(folders, text):
    model = InstructBlipForConditionalGeneration.from_pretrained(
        folders(text), quantization_config=TorchAoConfig(Int8WeightOnlyConfig())
    )
    _assert_only_the_llm_quantized(model)
    assert all(kind.endswith("Int8Tensor") for kind in _quantized_linears(model).values())
    assert set(model.config.quantization_config.modules_to_not_convert) == SKIPPED
    assert model.is_quantized


def test_a_skip_list_the_user_gives_is_taken_as_given(folders):
    given = TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=[])
    model = InstructBlipForConditionalGeneration.from_pretrained(folders("llama"), quantization_config=given)
    quantized = _quantized_linears(model)
    assert "vision_model.encoder.layers.0.mlp.fc1" in quantized and "qformer.encoder.layer.0.intermediate_query.dense" in quantized
    assert given.modules_to_not_convert == []  # the caller's config object is not changed


def test_a_quantization_config_dict_works_and_anything_else_is_refused(folders):
    model = InstructBlipForConditionalGeneration.from_pretrained(
        folders("llama"), quantization_config={"quant_method": "bitsandbytes", "load_in_8bit": True}
    )
    assert set(_quantized_linears(model)) == _llm_linears(model)
    with pytest.raises(TypeError, match="quantization_config: expected"):
        InstructBlipForConditionalGeneration.from_pretrained(folders("llama"), quantization_config="int8")


def _paper_answers(model, inputs, task="gqa", **overrides):
    """`generate` with the paper's short-answer decoding (LAVIS's eval config: 5 beams, 10 tokens at
    most; `task="nocaps"`: its captioning one, 80 at most), or with `overrides` alone."""
    kwargs = overrides or generate_kwargs(TASKS[task], not model.config.use_decoder_only_language_model)
    return model.generate(**inputs, **kwargs)


def _teacher_forced_logits(model, inputs, sequences):
    """The next-token logits along `sequences` (what `generate` returned), for the generated positions."""
    with torch.no_grad():
        if not model.config.use_decoder_only_language_model:
            return model(**inputs, decoder_input_ids=sequences[:, :-1]).logits.float()
        prompt = inputs["input_ids"].shape[1]
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(sequences[:, prompt:])], dim=1)
        images = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        return model(**images, input_ids=sequences, attention_mask=mask).logits[:, prompt - 1 : -1].float()


def _assert_decodes_like(model, reference, inputs, tolerance):
    """The paper's short answers are fp32's, token for token. Long captions from a random tiny model
    follow near-flat distributions, where any rounding eventually picks another token, so along fp32's
    captions (teacher-forced) the next-token choice must agree at 95 % of positions and the logits
    within `tolerance` (relative; the suppressed `<image>` logit left out)."""
    assert torch.equal(_paper_answers(model, inputs), _paper_answers(reference, inputs))
    captions = _paper_answers(reference, inputs, "nocaps")
    expected, got = (_teacher_forced_logits(m, inputs, captions) for m in (reference, model))
    keep = torch.ones(expected.shape[-1], dtype=torch.bool)
    keep[reference.config.image_token_index] = False
    expected, got = expected[..., keep], got[..., keep]
    assert (expected.argmax(-1) == got.argmax(-1)).float().mean() >= 0.95
    assert (got - expected).norm() / expected.norm() < tolerance


@pytest.mark.parametrize("text", ["llama", "t5"])
def test_int8_decodes_like_fp32_with_the_papers_settings(folders, text):
    folder = folders(text)
    reference = InstructBlipForConditionalGeneration.from_pretrained(folder).eval()
    int8 = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    inputs = _inputs(folder)
    _assert_decodes_like(int8, reference, inputs, tolerance=0.02)


@pytest.mark.parametrize("rows", [5, 40])
def test_int8_layers_decode_with_pytorchs_int8_cpu_kernel_and_compute_torchaos_linear(folders, tmp_path, rows):
    """torchao's int8 weight-only linear converts the whole int8 weight at every call (six times the bf16
    matmul's time at Vicuna's widths, 5 beams); layers whose widths are multiples of 64 (every real
    model's) call `torch._weight_int8pack_mm` for bf16 inputs of at most 16 rows (decoding steps) on a
    CPU. torchao's own linear (what `F.linear` dispatches to for its tensor) is the reference, layer by
    layer, for the model quantized while loading and for its saved checkpoint (weights mapped from the
    file: where it leaves them off the kernel's 16-byte alignment, torchao's linear runs)."""
    folder = folders("llama", hidden=128)
    config = TorchAoConfig(Int8WeightOnlyConfig())
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=config)
    model.save_pretrained(tmp_path / "int8")
    calls = []
    kernel = torch._weight_int8pack_mm
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "_weight_int8pack_mm", lambda *args: calls.append(args[1].shape) or kernel(*args))
        for loaded in (model, InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "int8")):
            layers = {name: loaded.get_submodule(name) for name in _quantized_linears(loaded)}
            wide = {name for name, m in layers.items() if m.in_features % 64 == 0 and m.out_features % 64 == 0}
            assert wide and {name for name, m in layers.items() if hasattr(m.forward, "func")} == wide
            generator = torch.Generator().manual_seed(0)
            for name, module in layers.items():
                x = torch.randn(1, rows, module.in_features, generator=generator).to(torch.bfloat16)
                expected = torch.nn.functional.linear(x, module.weight, module.bias)
                calls.clear()
                torch.testing.assert_close(module(x), expected, rtol=2e-2, atol=2e-2, msg=name)
                aligned = module.weight.qdata.data_ptr() % 16 == 0  # the kernel crashes on weights that are not
                assert len(calls) == (name in wide and rows <= 16 and aligned), name


def test_the_match_lavis_hook_still_suppresses_the_placeholder_in_a_quantized_llm(folders):
    folder = folders("llama")
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    assert model.config.match_lavis
    with torch.no_grad():
        logits = model(**_inputs(folder, count=2)).logits
    assert (logits[..., model.config.image_token_index] == torch.finfo(logits.dtype).min).all()


@pytest.mark.parametrize("text", ["llama", "t5"])
def test_bf16_on_cpu_decodes_like_fp32_with_the_papers_settings(folders, text):
    folder = folders(text)
    reference = InstructBlipForConditionalGeneration.from_pretrained(folder).eval()
    bf16 = InstructBlipForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16).eval()
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    _assert_decodes_like(bf16, reference, _inputs(folder), tolerance=0.05)


def test_a_saved_torchao_model_reloads_quantized_and_answers_the_same(folders, tmp_path):
    folder = folders("llama")
    inputs = _inputs(folder)
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    answers = _paper_answers(model, inputs)  # saved after serving, as a Space or a notebook would
    model.save_pretrained(tmp_path / "int8")
    reloaded = InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "int8")
    assert _quantized_linears(reloaded) == _quantized_linears(model)
    assert torch.equal(reloaded.query_tokens, model.query_tokens)
    assert torch.equal(_paper_answers(reloaded, inputs), answers)
    assert (tmp_path / "int8" / "model.safetensors").stat().st_size < (folder / "model.safetensors").stat().st_size
    # torchao's reader scans every listed name for each quantized weight: only the quantized ones are listed
    from safetensors import safe_open

    with safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt") as saved:
        listed = json.loads(saved.metadata()["tensor_names"])
    assert sorted(listed) == sorted(f"{name}.weight" for name in _quantized_linears(model))


@pytest.mark.parametrize("how", ["int8", "nf4", "bf16"])
def test_publish_accepts_a_quantized_or_bf16_folder(folders, tmp_path, how):
    from huggingface_hub import ModelCard

    from publish import check_model_folder

    folder = folders("llama")
    kwargs = {
        "int8": {"quantization_config": TorchAoConfig(Int8WeightOnlyConfig())},
        "nf4": {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"), "dtype": torch.bfloat16},
        "bf16": {"dtype": torch.bfloat16},
    }[how]
    if how == "nf4":
        pytest.importorskip("bitsandbytes")
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, **kwargs)
    target = tmp_path / how
    model.save_pretrained(target)
    InstructBlipProcessor.from_pretrained(folder, trust_remote_code=True).save_pretrained(target)
    ModelCard(f"---\nlibrary_name: transformers\ntags: [instructblip, {how}]\n---\n# tiny {how}\n").save(target / "README.md")
    files = check_model_folder(target)
    assert "model.safetensors" in files and "config.json" in files


@pytest.mark.parametrize("bits", [8, 4])
def test_bitsandbytes_quantizes_the_llm_only_and_generates_on_cpu(folders, bits):
    """bitsandbytes' CPU backend: the same skip list, the LLM's linears replaced by its 8-bit / NF4
    layers, and `generate` runs. (Its CUDA kernels are what GPU users get; they are not run here.)"""
    pytest.importorskip("bitsandbytes")
    folder = folders("llama", hidden=128)
    config = (
        BitsAndBytesConfig(load_in_8bit=True) if bits == 8
        else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    )
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=config)
    expected = "Linear8bitLt" if bits == 8 else "Linear4bit"
    quantized = _quantized_linears(model)
    assert set(quantized) == _llm_linears(model) and all(kind.startswith(expected) for kind in quantized.values())
    assert set(model.config.quantization_config.llm_int8_skip_modules) == SKIPPED
    inputs = _inputs(folder, count=2)
    answers = model.generate(**inputs, num_beams=1, max_new_tokens=4, min_new_tokens=4)
    assert answers.shape == (2, inputs["input_ids"].shape[1] + 4)


def test_a_4bit_model_narrower_than_bitsandbytes_cpu_kernel_generates(folders):
    """bitsandbytes' AVX512 4-bit kernel fails at the first forward on output widths that are not multiples
    of 32 or input widths that are not of 64 (the tiny Llama is 48 wide): those layers take its plain path."""
    pytest.importorskip("bitsandbytes")
    folder = folders("llama")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=config, dtype=torch.bfloat16)
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    inputs = _inputs(folder, count=2)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    answers = model.generate(**inputs, num_beams=1, max_new_tokens=4, min_new_tokens=4)
    assert answers.shape == (2, inputs["input_ids"].shape[1] + 4)


@pytest.mark.parametrize("double_quant", [False, True])
def test_a_4bit_model_saved_after_generating_on_cpu_reloads_with_its_weights(folders, tmp_path, double_quant):
    """bitsandbytes' CPU backend repacks each 4-bit weight (and its absmax, into bf16) at the first
    forward. bitsandbytes' own inverse, which its state dict applies, left a plain absmax in the packed
    layout (saved after generating, the model reloaded with every LLM weight wrong) and re-quantized a
    double-quantized one. The reload must hold the 4-bit codes quantized at load time and the absmax the
    CPU kernel computed with, and answer as the saved model did."""
    pytest.importorskip("bitsandbytes")
    folder = folders("t5", hidden=128)
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=double_quant,
    )
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, quantization_config=config, dtype=torch.bfloat16)
    layers = {name: module for name, module in model.named_modules() if type(module).__name__ == "Linear4bit"}
    codes = {name: module.weight.data.clone() for name, module in layers.items()}
    inputs = _inputs(folder, count=2)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    answers = _paper_answers(model, inputs)
    if not all(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers.values()):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not repack its 4-bit weights here")
    served = {name: m.weight.quant_state.absmax.T.reshape(-1).float() for name, m in layers.items()}  # [K/64, N] packed
    model.save_pretrained(tmp_path / "nf4")
    assert torch.equal(_paper_answers(model, inputs), answers)  # the saved model still serves
    reloaded = InstructBlipForConditionalGeneration.from_pretrained(tmp_path / "nf4")
    for name, module in reloaded.named_modules():
        if name in layers:
            assert torch.equal(module.weight.data, codes[name]), name
            assert torch.equal(module.weight.quant_state.absmax, served[name]), name
    assert torch.equal(_paper_answers(reloaded, inputs), answers)
