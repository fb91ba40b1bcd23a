"""Our start from BLIP-2 (`training.blip2.from_lavis_blip2`) against LAVIS's own classes.

The fixtures in tests/data/lavis/blip2/ were made by tools/lavis_reference/make_blip2_reference.py with
LAVIS's real classes (commit 506965b, transformers 4.33.2, CPU) in an environment of their own: a
stage-1 BLIP-2 (`Blip2Qformer`), stage-2 BLIP-2s (`Blip2T5`, `Blip2OPT`) started from it, each saved
the way LAVIS's runner saves (`{"model": state_dict}` minus the parameters without a gradient: no ViT)
and whole (`_full`: ViT and LLM included), the tiny `eva_vit_g.pth`, BERT and OPT folders they loaded
(FlanT5 and Vicuna: tests/data/lavis/{t5,vicuna}/llm), and LAVIS's InstructBLIP started as the paper's
training started: `Blip2T5Instruct` + `load_from_pretrained(stage 1)` + `load_from_pretrained(stage 2)`,
`Blip2VicunaInstruct` + `load_from_pretrained(stage 1)`, with its LLM logits and loss on two images
with their instructions.

Every tensor a BLIP-2 file gives must arrive bit-identical (by our names), the result must be LAVIS's
InstructBLIP start, tensor for tensor, and compute LAVIS's logits and loss; every key of every file is
converted or reported skipped with a reason.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training.blip2 as blip2
from modeling_instructblip.convert import (
    ConversionReport,
    convert_lavis_state_dict,
    convert_vision_state_dict,
    infer_architecture,
)
from tests.helpers import LAVIS_DATA as DATA
from tests.helpers import loss_inputs
from training.modeling import QFORMER_TEXT_ONLY

BLIP2_DATA = DATA / "blip2"
BERT = BLIP2_DATA / "bert"  # bert-base-uncased's stand-in: LAVIS's init_Qformer loaded it (tokenizer included)
LLM = {"t5": DATA / "t5" / "llm", "vicuna": DATA / "vicuna" / "llm", "opt": BLIP2_DATA / "opt"}
STAGE1 = "blip2_pretrained.pth"
STAGE2 = {"t5": "blip2_pretrained_flant5xl.pth", "opt": "blip2_pretrained_opt2.7b.pth"}
EVA = "eva_vit_g.pth"
VISION_LAYERS = 2  # LAVIS built 2 of the file's 3 ViT blocks, as create_eva_vit_g builds 39 of 40
LOGITS_ATOL, LOSS_ATOL = 1e-4, 1e-5


def tiny_heads(state, num_vision_layers, *args, **kwargs):
    """Head counts are not in the weights; LAVIS's BLIP-2s (EVA ViT-g, BERT-base) have heads of 88 and 64,
    which `from_lavis_blip2` assumes. The tiny fixtures have 4 heads of 12 (ViT) and of 8 (Q-Former)."""
    return infer_architecture(state, num_vision_layers, 12, 8)


@pytest.fixture(scope="module")
def lavis_files(tmp_path_factory) -> Path:
    """The .pth files LAVIS wrote (keys, dtypes and values as LAVIS saved them; the fixture stores the
    tensors several files share once)."""
    folder = tmp_path_factory.mktemp("lavis-blip2")
    for name, payload in torch.load(BLIP2_DATA / "lavis_files.pt", weights_only=True)["files"].items():
        torch.save(payload, folder / name)
    return folder


def lavis_state(folder: Path, name: str) -> dict:
    payload = torch.load(folder / name, weights_only=True)
    return payload if name == EVA else payload["model"]  # eva_vit_g.pth is a bare state dict


@pytest.fixture(scope="module")
def cases():
    return torch.load(BLIP2_DATA / "cases.pt", weights_only=True)


def start(folder: Path, name: str, llm: str, qformer_model=BERT, **kwargs):
    """`from_lavis_blip2` on the file `name` (+ `stage1` / `vision_model` file names), with its report."""
    for key in ("stage1", "vision_model"):
        if kwargs.get(key) is not None:
            kwargs[key] = str(folder / kwargs[key])
    report = ConversionReport()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blip2, "infer_architecture", tiny_heads)
        model, processor, sources = blip2.from_lavis_blip2(
            str(folder / name), str(qformer_model), str(LLM[llm]), num_vision_layers=VISION_LAYERS, report=report, **kwargs
        )
    return model, processor, report


@pytest.fixture(scope="module")
def started(lavis_files):
    """name -> (model, processor, report), built once per module."""
    recipes = {
        # FlanT5: the paper's start (stage 2, the Q-Former's text parts from stage 1), the ViT given apart
        "t5": lambda: start(lavis_files, STAGE2["t5"], "t5", stage1=STAGE1, vision_model=EVA, dtype=torch.float32),
        # ... and from the whole stage-2 state dict, which holds the ViT (and the frozen T5) itself
        "t5_full": lambda: start(lavis_files, "blip2_pretrained_flant5xl_full.pth", "t5", stage1=STAGE1, dtype=torch.float32),
        # Vicuna: stage 1 only (no stage-2 BLIP-2 with Vicuna exists), a new projection
        "vicuna": lambda: start(lavis_files, STAGE1, "vicuna", vision_model=EVA, dtype=torch.float32),
        "vicuna_full": lambda: start(lavis_files, "blip2_pretrained_full.pth", "vicuna", dtype=torch.float32),
        # OPT stage 2 without a stage-1 file: the text parts from BERT
        "opt": lambda: start(lavis_files, STAGE2["opt"], "opt", vision_model=EVA, dtype=torch.float32),
        "opt_full": lambda: start(lavis_files, "blip2_pretrained_opt2.7b_full.pth", "opt", dtype=torch.float32),
    }
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = recipes[name]()
        return cache[name]

    return get


# ---- helpers -------------------------------------------------------------------------------------
def bit_equal(ours, theirs) -> bool:
    """Same shape and the very same numbers (a float16/bfloat16 file tensor held in float32 counts: the cast
    is exact)."""
    if ours.shape != theirs.shape:
        return False
    if ours.is_floating_point() != theirs.is_floating_point():
        return False
    return torch.equal(ours.double(), theirs.double()) if ours.is_floating_point() else torch.equal(ours, theirs)


def model_state(model) -> dict:
    return dict(model.state_dict())


VOCABULARY = ("embed_tokens.weight", "shared.weight", "lm_head.weight")


def assert_arrived(ours_state: dict, expected: dict, what: str):
    """Each of `expected`'s tensors (our names) is in our model's state dict, bit-identical."""
    for name, tensor in expected.items():
        assert name in ours_state, f"{what}: {name} is not in the model"
        ours = ours_state[name]
        if name.startswith("language_model.") and name.endswith(VOCABULARY) and ours.shape[0] > tensor.shape[0]:
            ours = ours[: tensor.shape[0]]  # the rows past the file's are tokens we add (`<image>`): counted apart
        assert bit_equal(ours, tensor), f"{what}: {name} differs from the file's"


def skipped_keys(report) -> set:
    return {key for keys in report.skipped.values() for key in keys}


def assert_file_accounted_for(report, file_state: dict, ours_state: dict, what: str, vision_file=False):
    """Every key of a file given as `path` / `vision_model`: converted (its tensor arrived bit-identical under
    our name) or reported skipped, with a reason."""
    mapping = ConversionReport()
    expected = (convert_vision_state_dict if vision_file else convert_lavis_state_dict)(file_state, VISION_LAYERS, mapping)
    assert mapping.converted + len(skipped_keys(mapping)) == len(file_state)  # the key mapping names every key
    assert_arrived(ours_state, expected, what)
    assert skipped_keys(mapping) <= skipped_keys(report), f"{what}: keys dropped without a reason"
    assert all(reason for reason in report.skipped)


def lavis_instruct_start(folder: Path, kind: str):
    payload = torch.load(folder / f"instruct_{'flant5' if kind == 't5' else 'vicuna'}_init.pth", weights_only=True)
    return convert_lavis_state_dict(payload["model"], VISION_LAYERS), payload["lavis_startup_random"]


def blip2_part(name: str) -> bool:
    return name.startswith(("vision_model.", "qformer.", "query_tokens", "language_projection.")) and not name.endswith("position_ids")


def assert_logits_and_loss(kind, model, processor, cases):
    images = cases["images"]["pixel_values"]
    for case in cases[kind]["loss"]:
        inputs = loss_inputs(kind, case, processor, model, images)
        with torch.no_grad():
            out = model(**inputs)
        expected = case["llm_call"]["logits"]
        real = inputs["attention_mask"].bool() if kind == "vicuna" else slice(None)
        vocab = expected.shape[-1]
        torch.testing.assert_close(out.logits[..., :vocab][real], expected[real], atol=LOGITS_ATOL, rtol=0, msg=case["name"])
        torch.testing.assert_close(out.loss, case["loss"], atol=LOSS_ATOL, rtol=0, msg=case["name"])
        intermediates = case["intermediates"]
        torch.testing.assert_close(out.image_features.image_embeds, intermediates["image_embeds"], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.image_features.language_model_inputs, intermediates["proj_out"], atol=1e-5, rtol=0)


# ---- FlanT5: stage 2 + the stage-1 text parts ------------------------------------------------------
def test_flant5_start_holds_every_blip2_tensor(started, lavis_files):
    model, _, report = started("t5")
    state = model_state(model)
    stage2 = lavis_state(lavis_files, STAGE2["t5"])
    assert not any(k.startswith("visual_encoder.") for k in stage2)  # the runner's layout: no frozen ViT
    assert_file_accounted_for(report, stage2, state, STAGE2["t5"])
    assert_file_accounted_for(report, lavis_state(lavis_files, EVA), state, EVA, vision_file=True)
    # the Q-Former's text parts, which stage 2 lacks, from stage 1
    text = {k: v for k, v in convert_lavis_state_dict(lavis_state(lavis_files, STAGE1), VISION_LAYERS).items()
            if k.startswith("qformer.") and QFORMER_TEXT_ONLY.match(k[len("qformer."):])}
    assert {k for k in text if "word_embeddings" in k} and {k for k in text if ".intermediate." in k}
    assert_arrived(state, text, STAGE1)
    # and the stage-2 Q-Former is not the stage-1 one (LAVIS's stage 2 trained on): the order matters
    stage1_layer = convert_lavis_state_dict(lavis_state(lavis_files, STAGE1), VISION_LAYERS)
    name = "qformer.encoder.layer.0.attention.attention.query.weight"
    assert not torch.equal(stage1_layer[name], state[name])
    t5_rows = load_file(LLM["t5"] / "model.safetensors")["shared.weight"].shape[0]
    assert model.get_input_embeddings().weight.shape[0] == t5_rows + 1  # + `<image>`


@pytest.mark.parametrize("layout", ["t5", "t5_full"])
def test_flant5_start_is_lavis_instructblip_start(started, lavis_files, cases, layout):
    """Blip2T5Instruct, load_from_pretrained(stage 1), load_from_pretrained(stage 2): tensor for tensor."""
    model, _, _ = started(layout)
    state = model_state(model)
    lavis, random_parts = lavis_instruct_start(lavis_files, "t5")
    assert not random_parts
    assert {k for k in lavis if not k.endswith("position_ids")} == {k for k in state if blip2_part(k)}
    assert_arrived(state, lavis, f"LAVIS's InstructBLIP start ({layout})")
    # what LAVIS kept of its own start-up draws: nothing but the ViT, which eva_vit_g.pth gave it
    assert all(k.startswith("visual_encoder.") for k in cases["t5"]["not_loaded_from_blip2"])


def test_flant5_full_file_gives_the_same_model(started, lavis_files):
    """The whole stage-2 state dict (its ViT, its frozen bf16 T5) gives what the runner's file + eva_vit_g.pth give;
    its T5 tensors are checked against the --llm folder and reported."""
    full, _, report = started("t5_full")
    runner, _, _ = started("t5")
    state = model_state(full)
    assert state.keys() == model_state(runner).keys()
    for name, tensor in model_state(runner).items():
        assert torch.equal(state[name], tensor), name
    assert_file_accounted_for(report, lavis_state(lavis_files, "blip2_pretrained_flant5xl_full.pth"), state, "full stage 2")
    assert any("frozen LLM" in reason for reason in report.skipped)


def test_flant5_logits_and_loss_equal_lavis(started, cases):
    model, processor, _ = started("t5")
    assert_logits_and_loss("t5", model, processor, cases)


# ---- Vicuna: stage 1 only, a new projection ----------------------------------------------------------
@pytest.mark.parametrize("layout", ["vicuna", "vicuna_full"])
def test_vicuna_start_is_lavis_instructblip_start(started, lavis_files, layout):
    """Blip2VicunaInstruct + load_from_pretrained(stage 1): every tensor but the projection, which no
    BLIP-2 file holds (LAVIS's and ours are each a fresh nn.Linear)."""
    model, _, report = started(layout)
    state = model_state(model)
    name = STAGE1 if layout == "vicuna" else "blip2_pretrained_full.pth"
    assert_file_accounted_for(report, lavis_state(lavis_files, name), state, name)
    if layout == "vicuna":
        assert_file_accounted_for(report, lavis_state(lavis_files, EVA), state, EVA, vision_file=True)
    lavis, random_parts = lavis_instruct_start(lavis_files, "vicuna")
    assert {"llm_proj.weight", "llm_proj.bias"} <= random_parts.keys()
    assert {k for k in lavis if not k.endswith("position_ids")} == {
        k for k in state if blip2_part(k) and not k.startswith("language_projection.")
    }
    assert_arrived(state, lavis, f"LAVIS's InstructBLIP start ({layout})")
    projection = model.language_projection
    assert "not in a stage-1 BLIP-2: newly initialised" in report.skipped
    assert projection.weight.shape == random_parts["llm_proj.weight"].shape
    bound = projection.in_features ** -0.5  # nn.Linear's own init, as LAVIS's llm_proj starts
    assert 0 < projection.weight.abs().max() <= bound and projection.bias.abs().max() <= bound


def test_vicuna_logits_and_loss_equal_lavis(started, lavis_files, cases):
    """With what LAVIS drew at random on start-up (its projection, Vicuna's [PAD] rows) copied into ours, the
    rest being the BLIP-2 start, our model computes LAVIS's logits and loss."""
    model, processor, _ = started("vicuna")
    _, random_parts = lavis_instruct_start(lavis_files, "vicuna")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = load_file(LLM["vicuna"] / "model.safetensors")["model.embed_tokens.weight"].shape[0]
    assert processor.tokenizer.pad_token_id == vocab  # [PAD], as LAVIS adds it
    try:
        with torch.no_grad():
            model.language_projection.weight.copy_(random_parts["llm_proj.weight"])
            model.language_projection.bias.copy_(random_parts["llm_proj.bias"])
            for ours, key in ((model.get_input_embeddings(), "llm_model.model.embed_tokens.weight"),
                              (model.get_output_embeddings(), "llm_model.lm_head.weight")):
                rows = random_parts[key]
                ours.weight[vocab: vocab + rows.shape[0]] = rows.to(ours.weight.dtype)
        assert_logits_and_loss("vicuna", model, processor, cases)
    finally:
        model.load_state_dict(saved)


# ---- OPT: stage 2 + the text parts from BERT ---------------------------------------------------------
@pytest.mark.parametrize("layout", ["opt", "opt_full"])
def test_opt_start_holds_every_blip2_tensor_and_bert_text_parts(started, lavis_files, layout):
    model, _, report = started(layout)
    state = model_state(model)
    name = STAGE2["opt"] if layout == "opt" else "blip2_pretrained_opt2.7b_full.pth"
    lavis = lavis_state(lavis_files, name)
    assert_file_accounted_for(report, lavis, state, name)
    if layout == "opt":
        assert "opt_model.lm_head.weight" in lavis  # the tied alias survives the runner's filter, as T5's embed_tokens
        assert_file_accounted_for(report, lavis_state(lavis_files, EVA), state, EVA, vision_file=True)
    # the text parts stage 2 lacks: BERT's own tensors (what LAVIS's init_Qformer loads), [DEC] = the mean row
    bert = load_file(BERT / "model.safetensors")
    words = state["qformer.embeddings.word_embeddings.weight"]
    assert bit_equal(words[: bert["bert.embeddings.word_embeddings.weight"].shape[0]], bert["bert.embeddings.word_embeddings.weight"])
    assert words.shape[0] == bert["bert.embeddings.word_embeddings.weight"].shape[0] + 1
    torch.testing.assert_close(words[-1], bert["bert.embeddings.word_embeddings.weight"].mean(0), rtol=0, atol=1e-7)
    assert bit_equal(state["qformer.embeddings.position_embeddings.weight"], bert["bert.embeddings.position_embeddings.weight"])
    for layer in range(2):
        for part in ("intermediate.dense", "output.dense", "output.LayerNorm"):
            for kind in ("weight", "bias"):
                key = f"encoder.layer.{layer}.{part}.{kind}"
                assert bit_equal(state[f"qformer.{key}"], bert[f"bert.{key}"]), key
    # the full file's ViT and OPT (frozen, in fp16) give the same model as the runner's file + eva_vit_g.pth
    if layout == "opt_full":
        runner = model_state(started("opt")[0])
        assert state.keys() == runner.keys()
        assert all(torch.equal(state[k], runner[k]) for k in runner)


def test_opt_keeps_its_tokenizer(started):
    """LAVIS's Blip2OPT uses OPT's tokenizer as it is (pad `<pad>`); Vicuna's set-up (a new `[PAD]`, BOS =
    EOS = UNK = `</s>`) is Blip2VicunaInstruct's, and gives OPT a new, untrained vocabulary row."""
    model, processor, _ = started("opt")
    opt_rows = load_file(LLM["opt"] / "model.safetensors")["model.decoder.embed_tokens.weight"].shape[0]
    assert processor.tokenizer.pad_token == "<pad>"
    assert model.config.text_config.pad_token_id == 1
    assert model.get_input_embeddings().weight.shape[0] == opt_rows + 1  # + `<image>` only


# ---- what the loader must refuse or report ---------------------------------------------------------
def test_a_vit_other_than_vision_model_is_refused(lavis_files, tmp_path):
    eva = lavis_state(lavis_files, EVA)
    eva["blocks.1.mlp.fc2.weight"] = eva["blocks.1.mlp.fc2.weight"] + 1
    torch.save(eva, tmp_path / "other_eva.pth")
    with pytest.raises(ValueError, match="differs from"):
        start(lavis_files, "blip2_pretrained_flant5xl_full.pth", "t5", stage1=STAGE1, vision_model=str(tmp_path / "other_eva.pth"))
    # the same ViT given twice is fine (the file's and eva_vit_g.pth's are equal)
    start(lavis_files, "blip2_pretrained_flant5xl_full.pth", "t5", stage1=STAGE1, vision_model=EVA)


def test_stage1_keys_are_reported_too(started, lavis_files):
    """The stage-1 file's keys that the start does not take (its Q-Former layers, query tokens and ln_vision,
    superseded by stage 2's; its heads) are reported skipped with a reason, like every other file's."""
    model, _, report = started("t5")
    stage1 = lavis_state(lavis_files, STAGE1)
    text = {k for k, v in stage1.items() if k.startswith("Qformer.bert.")
            and QFORMER_TEXT_ONLY.match(k[len("Qformer.bert."):].replace("LayerNorm", "layernorm"))}
    missing = sorted(set(stage1) - text - skipped_keys(report))
    assert not missing, f"{len(missing)} keys of {STAGE1} neither used nor reported: {missing[:5]}"


def test_tensors_do_not_keep_the_files_precision(lavis_files):
    """LAVIS holds the frozen ViT's Linear layers in fp16 (vit_precision "fp16") and a whole state dict
    saves them so; eva_vit_g.pth is half precision throughout. Without `dtype` the model must still come
    in one precision (float32, as the Q-Former's), not in the dtypes the files happened to store."""
    for name, kwargs in (("blip2_pretrained_flant5xl_full.pth", dict(stage1=STAGE1)),
                         (STAGE2["t5"], dict(stage1=STAGE1, vision_model=EVA))):
        model, _, _ = start(lavis_files, name, "t5", **kwargs)
        dtypes = {p.dtype for p in [*model.vision_model.parameters(), *model.qformer.parameters()]}
        assert dtypes == {torch.float32}, (name, dtypes)
