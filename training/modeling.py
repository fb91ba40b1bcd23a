"""Where a training run starts from, and what it trains.

Starting points: a checkpoint in our (or transformers') InstructBLIP format, a new model composed
from separate pretrained parts (vision tower, BERT for the Q-Former, LLM), or `tiny.build` for the
demo and tests. Then the paper's freezing, and optional LoRA adapters on the LLM that leave the
paper's trainable set trainable. This module must not know about data or the Trainer.
"""

import hashlib
import json
import logging
import re

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from modeling_instructblip import (
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipImageProcessor,
    InstructBlipProcessor,
    tiny,
)
from modeling_instructblip.configuration_instructblip import InstructBlipQFormerConfig
from modeling_instructblip.modeling_instructblip import resize_llm_vocabulary

logger = logging.getLogger(__name__)

OUR_MODEL_TYPES = ("instructblip", InstructBlipConfig.model_type)
LORA_TARGET_MODULES = r".*language_model.*\.(q_proj|v_proj)"
# the Q-Former's parameters that only the instruction's tokens go through (BERT's word and position
# embeddings, each layer's text feed-forward block): what BLIP-2's stage-2 checkpoints lack
QFORMER_TEXT_ONLY = re.compile(r"embeddings\.(word|position)_embeddings\.|encoder\.layer\.\d+\.(intermediate|output)\.")


def load_checkpoint(path: str, dtype=None, trust_remote_code: bool = False):
    """(model, processor) from a folder or Hub id in our or transformers' InstructBLIP format."""
    model = InstructBlipForConditionalGeneration.from_pretrained(path, dtype=dtype)
    processor = InstructBlipProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    if processor.is_encoder_decoder is None:  # transformers' processors do not record it
        processor.is_encoder_decoder = not model.config.use_decoder_only_language_model
    return model, processor


def build_tiny(text: str, seed: int = 0, config_overrides: str | None = None):
    """(model, processor): a tiny random InstructBLIP, built from scratch, with `config_overrides`."""
    model, processor = tiny.build(text, seed=seed)
    if config_overrides:
        config = model.config
        apply_config_overrides(config, config_overrides)
        torch.manual_seed(seed)
        model = InstructBlipForConditionalGeneration(config).eval()
        size = config.vision_config.image_size  # the processor follows the tower
        processor.image_processor.size = {"height": size, "width": size}
    return model, processor


def apply_config_overrides(config, overrides: str):
    """`"qformer_config.hidden_dropout_prob=0,num_query_tokens=8"` -> set on `config` (values read as
    JSON, else kept as strings), as the Hugging Face examples' `--config_overrides`."""
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        key, _, value = item.partition("=")
        *path, name = key.strip().split(".")
        target = config
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, name):
            raise ValueError(f"config_overrides: {key!r} is not a config attribute")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        setattr(target, name, value)
    return config


# ---------------------------------------------------------------------------------------------
# Composing a new model from separate pretrained parts
# ---------------------------------------------------------------------------------------------


def bert_to_qformer_state_dict(bert_state_dict: dict) -> dict:
    """BERT (`BertModel`) weights -> Q-Former names, as BLIP-2 initialises its Q-Former: embeddings and
    self-attention as they are, and BERT's feed-forward block copied into both the text FFN
    (`intermediate`/`output`) and the query FFN (`intermediate_query`/`output_query`). The pooler is
    dropped; cross-attention has no BERT counterpart and stays freshly initialised."""
    converted = {}
    for key, value in bert_state_dict.items():
        key = key.removeprefix("bert.")
        if key.startswith(("pooler.", "cls.")) or key.endswith("position_ids") or "token_type_embeddings" in key:
            continue
        key = key.replace("embeddings.LayerNorm.", "embeddings.layernorm.").replace(".attention.self.", ".attention.attention.")
        converted[key] = value
        ffn = re.match(r"(encoder\.layer\.\d+\.)(intermediate|output)\.(.*)", key)
        if ffn and not key.startswith(f"{ffn.group(1)}attention"):
            converted[f"{ffn.group(1)}{ffn.group(2)}_query.{ffn.group(3)}"] = value
    return converted


def _init_fresh(module: nn.Module, std: float):
    """BERT-style init for the parts no pretrained checkpoint provides."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=std)


def _load_vision_tower(path: str, dtype):
    """(vision_config, vision module) from an InstructBLIP checkpoint (its EVA tower, with the
    LayerNorm after it) or a transformers vision model (CLIP/SigLIP, full or vision-only)."""
    config = AutoConfig.from_pretrained(path) if not _is_ours(path) else None
    if config is None:
        source = InstructBlipForConditionalGeneration.from_pretrained(path, dtype=dtype)
        return source.config.vision_config, source.vision_model
    vision_config = getattr(config, "vision_config", config)
    vision_class = type(AutoModel.from_config(vision_config))
    return vision_config, vision_class.from_pretrained(path, dtype=dtype)


def _is_ours(path: str) -> bool:
    from transformers import PreTrainedConfig

    config_dict, _ = PreTrainedConfig.get_config_dict(path)
    return config_dict.get("model_type") in OUR_MODEL_TYPES


def compose_from_parts(
    vision_model: str,
    qformer_model: str,
    language_model: str,
    num_query_tokens: int = 32,
    image_size: int | None = None,
    dtype=None,
):
    """(model, processor): a new InstructBLIP from a vision tower, a BERT checkpoint for the Q-Former
    (and its tokenizer) and an LLM (and its tokenizer), each a Hub id or a folder.

    The Q-Former copies BERT's layers (see `bert_to_qformer_state_dict`); its cross-attention, the
    query tokens (N(0, 0.02)) and the projection are new. `<image>` is added to the LLM tokenizer
    and the LLM's embeddings grow to match. A pad token is set when the LLM tokenizer has none.
    """
    vision_config, vision = _load_vision_tower(vision_model, dtype)
    bert_config = AutoConfig.from_pretrained(qformer_model)
    qformer_config = InstructBlipQFormerConfig(
        vocab_size=bert_config.vocab_size,
        hidden_size=bert_config.hidden_size,
        num_hidden_layers=bert_config.num_hidden_layers,
        num_attention_heads=bert_config.num_attention_heads,
        intermediate_size=bert_config.intermediate_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        layer_norm_eps=bert_config.layer_norm_eps,
        pad_token_id=bert_config.pad_token_id,
    )
    text_config = AutoConfig.from_pretrained(language_model)
    is_encoder_decoder = bool(getattr(text_config, "is_encoder_decoder", False))
    llm_class = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    llm = llm_class.from_pretrained(language_model, dtype=dtype)

    tokenizer = AutoTokenizer.from_pretrained(language_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    image_processor = InstructBlipImageProcessor(size=image_size or getattr(vision_config, "image_size", 224))
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=AutoTokenizer.from_pretrained(qformer_model),
        num_query_tokens=num_query_tokens,
        is_encoder_decoder=is_encoder_decoder,
    )
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        resize_llm_vocabulary(llm, len(tokenizer))  # FlanT5's lm_head stays its own
    text_config = llm.config
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is not None and getattr(text_config, name, None) is None:
            setattr(text_config, name, getattr(tokenizer, name))

    config = InstructBlipConfig(
        vision_config=vision_config.to_dict() | {"model_type": vision_config.model_type},
        qformer_config=qformer_config.to_dict(),
        text_config=text_config.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=processor.image_token_id,
    )
    # build the shell on the meta device: the towers are the loaded ones, only the small new parts
    # (Q-Former, query tokens, projection, LayerNorm after a foreign tower) get real memory here
    with torch.device("meta"):
        model = InstructBlipForConditionalGeneration(config)
    model.vision_model = vision
    model.language_model = llm
    std = config.initializer_range
    fresh = [model.qformer, model.language_projection] + ([] if config.uses_eva_vision else [model.vision_layernorm])
    for module in fresh:
        module.to_empty(device="cpu")
        _init_fresh(module, std)
    model.qformer.embeddings.position_ids = torch.arange(qformer_config.max_position_embeddings).expand((1, -1))
    model.query_tokens = nn.Parameter(torch.randn(1, num_query_tokens, qformer_config.hidden_size) * std)
    bert = AutoModel.from_pretrained(qformer_model)
    missing, unexpected = model.qformer.load_state_dict(bert_to_qformer_state_dict(bert.state_dict()), strict=False)
    if unexpected:
        raise ValueError(f"BERT weights with no Q-Former counterpart: {unexpected[:5]}")
    not_from_bert = [k for k in missing if "crossattention" not in k and not k.endswith("position_ids")]
    if not_from_bert:
        raise ValueError(f"Q-Former weights BERT does not provide: {not_from_bert[:5]}")
    model.config.text_config = llm.config
    return model.eval(), processor


# ---------------------------------------------------------------------------------------------
# What trains: the paper's freezing, optionally LoRA on the LLM
# ---------------------------------------------------------------------------------------------


def freeze(model, train_language_model: bool = False, frozen_dtype=None, train_vision_model: bool = False):
    """The paper's trainable set (Q-Former, query tokens, projection, LayerNorm after the vision tower);
    the vision tower and the LLM are frozen and kept in eval mode. `train_language_model=True` trains
    the whole LLM as well, `train_vision_model=True` the vision tower (for tiny from-scratch towers). `frozen_dtype` casts the frozen towers only
    (the paper: ViT fp16, Vicuna fp16, FlanT5 bf16), so the trained tensors stay fp32 for AdamW."""
    model.freeze_for_instruction_tuning(
        keep_frozen_in_eval=True, train_language_model=train_language_model, train_vision_model=train_vision_model
    )
    if not model.config.instruction_aware:
        # the Q-Former reads no text: its text-only parts get no gradient, so they are frozen (as BLIP-2's
        # stage 2, which drops them), keeping them out of the optimiser and of DDP's reduction
        for name, param in model.qformer.named_parameters():
            if QFORMER_TEXT_ONLY.match(name):
                param.requires_grad_(False)
    if frozen_dtype is not None:
        for module in model._frozen_modules():
            if not any(p.requires_grad for p in module.parameters()):
                module.to(frozen_dtype)
    return model


def add_lora(model, r: int, alpha: int, dropout: float = 0.0, target_modules: str = LORA_TARGET_MODULES):
    """Inject LoRA adapters (peft) into the modules `target_modules` matches (a regex matched against
    full module names, scoped to the LLM by default), in place: the model keeps its class, so the
    Trainer, checkpoints and resume treat it as any other. peft freezes everything but the
    adapters; the paper's trainable set is made trainable again here. The LLM stays in eval mode,
    so `dropout` only acts if the LLM is put in train mode."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        original = name.replace(".base_layer.", ".")
        param.requires_grad = "lora_" in name or (original in trainable and ".base_layer." not in name)
    if not any("lora_" in name for name, _ in model.named_parameters()):
        raise ValueError(f"LoRA target_modules {target_modules!r} matched no module")
    return config


def lora_state_dict(model) -> dict:
    """The adapter weights under peft's adapter-file names (`base_model.model.<module>.lora_A.weight`)."""
    return {
        "base_model.model." + name.replace(".default.", "."): param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if "lora_" in name
    }


def remove_lora(model, merge: bool):
    """Take the adapters out of `model` in place: merged into the base weights (`merge=True`) or
    dropped, leaving the base LLM. Either way the model then saves and loads as a plain InstructBLIP."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            if merge:
                module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def save_lora_adapter(model, lora_config, folder: str):
    """Write a peft adapter folder (`adapter_config.json`, `adapter_model.safetensors`), loadable with
    `peft.PeftModel.from_pretrained(base_model, folder)`."""
    import os

    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    lora_config.save_pretrained(folder)
    save_file(lora_state_dict(model), os.path.join(folder, "adapter_model.safetensors"))


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def weights_fingerprint(model, values_per_tensor: int = 1024) -> str:
    """A hash of every parameter's name, shape and first values: a model retrained into the same
    folder (same `name_or_path`) gets another fingerprint. Cheap at any size (no full pass).
    `model` is a module or an iterable of (name, tensor) pairs."""
    digest = hashlib.sha256()
    named = model.named_parameters() if isinstance(model, torch.nn.Module) else model
    for name, param in named:
        head = param.detach().flatten()[:values_per_tensor].float().cpu().numpy()
        digest.update(f"{name}{tuple(param.shape)}".encode())
        digest.update(head.tobytes())
    return digest.hexdigest()[:16]
