#!/usr/bin/env python
"""Build tiny InstructBLIP models with Salesforce LAVIS's own model classes (CPU, fp32)
and save their weights + reference outputs.

Not part of the package or the test run: it needs LAVIS's source and the transformers LAVIS pins,
in an environment of their own (never vendored here). Set up, from a folder of your choice:

    python3 -m venv venv && venv/bin/pip install torch==2.13.0 transformers==4.33.2 tokenizers==0.13.3 \
        sentencepiece protobuf numpy omegaconf packaging && venv/bin/pip install --no-deps timm==0.4.12
    git clone https://github.com/salesforce/LAVIS && git -C LAVIS checkout 506965b9c4a18c1e565bd32acaccabe0198433f7
    LAVIS_REFERENCE_ROOT=$PWD venv/bin/python /path/to/tools/lavis_reference/make_reference.py
    python tools/lavis_reference/export_fixtures.py $PWD/out   # -> tests/data/lavis/, with the project's venv

Everything is written under $LAVIS_REFERENCE_ROOT/out/.  Deterministic (seeded, 1 thread): two runs
give byte-identical files.
"""
import copy
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import types

ROOT = os.environ.get("LAVIS_REFERENCE_ROOT", os.path.dirname(os.path.abspath(__file__)))
LAVIS_DIR = os.path.join(ROOT, "LAVIS")
OUT = os.path.join(ROOT, "out")
LAVIS_COMMIT = "506965b9c4a18c1e565bd32acaccabe0198433f7"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers
import sentencepiece as spm


def seed_all(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# ----------------------------------------------------------------------------------------------
# 1. Import shims.  Only import-time plumbing is stubbed; all model code is LAVIS's own file.
# ----------------------------------------------------------------------------------------------
def _pkg(name, path=None):
    m = types.ModuleType(name)
    if path is not None:
        m.__path__ = [path]
    sys.modules[name] = m
    return m


def _load_file(modname, filepath):
    spec = importlib.util.spec_from_file_location(modname, filepath)
    m = importlib.util.module_from_spec(spec)
    sys.modules[modname] = m
    spec.loader.exec_module(m)
    return m


def install_shims():
    # --- timm 0.4.12 (pinned by LAVIS).  timm/__init__ imports timm.data -> torchvision, so we
    # load only the four real timm source files eva_vit.py needs, without running timm/__init__.
    tdir = os.path.dirname(importlib.util.find_spec("timm").origin)
    _pkg("timm", tdir)
    _pkg("timm.models", os.path.join(tdir, "models"))
    layers = _pkg("timm.models.layers", os.path.join(tdir, "models", "layers"))
    helpers = _load_file("timm.models.layers.helpers", os.path.join(tdir, "models/layers/helpers.py"))
    drop = _load_file("timm.models.layers.drop", os.path.join(tdir, "models/layers/drop.py"))
    winit = _load_file("timm.models.layers.weight_init", os.path.join(tdir, "models/layers/weight_init.py"))
    layers.drop_path = drop.drop_path
    layers.to_2tuple = helpers.to_2tuple
    layers.trunc_normal_ = winit.trunc_normal_
    _load_file("timm.models.registry", os.path.join(tdir, "models/registry.py"))

    # --- lavis packages without running their __init__ (they import every dataset/processor)
    L = os.path.join(LAVIS_DIR, "lavis")
    _pkg("lavis", L)
    common = _pkg("lavis.common", os.path.join(L, "common"))
    _pkg("lavis.models", os.path.join(L, "models"))
    _pkg("lavis.models.blip2_models", os.path.join(L, "models", "blip2_models"))

    # real registry (no imports of its own)
    reg = _load_file("lavis.common.registry", os.path.join(L, "common/registry.py"))
    common.registry = reg

    # dist_utils: real file imports timm.models.hub (-> torchvision); stub the few helpers used
    du = _pkg("lavis.common.dist_utils")

    def download_cached_file(url, check_hash=True, progress=False):
        raise RuntimeError("download disabled in reference build: %s" % url)

    du.download_cached_file = download_cached_file
    du.is_dist_avail_and_initialized = lambda: False
    du.get_rank = lambda: 0
    du.get_world_size = lambda: 1
    du.is_main_process = lambda: True
    du.main_process = lambda f: f
    common.dist_utils = du

    # utils: real file imports torchvision/iopath/pandas; only is_url/get_abs_path are used
    ut = _pkg("lavis.common.utils")
    ut.is_url = lambda s: str(s).startswith(("http://", "https://"))
    ut.get_abs_path = lambda rel: os.path.join(L, rel)
    common.utils = ut

    _load_file("lavis.common.logger", os.path.join(L, "common/logger.py"))  # real
    # clip_vit: imports fairscale, never used for eva_clip_g
    cv = _pkg("lavis.models.clip_vit")

    def create_clip_vit_L(*a, **k):
        raise RuntimeError("clip_vit not available in reference build")

    cv.create_clip_vit_L = create_clip_vit_L


install_shims()

import lavis.models.base_model  # noqa: E402  (real)
sys.modules["lavis.models"].BaseModel = sys.modules["lavis.models.base_model"].BaseModel  # registry.register_model checks subclassing
import lavis.models.eva_vit as eva_vit  # noqa: E402  (real)
import lavis.models.blip2_models.Qformer as qformer_mod  # noqa: E402  (real)
import lavis.models.blip2_models.blip2 as blip2_mod  # noqa: E402  (real)
from lavis.models.blip2_models.blip2_vicuna_instruct import Blip2VicunaInstruct  # noqa: E402
from lavis.models.blip2_models.blip2_t5_instruct import Blip2T5Instruct  # noqa: E402
from functools import partial  # noqa: E402
from transformers import BertTokenizer, BertConfig, LlamaTokenizer, T5Tokenizer, T5TokenizerFast  # noqa: E402

# ----------------------------------------------------------------------------------------------
# 2. Configuration
# ----------------------------------------------------------------------------------------------
CFG = dict(
    seed=1234,
    img_size=32,
    vit=dict(patch_size=8, embed_dim=48, depth=2, num_heads=4, mlp_ratio=4.3637, qkv_bias=True,
             use_mean_pooling=False, drop_path_rate=0.0, norm_layer_eps=1e-6, precision="fp16"),
    qformer=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, cross_attention_freq=2, num_query_token=8,
                 hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, type_vocab_size=2, initializer_range=0.02,
                 pad_token_id=0, position_embedding_type="absolute"),
    llama=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=256, rms_norm_eps=1e-6, hidden_act="silu",
               initializer_range=0.15, bos_token_id=1, eos_token_id=2, pad_token_id=0,
               tie_word_embeddings=False),
    t5=dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False, relative_attention_num_buckets=32,
            relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=1.0),
    spm_llama=dict(vocab_size=384, model_type="bpe", byte_fallback=False),
    spm_t5=dict(vocab_size=284, model_type="unigram", extra_ids=100),
    model_kwargs=dict(vit_model="eva_clip_g", img_size=32, drop_path_rate=0, use_grad_checkpoint=False,
                      vit_precision="fp16", freeze_vit=True, num_query_token=8, prompt="",
                      max_txt_len=128, max_output_txt_len=256, apply_lemmatizer=False,
                      qformer_text_input=True),
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
)

SAMPLES = [
    dict(text_input="What is the color of the ball? Short answer:", text_output="red",
         question="What is the color of the ball?"),
    dict(text_input="A short image description:", text_output="a cat on a mat",
         question="What is on the mat?"),
]

GEN_SETTINGS = {
    "greedy": dict(num_beams=1),
    "beam5": dict(num_beams=5),
    "beam5_lp0": dict(num_beams=5, length_penalty=0),
    "greedy_rp": dict(num_beams=1, repetition_penalty=1.5),
    "beam5_rp": dict(num_beams=5, repetition_penalty=1.5),
}
GEN_LENGTHS = {"len10": dict(max_length=10, min_length=1), "len30": dict(max_length=30, min_length=8)}
# explicit defaults so that LAVIS's own defaults (repetition_penalty=1.5, length_penalty=1) are
# only overridden where the setting says so
GEN_BASE = dict(use_nucleus_sampling=False, num_beams=1, repetition_penalty=1.0, length_penalty=1.0,
                num_captions=1)

CORPUS = """What is the color of the ball? Short answer: red
What is the color of the car? Short answer: blue
What is the color of the cat? Short answer: black
What is the color of the sky? Short answer: blue
What is the color of the grass? Short answer: green
What is on the mat? Short answer: a cat
What is in the image? Short answer: a dog
How many balls are there? Short answer: two
Is there a cat in the picture? Short answer: yes
Is the ball red? Short answer: no
A short image description: a cat on a mat
A short image description: a red ball on the grass
A short image description: a dog playing with a ball
A short image description: a man riding a bike in the street
A short image description: two people sitting at a table
A short image description: a white plate with food on it
Question: what is the man holding? Answer: a bat
Question: where is the dog? Answer: on the sofa
Question: what color is the shirt? Answer: white
Describe the image in detail. The picture shows a small brown dog running on green grass near a tree.
Write a short description for the image. A woman is standing next to a yellow car.
Please provide a short depiction of the picture. There is a cat sleeping on a blue mat.
Based on the image, respond to this question with a short answer: what animal is this? cat
The quick brown fox jumps over the lazy dog.
A photo of a bird flying over the water.
An image of a house with a red roof and a green door.
The children are playing football in the park on a sunny day.
There are three apples and one orange in the bowl.
The train is leaving the station at night.
She is reading a book by the window while it rains.
"""

BERT_WORDS = """what is the color of ball short answer a image description cat on mat red blue green
black white yellow brown dog car sky grass in how many are there picture yes no two one three
question where man holding bat sofa shirt describe detail shows small running near tree write
for woman standing next to please provide depiction sleeping based respond this with animal photo
bird flying over water house roof door children playing football park sunny day apples orange bowl
train leaving station night she reading book by window while it rains and at people sitting table
plate food riding bike street quick fox jumps lazy an be has have was were do does can you i my""".split()


# ----------------------------------------------------------------------------------------------
# 3. Tokenizers and tiny LLMs
# ----------------------------------------------------------------------------------------------
def build_bert_tokenizer(folder):
    vocab = ["[PAD]"] + ["[unused%d]" % i for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~")
    vocab += list("abcdefghijklmnopqrstuvwxyz")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab += ["##s", "##ing", "##ed", "##er", "##ly", "##es"]
    for w in BERT_WORDS:
        if w not in vocab:
            vocab.append(w)
    vocab = list(dict.fromkeys(vocab))
    os.makedirs(folder, exist_ok=True)
    vf = os.path.join(folder, "vocab.txt")
    with open(vf, "w") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizer(vf, do_lower_case=True, model_max_length=512)
    tok.save_pretrained(folder)
    return tok


def train_spm(prefix, kind):
    sentences = [l for l in CORPUS.strip().split("\n")] * 3
    if kind == "llama":
        c = CFG["spm_llama"]
        kw = dict(model_type=c["model_type"], vocab_size=c["vocab_size"], unk_id=0, bos_id=1, eos_id=2,
                  pad_id=-1, byte_fallback=c["byte_fallback"], split_digits=True,
                  normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
                  allow_whitespace_only_pieces=True)
    else:
        c = CFG["spm_t5"]
        kw = dict(model_type=c["model_type"], vocab_size=c["vocab_size"], pad_id=0, eos_id=1, unk_id=2,
                  bos_id=-1, normalization_rule_name="identity", add_dummy_prefix=True,
                  remove_extra_whitespaces=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=prefix, character_coverage=1.0, num_threads=1,
        hard_vocab_limit=False, seed_sentencepiece_size=100000, shuffle_input_sentence=False,
        minloglevel=2, **kw)
    return prefix + ".model"


def round_to(model, dtype):
    """Make every floating tensor exactly representable in `dtype` (LAVIS loads Vicuna in fp16 and
    casts T5 params to bf16; with this the cast is lossless, so llm/ equals the LLM in lavis_full.pth
    except for rows LAVIS adds by resize_token_embeddings)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())


def randomize_norms(model, gen, cls_names):
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__ in cls_names:
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=gen))


def build_llama_folder(folder, tmp):
    from transformers import LlamaConfig, LlamaForCausalLM
    sp_model = train_spm(os.path.join(tmp, "llama_spm"), "llama")
    tok = LlamaTokenizer(vocab_file=sp_model)  # defaults like vicuna: <s>/</s>/<unk>, add_bos
    seed_all(CFG["seed"] + 1)
    cfg = LlamaConfig(vocab_size=len(tok), **CFG["llama"])
    llm = LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(CFG["seed"] + 2)
    randomize_norms(llm, gen, ["LlamaRMSNorm"])
    round_to(llm, torch.float16)
    os.makedirs(folder, exist_ok=True)
    llm.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return tok, cfg


def build_t5_folder(folder, tmp):
    from transformers import T5Config, T5ForConditionalGeneration
    sp_model = train_spm(os.path.join(tmp, "t5_spm"), "t5")
    slow = T5Tokenizer(vocab_file=sp_model, extra_ids=CFG["spm_t5"]["extra_ids"])
    os.makedirs(folder, exist_ok=True)
    slow.save_pretrained(folder)
    fast = T5TokenizerFast.from_pretrained(folder)  # converts spiece.model -> tokenizer.json
    fast.save_pretrained(folder)
    seed_all(CFG["seed"] + 3)
    cfg = T5Config(vocab_size=len(fast), **CFG["t5"])
    t5 = T5ForConditionalGeneration(cfg)
    gen = torch.Generator().manual_seed(CFG["seed"] + 4)
    randomize_norms(t5, gen, ["T5LayerNorm"])
    with torch.no_grad():  # HF inits an untied T5 lm_head with std=1.0 -> logits std ~8; use 0.3
        t5.lm_head.weight.copy_(0.3 * torch.randn(t5.lm_head.weight.shape, generator=gen))
    round_to(t5, torch.bfloat16)
    assert not torch.equal(t5.lm_head.weight, t5.shared.weight)
    t5.save_pretrained(folder, safe_serialization=True)
    return fast, cfg


# ----------------------------------------------------------------------------------------------
# 4. Make LAVIS's constructors local (monkeypatch only the download points)
# ----------------------------------------------------------------------------------------------
def patch_lavis(bert_dir, qf_layers, xattn_freq=None):
    vc = CFG["vit"]

    def tiny_create_eva_vit_g(img_size=224, drop_path_rate=0.4, use_checkpoint=False, precision="fp16"):
        # mirrors lavis/models/eva_vit.py create_eva_vit_g: same class, use_mean_pooling=False,
        # LayerNorm eps 1e-6, no final norm; 39 of EVA-g's 40 blocks are *constructed* there and the
        # 40th block of eva_vit_g.pth is dropped by load_state_dict(strict=False).  Here depth=2 and
        # no checkpoint is loaded; fp16 conversion of Linear/Conv weights kept as in LAVIS.
        model = eva_vit.VisionTransformer(
            img_size=img_size, patch_size=vc["patch_size"], use_mean_pooling=vc["use_mean_pooling"],
            embed_dim=vc["embed_dim"], depth=vc["depth"], num_heads=vc["num_heads"], mlp_ratio=vc["mlp_ratio"],
            qkv_bias=vc["qkv_bias"], drop_path_rate=drop_path_rate,
            norm_layer=partial(torch.nn.LayerNorm, eps=vc["norm_layer_eps"]), use_checkpoint=use_checkpoint)
        if precision == "fp16":
            eva_vit.convert_weights_to_fp16(model)
        return model

    blip2_mod.create_eva_vit_g = tiny_create_eva_vit_g

    class _LocalBertTokenizer:
        @staticmethod
        def from_pretrained(name, **kw):
            assert name == "bert-base-uncased"
            return BertTokenizer.from_pretrained(bert_dir, **kw)

    blip2_mod.BertTokenizer = _LocalBertTokenizer
    base_vocab = len(BertTokenizer.from_pretrained(bert_dir))
    qc = CFG["qformer"]

    class _TinyBertConfig:
        @staticmethod
        def from_pretrained(name, **kw):
            assert name == "bert-base-uncased"
            # like bert-base-uncased's config.json (vocab = tokenizer size *before* [DEC]; LAVIS's
            # resize_token_embeddings(len(tokenizer)) then adds the [DEC] row), just tiny
            return BertConfig(vocab_size=base_vocab, hidden_size=qc["hidden_size"],
                              num_hidden_layers=qf_layers, num_attention_heads=qc["num_attention_heads"],
                              intermediate_size=qc["intermediate_size"], hidden_act=qc["hidden_act"],
                              hidden_dropout_prob=qc["hidden_dropout_prob"],
                              attention_probs_dropout_prob=qc["attention_probs_dropout_prob"],
                              max_position_embeddings=qc["max_position_embeddings"],
                              type_vocab_size=qc["type_vocab_size"], initializer_range=qc["initializer_range"],
                              layer_norm_eps=qc["layer_norm_eps"], pad_token_id=qc["pad_token_id"],
                              position_embedding_type=qc["position_embedding_type"])

    class _RandomInitBertLMHead:
        @staticmethod
        def from_pretrained(name, config):
            assert name == "bert-base-uncased"
            return qformer_mod.BertLMHeadModel(config)  # real class, random init (init_weights)

    blip2_mod.BertConfig = _TinyBertConfig
    blip2_mod.BertLMHeadModel = _RandomInitBertLMHead

    orig = blip2_mod.Blip2Base.__dict__["init_Qformer"].__func__
    if xattn_freq is None:
        blip2_mod.Blip2Base.init_Qformer = classmethod(orig)
    else:
        def init_Qformer(cls, num_query_token, vision_width, cross_attention_freq=2):
            return orig(cls, num_query_token, vision_width, cross_attention_freq=xattn_freq)
        blip2_mod.Blip2Base.init_Qformer = classmethod(init_Qformer)


def randomize_lavis_parts(model, gen):
    """Re-init the weights LAVIS leaves at 0/1 (biases, LayerNorms, eva q_bias/v_bias) in the parts
    that LAVIS itself owns (vision encoder, ln_vision, Q-Former, query_tokens, projection)."""
    proj = model.llm_proj if hasattr(model, "llm_proj") else model.t5_proj
    parts = [model.visual_encoder, model.ln_vision, model.Qformer, proj]
    with torch.no_grad():
        for part in parts:
            for n, p in part.named_parameters():
                if p.dim() == 1:
                    if torch.all(p == 1):
                        p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                    else:
                        p.copy_(p + 0.02 * torch.randn(p.shape, generator=gen))
                elif float(p.float().std()) == 0.0:
                    p.copy_(0.02 * torch.randn(p.shape, generator=gen))
        model.query_tokens.copy_(0.02 * torch.randn(model.query_tokens.shape, generator=gen))


# ----------------------------------------------------------------------------------------------
# 5. Recording helpers
# ----------------------------------------------------------------------------------------------
class RecordingTokenizer:
    """Transparent proxy around a HF tokenizer that logs each __call__ (LAVIS sets
    padding_side/truncation_side on it; those are forwarded)."""

    def __init__(self, tok, name, log):
        object.__setattr__(self, "_tok", tok)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_log", log)

    def __call__(self, *args, **kwargs):
        out = self._tok(*args, **kwargs)
        text = args[0] if args else kwargs.get("text")
        self._log.append(dict(
            tokenizer=self._name, text=list(text) if isinstance(text, (list, tuple)) else text,
            kwargs={k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))},
            padding_side=self._tok.padding_side, truncation_side=self._tok.truncation_side,
            input_ids=out["input_ids"].clone(), attention_mask=out["attention_mask"].clone()))
        return out

    def __getattr__(self, k):
        return getattr(self._tok, k)

    def __setattr__(self, k, v):
        setattr(self._tok, k, v)


def plain(x):
    """Only dict/list/str/int/float/bool/None/Tensor survive (weights_only=True loadable)."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone().contiguous()
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    return str(x)


def to_jsonable(x):
    if isinstance(x, torch.Tensor):
        if x.numel() <= 4096 and x.dtype in (torch.long, torch.int, torch.bool):
            return {"tensor_int": x.tolist(), "shape": list(x.shape)}
        return {"tensor": str(x.dtype), "shape": list(x.shape)}
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return str(x)


def make_images():
    gen = torch.Generator().manual_seed(CFG["seed"] + 100)
    mean = torch.tensor(CFG["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(CFG["image_std"]).view(1, 3, 1, 1)
    raw = [torch.rand(1, 3, CFG["img_size"], CFG["img_size"], generator=gen) for _ in SAMPLES]
    return raw, [(r - mean) / std for r in raw]


# ----------------------------------------------------------------------------------------------
# 6. Build + run one kind
# ----------------------------------------------------------------------------------------------
def build_model(kind, llm_dir, bert_dir, qf_layers, xattn_freq=None, seed_offset=0):
    patch_lavis(bert_dir, qf_layers, xattn_freq)
    seed_all(CFG["seed"] + 10 + seed_offset)
    kw = dict(CFG["model_kwargs"])
    if kind == "vicuna":
        model = Blip2VicunaInstruct(llm_model=llm_dir, **kw)
    else:
        model = Blip2T5Instruct(t5_model=llm_dir, num_few_shot_examples=0, few_shot_prob=0, **kw)
    model.float()
    randomize_lavis_parts(model, torch.Generator().manual_seed(CFG["seed"] + 20 + seed_offset))
    model.eval()
    return model


def llm_of(model, kind):
    return model.llm_model if kind == "vicuna" else model.t5_model


def install_recorders(model, kind):
    tok_log = []
    model.tokenizer = RecordingTokenizer(model.tokenizer, "qformer_bert", tok_log)
    if kind == "vicuna":
        model.llm_tokenizer = RecordingTokenizer(model.llm_tokenizer, "llm_tokenizer", tok_log)
    else:
        model.t5_tokenizer = RecordingTokenizer(model.t5_tokenizer, "t5_tokenizer", tok_log)
        model.t5_output_tokenizer = RecordingTokenizer(model.t5_output_tokenizer, "t5_output_tokenizer", tok_log)

    state = {"capture_fwd": False, "fwd": [], "gen": []}
    llm = llm_of(model, kind)

    def fwd_hook(mod, args, kwargs, output):
        if not state["capture_fwd"]:
            return
        rec = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
               for k, v in kwargs.items() if k in ("inputs_embeds", "attention_mask", "labels",
                                                    "decoder_attention_mask", "decoder_input_ids")}
        rec["logits"] = output.logits.detach().clone()
        rec["loss"] = output.loss.detach().clone()
        state["fwd"].append(rec)

    llm.register_forward_hook(fwd_hook, with_kwargs=True)

    inner = {}

    def hook_out(name):
        def h(mod, args, output):
            if state["capture_fwd"]:
                o = output.last_hidden_state if hasattr(output, "last_hidden_state") else output
                inner[name] = o.detach().clone()
        return h

    model.visual_encoder.register_forward_hook(hook_out("visual_encoder_out"))
    model.ln_vision.register_forward_hook(hook_out("image_embeds"))
    model.Qformer.bert.register_forward_hook(hook_out("qformer_last_hidden_state"))
    (model.llm_proj if kind == "vicuna" else model.t5_proj).register_forward_hook(hook_out("proj_out"))

    orig_generate = llm.generate

    def generate_wrapper(*args, **kwargs):
        out = orig_generate(*args, **kwargs)
        state["gen"].append(dict(
            kwargs={k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)},
            inputs_embeds=kwargs["inputs_embeds"].detach().clone(),
            attention_mask=kwargs["attention_mask"].detach().clone(),
            raw_output_ids=out.detach().clone()))  # before LAVIS's in-place `outputs[outputs == 0] = 2`
        return out

    llm.generate = generate_wrapper
    return tok_log, state, inner


def run_kind(kind, out_dir, bert_dir, llm_dir):
    model = build_model(kind, llm_dir, bert_dir, CFG["qformer"]["num_hidden_layers"])
    tok_log, state, inner = install_recorders(model, kind)
    raw_imgs, imgs = make_images()

    cases = dict(meta=dict(kind=kind, lavis_commit=LAVIS_COMMIT, transformers=transformers.__version__,
                           torch=torch.__version__, config=CFG,
                           lavis_class=type(model).__name__,
                           llm_tokenizer_specials=None),
                 images=dict(raw=raw_imgs, pixel_values=imgs),
                 loss=[], generate=[], predict_answers=[])
    ltok = model.llm_tokenizer._tok if kind == "vicuna" else model.t5_tokenizer._tok
    cases["meta"]["llm_tokenizer_specials"] = dict(
        len=len(ltok), bos=(ltok.bos_token, ltok.bos_token_id), eos=(ltok.eos_token, ltok.eos_token_id),
        unk=(ltok.unk_token, ltok.unk_token_id), pad=(ltok.pad_token, ltok.pad_token_id),
        all_special_ids=list(ltok.all_special_ids))
    cases["meta"]["llm_generation_config"] = llm_of(model, kind).generation_config.to_dict()
    cases["meta"]["qformer_tokenizer_len"] = len(model.tokenizer._tok)

    # ---- loss: each sample alone, and both batched
    batches = [("sample0", [0]), ("sample1", [1]), ("batch01", [0, 1])]
    for name, idx in batches:
        samples = dict(image=torch.cat([imgs[i] for i in idx]),
                       text_input=[SAMPLES[i]["text_input"] for i in idx],
                       text_output=[SAMPLES[i]["text_output"] for i in idx])
        tok_log.clear(); state["fwd"].clear(); inner.clear()
        state["capture_fwd"] = True
        with torch.no_grad():
            out = model(samples)
        state["capture_fwd"] = False
        assert len(state["fwd"]) == 1
        cases["loss"].append(dict(name=name, sample_idx=idx, samples=dict(samples), loss=out["loss"].clone(),
                                  llm_call=state["fwd"][0], tokenizer_calls=list(tok_log),
                                  intermediates=dict(inner)))

    # ---- generate
    for mode, idx in [("sample0", [0]), ("sample1", [1]), ("batch01", [0, 1])]:
        for sname, sset in GEN_SETTINGS.items():
            for lname, lset in GEN_LENGTHS.items():
                kwargs = dict(GEN_BASE); kwargs.update(sset); kwargs.update(lset)
                samples = dict(image=torch.cat([imgs[i] for i in idx]),
                               prompt=[SAMPLES[i]["text_input"] for i in idx])
                tok_log.clear(); state["gen"].clear()
                with torch.no_grad():
                    text = model.generate(dict(samples), **kwargs)
                g = state["gen"][0]
                rec = dict(name=f"{mode}/{sname}/{lname}", mode=mode, sample_idx=idx, setting=sname,
                           length=lname, generate_kwargs=kwargs, prompt=samples["prompt"], output_text=text,
                           llm_generate_kwargs=g["kwargs"], raw_output_ids=g["raw_output_ids"],
                           tokenizer_calls=list(tok_log))
                if sname == "greedy" and lname == "len10":
                    rec["llm_inputs_embeds"] = g["inputs_embeds"]
                    rec["llm_attention_mask"] = g["attention_mask"]
                cases["generate"].append(rec)

    # ---- predict_answers with its defaults (prompt="" -> text_input used verbatim) and with a
    # format prompt (shows the prompt.format(question) path)
    import inspect
    pa_defaults = {k: v.default for k, v in inspect.signature(model.predict_answers).parameters.items()
                   if v.default is not inspect.Parameter.empty}
    cases["meta"]["predict_answers_defaults"] = pa_defaults
    for mode, idx in [("sample0", [0]), ("sample1", [1]), ("batch01", [0, 1])]:
        for pname, pkw in [("defaults", {}), ("prompt_fmt", dict(prompt="Question: {} Short answer:"))]:
            samples = dict(image=torch.cat([imgs[i] for i in idx]),
                           text_input=[SAMPLES[i]["question"] for i in idx])
            tok_log.clear(); state["gen"].clear()
            s2 = dict(samples)
            with torch.no_grad():
                text = model.predict_answers(s2, **pkw)
            g = state["gen"][0]
            cases["predict_answers"].append(dict(
                name=f"{mode}/{pname}", mode=mode, sample_idx=idx, extra_kwargs=pkw,
                text_input=samples["text_input"], formatted_prompt=s2["prompt"], output_text=text,
                llm_generate_kwargs=g["kwargs"], raw_output_ids=g["raw_output_ids"],
                tokenizer_calls=list(tok_log)))

    # ---- unwrap the tokenizer proxies before saving/pickling anything
    model.tokenizer = model.tokenizer._tok
    if kind == "vicuna":
        model.llm_tokenizer = model.llm_tokenizer._tok
    else:
        model.t5_tokenizer = model.t5_tokenizer._tok
        model.t5_output_tokenizer = model.t5_output_tokenizer._tok

    # saved as model.state_dict() returns it (tied tensors such as T5's shared/encoder.embed_tokens/
    # decoder.embed_tokens keep sharing one storage, as in a real LAVIS checkpoint)
    torch.save({"model": model.state_dict()}, os.path.join(out_dir, "lavis_full.pth"))
    full_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    runner_keys = save_runner_checkpoint(model, kind, imgs, os.path.join(out_dir, "lavis_runner.pth"))
    # the lr=0 optimizer step must not have changed anything
    for k, v in model.state_dict().items():
        assert torch.equal(v, full_sd[k]), k
    cases["meta"]["lavis_full_keys"] = {k: list(v.shape) for k, v in full_sd.items()}
    cases["meta"]["lavis_runner_keys"] = runner_keys
    cases["meta"]["requires_grad"] = {n: p.requires_grad for n, p in model.named_parameters()}
    return model, cases


def save_runner_checkpoint(model, kind, imgs, path):
    """Replicates lavis/runners/runner_base.py RunnerBase._save_checkpoint (lines 586-612) and the
    optimizer from RunnerBase.optimizer (lines 100-120).  One AdamW step with lr=0 populates the
    optimizer state without changing any weight."""
    run_cfg = dict(task="vqa", lr_sched="linear_warmup_cosine_lr", init_lr=1e-5, min_lr=0, warmup_lr=1e-8,
                   warmup_steps=1000, weight_decay=0.05, max_epoch=1, batch_size_train=2, batch_size_eval=2,
                   num_workers=0, accum_grad_iters=1, seed=CFG["seed"], output_dir="output/tiny",
                   amp=False, evaluate=False, train_splits=["train"], device="cpu", world_size=1,
                   dist_url="env://", distributed=False)
    optim_params = model.get_optimizer_params(run_cfg["weight_decay"], 1)
    optimizer = torch.optim.AdamW(optim_params, lr=float(run_cfg["init_lr"]), betas=(0.9, 0.999))
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    model.train()
    samples = dict(image=torch.cat(imgs), text_input=[s["text_input"] for s in SAMPLES],
                   text_output=[s["text_output"] for s in SAMPLES])
    # dropout must not use the global RNG stream differently between runs: reseed
    seed_all(CFG["seed"] + 50)
    loss = model(samples)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    for g in optimizer.param_groups:
        g["lr"] = float(run_cfg["init_lr"])
    model.eval()

    model_no_ddp = model
    param_grad_dic = {k: v.requires_grad for (k, v) in model_no_ddp.named_parameters()}
    state_dict = model_no_ddp.state_dict()
    for k in list(state_dict.keys()):
        if k in param_grad_dic.keys() and not param_grad_dic[k]:
            del state_dict[k]
    arch = "blip2_vicuna_instruct" if kind == "vicuna" else "blip2_t5_instruct"
    mcfg = dict(arch=arch, model_type="vicuna7b" if kind == "vicuna" else "flant5xl", load_finetuned=False,
                load_pretrained=False, image_size=CFG["img_size"],
                **{k: v for k, v in CFG["model_kwargs"].items() if k not in ("img_size",)})
    save_obj = {
        "model": state_dict,
        "optimizer": optimizer.state_dict(),
        "config": dict(run=run_cfg, model=mcfg, datasets={}),
        "scaler": None,  # run.amp=False (CPU); with amp LAVIS stores GradScaler.state_dict()
        "epoch": 0,
    }
    torch.save(save_obj, path)
    return {k: list(v.shape) for k, v in state_dict.items()}


def run_variant(out_dir, bert_dir, llm_dir, main_model):
    """Vicuna model with a ONE-layer Q-Former and cross_attention_freq=1 (converter edge case)."""
    model = build_model("vicuna", llm_dir, bert_dir, qf_layers=1, xattn_freq=1, seed_offset=1000)
    assert model.Qformer.bert.encoder.layer[0].has_cross_attention
    # same LLM weights as the main vicuna model (incl. the [PAD] row added by resize_token_embeddings)
    model.llm_model.load_state_dict(main_model.llm_model.state_dict())
    tok_log, state, inner = install_recorders(model, "vicuna")
    _, imgs = make_images()
    samples = dict(image=torch.cat(imgs), text_input=[s["text_input"] for s in SAMPLES],
                   text_output=[s["text_output"] for s in SAMPLES])
    state["capture_fwd"] = True
    with torch.no_grad():
        loss = model(samples)["loss"]
    state["capture_fwd"] = False
    fwd = state["fwd"][0]
    gens = []
    for sname in ("greedy", "beam5"):
        kwargs = dict(GEN_BASE); kwargs.update(GEN_SETTINGS[sname]); kwargs.update(GEN_LENGTHS["len10"])
        state["gen"].clear()
        with torch.no_grad():
            text = model.generate(dict(image=torch.cat(imgs), prompt=[s["text_input"] for s in SAMPLES]), **kwargs)
        gens.append(dict(setting=sname, generate_kwargs=kwargs, output_text=text,
                         raw_output_ids=state["gen"][0]["raw_output_ids"]))
    model.tokenizer = model.tokenizer._tok
    model.llm_tokenizer = model.llm_tokenizer._tok
    sd_all = model.state_dict()
    main_sd = main_model.state_dict()
    for k, v in sd_all.items():
        if k.startswith("llm_model."):
            assert torch.equal(v, main_sd[k]), k
    sd = {k: v for k, v in sd_all.items() if not k.startswith("llm_model.")}
    torch.save({"model": sd, "note": "llm_model.* omitted: identical to lavis_full.pth llm_model.*"},
               os.path.join(out_dir, "lavis_qformer1layer_xattn1.pth"))
    return dict(description="Blip2VicunaInstruct, Q-Former num_hidden_layers=1, cross_attention_freq=1; same llm/ "
                            "folder and bert_tokenizer/; weights in lavis_qformer1layer_xattn1.pth (all keys "
                            "except llm_model.*, which equal lavis_full.pth's llm_model.*)",
                qformer_num_hidden_layers=1, cross_attention_freq=1,
                batch_loss=loss.clone(), llm_logits=fwd["logits"], generate=gens,
                keys={k: list(v.shape) for k, v in sd.items()})


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tmp = os.path.join(OUT, "_tmp")
    os.makedirs(tmp)
    summary = {}
    for kind in ("vicuna", "t5"):
        kdir = os.path.join(OUT, kind)
        os.makedirs(kdir)
        bert_dir = os.path.join(kdir, "bert_tokenizer")
        llm_dir = os.path.join(kdir, "llm")
        build_bert_tokenizer(bert_dir)
        if kind == "vicuna":
            build_llama_folder(llm_dir, tmp)
        else:
            build_t5_folder(llm_dir, tmp)
        model, cases = run_kind(kind, kdir, bert_dir, llm_dir)
        if kind == "vicuna":
            cases["variant_qformer1_xattn1"] = run_variant(kdir, bert_dir, llm_dir, model)
        cases = plain(cases)
        torch.save(cases, os.path.join(kdir, "cases.pt"))
        # must be loadable with weights_only=True
        torch.load(os.path.join(kdir, "cases.pt"), weights_only=True)
        with open(os.path.join(kdir, "cases.json"), "w") as f:
            json.dump(to_jsonable(cases), f, indent=1)
        summary[kind] = dict(loss=[(c["name"], float(c["loss"])) for c in cases["loss"]],
                             gen=[(g["name"], g["output_text"]) for g in cases["generate"]][:6])
    shutil.rmtree(tmp)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
