#!/usr/bin/env python
"""Tiny BLIP-2s made by LAVIS's own classes, and LAVIS's InstructBLIP started from them the way the
paper's training started (CPU, deterministic).

Not part of the package or the test run: it runs in the LAVIS environment `make_reference.py`
describes (same venv, same LAVIS checkout), and reuses that script's import shims and helpers.

    LAVIS_REFERENCE_ROOT=/path/to/lavis_ref venv/bin/python tools/lavis_reference/make_blip2_reference.py
    python tools/lavis_reference/export_blip2_fixtures.py /path/to/lavis_ref/out_blip2   # project venv

What it builds (everything under $LAVIS_REFERENCE_ROOT/out_blip2/, deleted and rewritten):

1. `eva_vit_g.pth`: a tiny EVA ViT (LAVIS's `eva_vit.VisionTransformer`, 3 blocks, unprefixed keys,
   half precision) standing in for the released eva_vit_g.pth; LAVIS's models build 2 blocks and load
   it with `strict=False`, as `create_eva_vit_g` builds 39 of its 40.
   `bert/`: a tiny BERT (`BertForPreTraining`, saved by transformers 4.33) + the InstructBLIP fixtures'
   WordPiece vocabulary, standing in for bert-base-uncased (LAVIS's `init_Qformer` loads it with
   LAVIS's own `BertLMHeadModel.from_pretrained`). `opt/`: a tiny OPT + byte-level BPE tokenizer.
   The FlanT5 and Vicuna folders are the InstructBLIP fixtures' own (tests/data/lavis/{t5,vicuna}/llm),
   read as they are.
2. Stage 1: `Blip2Qformer`, then one stand-in "training" step (every trainable tensor moves), saved as
   `blip2_pretrained.pth` (the runner's layout: `{"model": state_dict}` minus the parameters without
   a gradient, i.e. without the frozen ViT) and `blip2_pretrained_full.pth` (`model.state_dict()`).
   Stage 2: `Blip2T5` and `Blip2OPT`, each `load_from_pretrained(stage 1)` (as
   projects/blip2/train/pretrain_stage2.yaml starts), a stand-in training step, saved the same two ways
   (`blip2_pretrained_flant5xl[_full].pth`, `blip2_pretrained_opt2.7b[_full].pth`).
3. LAVIS's InstructBLIP: `Blip2T5Instruct` + `load_from_pretrained(stage 1)` + `load_from_pretrained(stage 2
   FlanT5)` (the order of the commented-out code in blip2_t5_instruct.py `from_config`), and
   `Blip2VicunaInstruct` + `load_from_pretrained(stage 1)` (no stage-2 BLIP-2 with Vicuna exists).
   Saved: their BLIP-2-derived tensors (`instruct_{flant5,vicuna}_init.pth`), what LAVIS draws at random
   on start-up that no BLIP-2 file holds (the projection for Vicuna, Vicuna's `[PAD]` rows), and LLM
   logits / loss for both images with their instructions, batched (`cases.pt`).
"""
import json
import os
import shutil
import sys
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as ref  # noqa: E402  (installs the import shims, imports LAVIS's modules)

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertConfig, BertForPreTraining, BertTokenizer, GPT2Tokenizer  # noqa: E402

from lavis.models.blip2_models.blip2_qformer import Blip2Qformer  # noqa: E402
from lavis.models.blip2_models.blip2_t5 import Blip2T5  # noqa: E402
from lavis.models.blip2_models.blip2_opt import Blip2OPT  # noqa: E402

eva_vit, qformer_mod, blip2_mod = ref.eva_vit, ref.qformer_mod, ref.blip2_mod
OUT = os.path.join(ref.ROOT, "out_blip2")
PROJECT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "lavis")
T5_DIR = os.path.abspath(os.path.join(PROJECT_DATA, "t5", "llm"))
VICUNA_DIR = os.path.abspath(os.path.join(PROJECT_DATA, "vicuna", "llm"))
BERT_TOKENIZER_DIR = os.path.abspath(os.path.join(PROJECT_DATA, "t5", "bert_tokenizer"))

CFG = dict(
    seed=4321,
    eva_blocks=3,  # in eva_vit_g.pth; LAVIS's models build ref.CFG["vit"]["depth"] = 2 of them
    stage1=dict(cross_attention_freq=2, embed_dim=16, max_txt_len=32),
    stage2=dict(max_txt_len=32, prompt=""),
    common=dict(vit_model="eva_clip_g", img_size=ref.CFG["img_size"], drop_path_rate=0, use_grad_checkpoint=False,
                vit_precision="fp16", freeze_vit=True, num_query_token=ref.CFG["model_kwargs"]["num_query_token"]),
    training_step_std=0.02,
    bert=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=64,
              type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0),
    opt=dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
             word_embed_proj_dim=32, do_layer_norm_before=True, dropout=0.1, activation_function="relu",
             init_std=0.15, pad_token_id=1, bos_token_id=2, eos_token_id=2, enable_bias=True,
             tie_word_embeddings=True),
    opt_bpe_vocab=320,
)
INSTRUCT_KWARGS = dict(ref.CFG["model_kwargs"])
BLIP2_PARTS = ("visual_encoder.", "ln_vision.", "Qformer.", "query_tokens", "t5_proj.", "llm_proj.", "opt_proj.")


def jitter_(module, gen, std):
    """Every tensor moves by std·N(0,1) (BERT's and EVA's inits leave biases at 0 and norms at 1)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen).to(p.dtype))


# ----------------------------------------------------------------------------------------------
# 1. The stand-ins for eva_vit_g.pth, bert-base-uncased and facebook/opt-2.7b
# ----------------------------------------------------------------------------------------------
def vit(depth):
    vc = ref.CFG["vit"]
    return eva_vit.VisionTransformer(
        img_size=ref.CFG["img_size"], patch_size=vc["patch_size"], use_mean_pooling=vc["use_mean_pooling"],
        embed_dim=vc["embed_dim"], depth=depth, num_heads=vc["num_heads"], mlp_ratio=vc["mlp_ratio"],
        qkv_bias=vc["qkv_bias"], drop_path_rate=0.0, norm_layer=partial(torch.nn.LayerNorm, eps=vc["norm_layer_eps"]))


def build_eva_file(path):
    ref.seed_all(CFG["seed"] + 1)
    model = vit(CFG["eva_blocks"])
    jitter_(model, torch.Generator().manual_seed(CFG["seed"] + 2), 0.05)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)


def build_bert_folder(folder):
    shutil.copytree(BERT_TOKENIZER_DIR, folder)
    tokenizer = BertTokenizer.from_pretrained(folder)
    ref.seed_all(CFG["seed"] + 3)
    config = BertConfig(vocab_size=len(tokenizer), **CFG["bert"])
    bert = BertForPreTraining(config)
    jitter_(bert, torch.Generator().manual_seed(CFG["seed"] + 4), 0.02)
    bert.save_pretrained(folder, safe_serialization=True)


def build_opt_folder(folder, tmp):
    """OPT's tokenizer layout (GPT-2 byte-level BPE; <s>=0 <pad>=1 </s>=2 <unk>=3; BOS = EOS = </s>,
    prepended), trained on make_reference's corpus; OPTForCausalLM with tied embeddings, weights exactly
    representable in fp16 (LAVIS loads OPT with torch_dtype=float16)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import OPTConfig, OPTForCausalLM

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(ref.CORPUS.strip().split("\n") * 3, vocab_size=CFG["opt_bpe_vocab"], min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    bpe.save_model(tmp, "opt")
    tokenizer = GPT2Tokenizer(os.path.join(tmp, "opt-vocab.json"), os.path.join(tmp, "opt-merges.txt"),
                              bos_token="</s>", eos_token="</s>", unk_token="</s>", pad_token="<pad>",
                              add_bos_token=True, model_max_length=64)
    os.makedirs(folder)
    tokenizer.save_pretrained(folder)
    ref.seed_all(CFG["seed"] + 5)
    config = OPTConfig(vocab_size=len(tokenizer), **CFG["opt"])
    llm = OPTForCausalLM(config)
    ref.randomize_norms(llm, torch.Generator().manual_seed(CFG["seed"] + 6), ["LayerNorm"])
    ref.round_to(llm, torch.float16)
    llm.save_pretrained(folder, safe_serialization=True)


# ----------------------------------------------------------------------------------------------
# 2. LAVIS's constructors, reading the stand-ins (only the download points are redirected)
# ----------------------------------------------------------------------------------------------
def patch_lavis(bert_dir, eva_path):
    vc = ref.CFG["vit"]

    def create_eva_vit_g(img_size=224, drop_path_rate=0.4, use_checkpoint=False, precision="fp16"):
        # lavis/models/eva_vit.py create_eva_vit_g with the tiny sizes and the local file: build, then
        # interpolate_pos_embed, load_state_dict(strict=False) (the file's last block is not built), fp16
        model = eva_vit.VisionTransformer(
            img_size=img_size, patch_size=vc["patch_size"], use_mean_pooling=False, embed_dim=vc["embed_dim"],
            depth=vc["depth"], num_heads=vc["num_heads"], mlp_ratio=vc["mlp_ratio"], qkv_bias=True,
            drop_path_rate=drop_path_rate, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_checkpoint=use_checkpoint)
        state_dict = torch.load(eva_path, map_location="cpu")
        eva_vit.interpolate_pos_embed(model, state_dict)
        incompatible = model.load_state_dict(state_dict, strict=False)
        assert not incompatible.missing_keys and all(k.startswith(f"blocks.{vc['depth']}.") for k in incompatible.unexpected_keys)
        if precision == "fp16":
            eva_vit.convert_weights_to_fp16(model)
        return model

    def local(name):
        assert name == "bert-base-uncased", name
        return bert_dir

    class LocalBertTokenizer:
        @staticmethod
        def from_pretrained(name, **kw):
            return BertTokenizer.from_pretrained(local(name), **kw)

    class LocalBertConfig:
        @staticmethod
        def from_pretrained(name, **kw):
            return qformer_mod.BertConfig.from_pretrained(local(name), **kw)

    class LocalBertLMHeadModel:
        @staticmethod
        def from_pretrained(name, **kw):
            return qformer_mod.BertLMHeadModel.from_pretrained(local(name), **kw)  # LAVIS's class, real loading

    blip2_mod.create_eva_vit_g = create_eva_vit_g
    blip2_mod.BertTokenizer = LocalBertTokenizer
    blip2_mod.BertConfig = LocalBertConfig
    blip2_mod.BertLMHeadModel = LocalBertLMHeadModel


def runner_state_dict(model):
    """lavis/runners/runner_base.py `_save_checkpoint`: the state dict minus the parameters that do not
    require a gradient (buffers and aliases of tied parameters stay)."""
    param_grad_dic = {k: v.requires_grad for (k, v) in model.named_parameters()}
    state_dict = model.state_dict()
    for k in list(state_dict.keys()):
        if k in param_grad_dic.keys() and not param_grad_dic[k]:
            del state_dict[k]
    return state_dict


def training_step(model, seed):
    """Stands in for a stage of training: every tensor that requires a gradient moves."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(CFG["training_step_std"] * torch.randn(p.shape, generator=gen).to(p.dtype))


def describe(state):
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()}


def load_message(msg):
    return dict(missing_keys=sorted(msg.missing_keys), unexpected_keys=sorted(msg.unexpected_keys))


def save_stage(model, name, files):
    for layout, state in (("runner", runner_state_dict(model)), ("full", model.state_dict())):
        fname = f"{name}.pth" if layout == "runner" else f"{name}_full.pth"
        torch.save({"model": state}, os.path.join(OUT, fname))
        files[fname] = dict(lavis_class=type(model).__name__, layout=layout, keys=describe(state))


def build_blip2s(files, bert_dir, opt_dir):
    ref.seed_all(CFG["seed"] + 10)
    stage1 = Blip2Qformer(**CFG["common"], **CFG["stage1"])
    training_step(stage1, CFG["seed"] + 11)
    save_stage(stage1, "blip2_pretrained", files)
    stage1_path = os.path.join(OUT, "blip2_pretrained.pth")

    for cls, name, kw, seed in ((Blip2T5, "blip2_pretrained_flant5xl", dict(t5_model=T5_DIR), 20),
                                (Blip2OPT, "blip2_pretrained_opt2.7b", dict(opt_model=opt_dir), 30)):
        ref.seed_all(CFG["seed"] + seed)
        model = cls(**CFG["common"], **CFG["stage2"], **kw)
        msg = model.load_from_pretrained(stage1_path)  # pretrain_stage2.yaml: "intialize stage 2 ... from stage 1"
        training_step(model, CFG["seed"] + seed + 1)
        save_stage(model, name, files)
        files[f"{name}.pth"]["loaded_stage1"] = load_message(msg)
    return stage1_path


# ----------------------------------------------------------------------------------------------
# 3. LAVIS's InstructBLIP started from them, and its outputs
# ----------------------------------------------------------------------------------------------
def build_instruct(kind, stage_paths):
    ref.seed_all(CFG["seed"] + (40 if kind == "t5" else 50))
    if kind == "vicuna":
        model = ref.Blip2VicunaInstruct(llm_model=VICUNA_DIR, **INSTRUCT_KWARGS)
    else:
        model = ref.Blip2T5Instruct(t5_model=T5_DIR, num_few_shot_examples=0, few_shot_prob=0, **INSTRUCT_KWARGS)
    startup = {k: v.detach().clone() for k, v in model.state_dict().items()}
    messages = [dict(file=os.path.basename(p), **load_message(model.load_from_pretrained(p))) for p in stage_paths]
    state = model.state_dict()
    blip2_parts = {k: v.detach().clone() for k, v in state.items() if k.startswith(BLIP2_PARTS)}
    # what no BLIP-2 file gave: LAVIS's start-up draws, unchanged by the loads
    untouched = sorted(k for k in blip2_parts if torch.equal(blip2_parts[k], startup[k]) and not k.endswith("position_ids"))
    random_parts = {}
    if kind == "vicuna":
        random_parts = {k: blip2_parts.pop(k) for k in ("llm_proj.weight", "llm_proj.bias")}
        vocab = transformers.AutoConfig.from_pretrained(VICUNA_DIR).vocab_size  # rows from here on: LAVIS's [PAD]
        for k in ("llm_model.model.embed_tokens.weight", "llm_model.lm_head.weight"):
            random_parts[k] = state[k][vocab:].detach().clone()
    return model, blip2_parts, random_parts, messages, untouched


def instruct_cases(kind, model):
    model.float()
    model.eval()
    tok_log, rec, inner = ref.install_recorders(model, kind)
    _, images = ref.make_images()
    idx = [0, 1]
    samples = dict(image=torch.cat(images), text_input=[ref.SAMPLES[i]["text_input"] for i in idx],
                   text_output=[ref.SAMPLES[i]["text_output"] for i in idx])
    rec["capture_fwd"] = True
    with torch.no_grad():
        out = model(dict(samples))
    rec["capture_fwd"] = False
    assert len(rec["fwd"]) == 1
    return [dict(name="batch01", sample_idx=idx, samples=samples, loss=out["loss"].clone(), llm_call=rec["fwd"][0],
                 tokenizer_calls=list(tok_log), intermediates=dict(inner))]


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tmp = os.path.join(OUT, "_tmp")
    os.makedirs(tmp)
    eva_path, bert_dir, opt_dir = os.path.join(OUT, "eva_vit_g.pth"), os.path.join(OUT, "bert"), os.path.join(OUT, "opt")
    build_eva_file(eva_path)
    build_bert_folder(bert_dir)
    build_opt_folder(opt_dir, tmp)
    patch_lavis(bert_dir, eva_path)

    files = {"eva_vit_g.pth": dict(layout="eva", keys=describe(torch.load(eva_path)))}
    stage1_path = build_blip2s(files, bert_dir, opt_dir)
    _, images = ref.make_images()
    cases = dict(meta=dict(lavis_commit=ref.LAVIS_COMMIT, transformers=transformers.__version__, torch=torch.__version__,
                           config=CFG, instruct_config=ref.CFG, files=files),
                 images=dict(pixel_values=images))
    plan = {"t5": [stage1_path, os.path.join(OUT, "blip2_pretrained_flant5xl.pth")], "vicuna": [stage1_path]}
    for kind, paths in plan.items():
        model, blip2_parts, random_parts, messages, untouched = build_instruct(kind, paths)
        name = "instruct_flant5_init.pth" if kind == "t5" else "instruct_vicuna_init.pth"
        torch.save({"model": blip2_parts, "lavis_startup_random": random_parts}, os.path.join(OUT, name))
        cases[kind] = dict(lavis_class=type(model).__name__, loaded=messages, init_file=name,
                           not_loaded_from_blip2=untouched,
                           requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
                           loss=instruct_cases(kind, model))
    cases = ref.plain(cases)
    torch.save(cases, os.path.join(OUT, "cases.pt"))
    torch.load(os.path.join(OUT, "cases.pt"), weights_only=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(ref.to_jsonable(cases), f, indent=1)
    shutil.rmtree(tmp)
    print(json.dumps({k: dict(loss=float(cases[k]["loss"][0]["loss"]), loaded=cases[k]["loaded"],
                              not_loaded=cases[k]["not_loaded_from_blip2"]) for k in plan}, indent=1)[:6000])


if __name__ == "__main__":
    main()
