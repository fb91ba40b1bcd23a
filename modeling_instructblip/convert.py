"""Convert the original LAVIS InstructBLIP checkpoints into a Hub-ready model folder.

    python -m modeling_instructblip.convert \\
        --lavis-checkpoint instruct_blip_vicuna7b_trimmed.pth \\
        --vision-checkpoint eva_vit_g.pth \\
        --llm /path/to/vicuna-7b-v1.1 \\
        --qformer-tokenizer /path/to/bert-base-uncased \\
        --output instructblip-vicuna-7b

LAVIS ships the trainable tensors (`Qformer.bert.*`, `query_tokens`, `llm_proj`/`t5_proj`,
`ln_vision`) in a `*_trimmed.pth`, the EVA ViT-g in `eva_vit_g.pth` (unprefixed keys, 40 blocks of
which InstructBLIP uses 39), and takes the LLM from its own folder. The key mapping is a set of pure
functions (`convert_vision_state_dict`, `convert_lavis_state_dict`), tested on their own.

This is the only place that reads pickled weights, and it does so with `weights_only=True`: a
checkpoint that needs arbitrary code to unpickle is refused. Keys that InstructBLIP does not use are
counted and reported; keys we do not recognise stop the conversion.
"""

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .configuration_instructblip import InstructBlipConfig, paper_generation_config
from .modeling_instructblip import InstructBlipForConditionalGeneration, resize_llm_vocabulary


# Keys of the LAVIS files that InstructBLIP does not use, with the reason reported for them.
UNUSED_LAVIS_KEYS = [
    (re.compile(r"^Qformer\.bert\.embeddings\.position_ids$"), "a constant buffer, rebuilt by the model"),
    (re.compile(r"^Qformer\.cls\."), "the stage-1 Q-Former LM head (InstructBLIP removes it)"),
    (re.compile(r"^(visual_encoder\.)?(norm|fc_norm|head|lm_head)\."), "EVA heads, unused (features come before them)"),
    (re.compile(r"^(vision_proj|text_proj|itm_head)\.|^temp$"),
     "BLIP-2 stage 1's contrastive and matching heads (InstructBLIP does not use them)"),
    # what LAVIS's runner saves besides the trained tensors: it drops parameters without gradients, not buffers
    (re.compile(r"^llm_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),
     "a constant buffer of LAVIS's vendored Llama (rotary frequencies), rebuilt by the LLM"),
]

# The frozen LLM's own tensors, when a LAVIS file holds them (a full state dict; the runner's files keep
# FlanT5's `embed_tokens`, aliases of `shared`): the LLM comes from --llm, and these must equal its weights.
LLM_PREFIXES = ("llm_model.", "t5_model.", "opt_model.")


@dataclass
class ConversionReport:
    """What a conversion did with every input key: converted, or skipped with a reason."""

    converted: int = 0
    skipped: dict = field(default_factory=dict)  # reason -> list of keys

    def skip(self, key, reason):
        self.skipped.setdefault(reason, []).append(key)

    def summary(self) -> str:
        lines = [f"converted {self.converted} tensors"]
        for reason, keys in self.skipped.items():
            lines.append(f"skipped {len(keys)} ({reason}): {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        return "\n".join(lines)


def _unused_reason(key: str) -> str | None:
    for pattern, reason in UNUSED_LAVIS_KEYS:
        if pattern.search(key):
            return reason
    return None


def convert_vision_key(key: str) -> str | None:
    """An EVA ViT key (unprefixed, as in `eva_vit_g.pth`) -> our name; None if not a ViT weight we map.
    `attn.q_bias`/`attn.v_bias` are merged by `convert_vision_state_dict`, not here."""
    simple = {
        "cls_token": "vision_model.embeddings.class_embedding",
        "pos_embed": "vision_model.embeddings.position_embedding",
        "patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
        "patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
    }
    if key in simple:
        return simple[key]
    match = re.fullmatch(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", key)
    if match is None:
        return None
    block, part, kind = match.groups()
    part = {
        "norm1": "layer_norm1",
        "norm2": "layer_norm2",
        "attn.qkv": "self_attn.qkv",
        "attn.proj": "self_attn.projection",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }[part]
    return f"vision_model.encoder.layers.{block}.{part}.{kind}"


def convert_vision_state_dict(state_dict: dict, num_layers: int, report: ConversionReport | None = None) -> dict:
    """EVA ViT state dict -> ours. Blocks from `num_layers` on are dropped (InstructBLIP takes the
    penultimate layer of the 40-block ViT-g: 39 blocks); q/v biases become one `qkv.bias` with a zero key bias."""
    report = report if report is not None else ConversionReport()
    out = {}
    for key, tensor in state_dict.items():
        block = re.match(r"blocks\.(\d+)\.", key)
        if block and int(block.group(1)) >= num_layers:
            report.skip(key, f"ViT blocks from {num_layers} on (InstructBLIP uses the first {num_layers})")
            continue
        bias = re.fullmatch(r"blocks\.(\d+)\.attn\.(q|v)_bias", key)
        if bias:
            if bias.group(2) == "q":
                q_bias, v_bias = tensor, state_dict[f"blocks.{bias.group(1)}.attn.v_bias"]
                name = f"vision_model.encoder.layers.{bias.group(1)}.self_attn.qkv.bias"
                out[name] = torch.cat([q_bias, torch.zeros_like(v_bias), v_bias])
                report.converted += 2
            continue
        name = convert_vision_key(key)
        if name is None:
            reason = _unused_reason(key)
            if reason is None:
                raise KeyError(f"unrecognised key {key!r} in the vision checkpoint (expected EVA ViT keys)")
            report.skip(key, reason)
            continue
        out[name] = tensor
        report.converted += 1
    return out


def convert_lavis_key(key: str) -> str | None:
    """A LAVIS InstructBLIP (or BLIP-2: `opt_proj`/`opt_model`) key -> our name (None: not an InstructBLIP
    weight). The ViT's keys (`visual_encoder.*`) go through `convert_vision_state_dict`."""
    if key == "query_tokens":
        return key
    for lavis, ours in (("ln_vision.", "vision_model.post_layernorm."), ("llm_proj.", "language_projection."),
                        ("t5_proj.", "language_projection."), ("opt_proj.", "language_projection."),
                        ("llm_model.", "language_model."), ("t5_model.", "language_model."),
                        ("opt_model.", "language_model.")):
        if key.startswith(lavis):
            return ours + key[len(lavis):]
    if key.startswith("Qformer.bert."):
        name = "qformer." + key[len("Qformer.bert."):]
        name = name.replace("qformer.embeddings.LayerNorm.", "qformer.embeddings.layernorm.")
        name = name.replace(".attention.self.", ".attention.attention.")
        name = name.replace(".crossattention.self.", ".crossattention.attention.")
        return name
    return None


def convert_lavis_state_dict(
    state_dict: dict, num_vision_layers: int, report: ConversionReport | None = None, llm_tensors: dict | None = None
) -> dict:
    """A LAVIS InstructBLIP state dict (trimmed, full, or saved by LAVIS's runner) -> our names.

    The frozen LLM's tensors (`llm_model.*` / `t5_model.*`) are not part of the result: with
    `llm_tensors` (a dict) they are collected there under our names, for `convert` to check against the
    LLM folder; without it they are converted into the result like the rest."""
    report = report if report is not None else ConversionReport()
    vision = {k[len("visual_encoder."):]: v for k, v in state_dict.items() if k.startswith("visual_encoder.")}
    out = convert_vision_state_dict(vision, num_vision_layers, report) if vision else {}
    for key, tensor in state_dict.items():
        if key.startswith("visual_encoder."):
            continue
        if llm_tensors is not None and key.startswith(LLM_PREFIXES) and _unused_reason(key) is None:
            llm_tensors[convert_lavis_key(key)] = (key, tensor)
            continue
        reason = _unused_reason(key)
        if reason is not None:
            report.skip(key, reason)
            continue
        name = convert_lavis_key(key)
        if name is None:
            raise KeyError(f"unrecognised key {key!r} in the LAVIS checkpoint")
        out[name] = tensor
        report.converted += 1
    return out


def load_pickled_state_dict(path) -> dict:
    """`torch.load(..., weights_only=True)`; unwraps LAVIS's {"model": state_dict} and EVA's {"module": ...}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler refused something that is not plain tensors and containers
        raise ValueError(
            f"{path} cannot be loaded with weights_only=True (it needs arbitrary code to unpickle, which we "
            f"refuse): {err}"
        ) from err
    for key in ("model", "module", "state_dict"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
    if not isinstance(payload, dict) or not all(torch.is_tensor(v) for v in payload.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return payload


def prepare_llm_tokenizer(tokenizer, is_encoder_decoder: bool):
    """The released Vicuna checkpoints' tokenizer, as LAVIS builds it every time
    (`Blip2VicunaInstruct.__init__`, whatever the tokenizer had): `[PAD]` added, BOS/EOS/UNK all `</s>`
    (so every sequence starts with id 2); FlanT5's is used as it is. The processor adds `<image>` afterwards."""
    if not is_encoder_decoder:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        tokenizer.add_special_tokens({"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>"})
        if hasattr(tokenizer, "update_post_processor"):  # the prepended BOS follows bos_token
            tokenizer.update_post_processor()
    return tokenizer


def lavis_qformer_tokenizer(name_or_path: str):
    """LAVIS's Q-Former tokenizer (`Blip2Base.init_tokenizer`): bert-base-uncased's, truncating on the left
    (the instruct models' `truncation_side="left"`), with `[DEC]` added as its BOS."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, truncation_side="left")
    if "[DEC]" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def cross_attention_frequency_of(cross_layers: list[int], num_layers: int) -> int:
    """The Q-Former's `cross_attention_frequency` from the layers that have cross-attention (layer i has
    it when i % frequency == 0). One such layer among several: any frequency >= the layer count."""
    if not cross_layers or cross_layers[0] != 0:
        raise ValueError(f"the Q-Former's cross-attention layers are {cross_layers}: expected layer 0 and every k-th")
    frequency = cross_layers[1] - cross_layers[0] if len(cross_layers) > 1 else max(num_layers, 1)
    if cross_layers != list(range(0, num_layers, frequency)):
        raise ValueError(
            f"the Q-Former's cross-attention layers {cross_layers} (of {num_layers}) are not every k-th layer from 0"
        )
    return frequency


def infer_architecture(state: dict, num_vision_layers: int, vision_head_dim: int = 88, qformer_head_dim: int = 64):
    """(vision_config, qformer_config) dicts read off converted weights (our names): widths, depths and
    sizes are in the tensors' shapes; head counts are not, and follow from the head sizes (EVA ViT-g:
    1408 / 88 = 16 heads; BERT-base: 768 / 64 = 12)."""
    vision_hidden = state["vision_model.embeddings.position_embedding"].shape[-1]
    num_positions = state["vision_model.embeddings.position_embedding"].shape[1]
    patch_size = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    word_embeddings = state["qformer.embeddings.word_embeddings.weight"]
    qformer_layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"qformer\.encoder\.layer\.(\d+)\.", k)))
    cross_layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"qformer\.encoder\.layer\.(\d+)\.crossattention", k))})
    qformer_hidden = word_embeddings.shape[1]
    for what, hidden, head_dim in (("vision", vision_hidden, vision_head_dim), ("Q-Former", qformer_hidden, qformer_head_dim)):
        if hidden % head_dim:
            raise ValueError(f"{what} width {hidden} is not a multiple of the head size {head_dim}; pass the head size")
    vision_config = dict(
        hidden_size=vision_hidden,
        intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=num_vision_layers,
        num_attention_heads=vision_hidden // vision_head_dim,
        image_size=int(round((num_positions - 1) ** 0.5)) * patch_size,
        patch_size=patch_size,
    )
    qformer_config = dict(
        vocab_size=word_embeddings.shape[0],
        hidden_size=qformer_hidden,
        num_hidden_layers=qformer_layers,
        num_attention_heads=qformer_hidden // qformer_head_dim,
        intermediate_size=state["qformer.encoder.layer.0.intermediate_query.dense.weight"].shape[0],
        max_position_embeddings=state["qformer.embeddings.position_embeddings.weight"].shape[0],
        cross_attention_frequency=cross_attention_frequency_of(cross_layers, qformer_layers),
    )
    return vision_config, qformer_config


def _untie_like(target, source):
    """Give `target` (built from a config) separate input and output embeddings where `source` (the LLM
    loaded from its folder) has them: FlanT5's `lm_head` is not its `shared` embedding, but
    transformers 5 builds every T5 with them tied, and loading both into one tensor would keep one."""
    source_out, target_out = source.get_output_embeddings(), target.get_output_embeddings()
    if source_out is None or target_out is None:
        return
    if source_out.weight is not source.get_input_embeddings().weight and target_out.weight is target.get_input_embeddings().weight:
        target_out.weight = torch.nn.Parameter(target_out.weight.detach().clone())


def _check_llm_tensors(lavis_llm: dict, state: dict, report: ConversionReport, vocab_rows: int):
    """The LLM tensors a LAVIS file holds (frozen in InstructBLIP) must be the --llm folder's: the
    folder's weights are the ones converted, so a file whose LLM differs would be silently replaced.
    Vocabulary rows from the folder's `vocab_rows` on are the ones LAVIS added at start-up (Vicuna's
    `[PAD]`, randomly initialised by every LAVIS run): the file's are taken. Rows past the file's are
    the `<image>` placeholder's, which LAVIS does not have."""
    for name, (key, tensor) in lavis_llm.items():
        ours = state.get(name)
        if ours is None:
            raise KeyError(f"unrecognised key {key!r} in the LAVIS checkpoint (no such tensor in the --llm model)")
        vocabulary = tensor.dim() == 2 and name.endswith(("embed_tokens.weight", "lm_head.weight", "shared.weight"))
        rows = tensor.shape[0] if vocabulary else 0
        if (vocabulary and (tensor.shape[1:] != ours.shape[1:] or not vocab_rows <= rows <= ours.shape[0])) or (
            not vocabulary and tensor.shape != ours.shape
        ):
            raise ValueError(f"{key}: shape {tuple(tensor.shape)} in the LAVIS file, {tuple(ours.shape)} in --llm")
        shared = slice(0, vocab_rows) if vocabulary else slice(None)
        # LAVIS holds Vicuna in fp16: compare in the file's precision
        theirs, mine = tensor[shared], ours[shared].to(tensor.dtype)
        if not torch.equal(mine, theirs):
            difference = float((mine.float() - theirs.float()).abs().max())
            raise ValueError(
                f"{key} in the LAVIS file differs from the --llm folder's weight (max abs difference {difference:.3g}): "
                "InstructBLIP keeps the LLM frozen, so pass the LLM folder this checkpoint was trained with"
            )
        if rows > vocab_rows:
            ours = ours.clone()
            ours[vocab_rows:rows] = tensor[vocab_rows:rows].to(ours.dtype)
            state[name] = ours
            report.skip(key, f"the frozen LLM's weight, equal to the --llm folder's; rows {vocab_rows}-{rows - 1} (added by LAVIS) taken from the file")
        else:
            report.skip(key, "the frozen LLM's weight, equal to the --llm folder's (converted from there)")


def convert(
    lavis_checkpoint,
    vision_checkpoint,
    llm,
    qformer_tokenizer,
    output,
    num_vision_layers: int = 39,
    dtype: str = "float32",
    vision_head_dim: int = 88,
    qformer_head_dim: int = 64,
) -> ConversionReport:
    """Build our model from the LAVIS files and an LLM folder, check every weight is accounted for,
    and save a Hub-ready folder (model, processor with both tokenizers, paper generation config).
    Head counts are not stored in the weights: they follow from the head sizes (EVA ViT-g: 1408 / 88
    = 16 heads; BERT-base: 768 / 64 = 12)."""
    from .processing_instructblip import InstructBlipImageProcessor, InstructBlipProcessor

    report = ConversionReport()
    lavis_llm = {}
    state = convert_lavis_state_dict(load_pickled_state_dict(lavis_checkpoint), num_vision_layers, report, lavis_llm)
    if vision_checkpoint is not None:
        state.update(convert_vision_state_dict(load_pickled_state_dict(vision_checkpoint), num_vision_layers, report))
    if "vision_model.embeddings.patch_embedding.weight" not in state:
        raise ValueError(
            f"{lavis_checkpoint} holds no vision tower weights (visual_encoder.*), as LAVIS's released *_trimmed.pth "
            "and its runner's checkpoints do not (the ViT is frozen): pass --vision-checkpoint eva_vit_g.pth"
        )

    text_config = AutoConfig.from_pretrained(llm)
    is_encoder_decoder = bool(getattr(text_config, "is_encoder_decoder", False))
    if is_encoder_decoder and getattr(text_config, "dense_act_fn", None) == "gelu_new":
        # LAVIS runs FlanT5's feed-forward with exact GELU; transformers' FlanT5 configs say gelu_new
        text_config.dense_act_fn = "gelu"
    llm_class = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    language_model = llm_class.from_pretrained(llm, config=text_config, dtype=torch.float32)
    tokenizer = prepare_llm_tokenizer(AutoTokenizer.from_pretrained(llm), is_encoder_decoder)
    bert = lavis_qformer_tokenizer(qformer_tokenizer)

    vision_config, qformer_config = infer_architecture(state, num_vision_layers, vision_head_dim, qformer_head_dim)
    config = InstructBlipConfig(
        vision_config=vision_config,
        qformer_config=qformer_config,
        text_config=language_model.config.to_dict(),
        num_query_tokens=state["query_tokens"].shape[1],
    )
    processor = InstructBlipProcessor(
        image_processor=InstructBlipImageProcessor(),
        tokenizer=tokenizer,
        qformer_tokenizer=bert,
        num_query_tokens=config.num_query_tokens,
        is_encoder_decoder=is_encoder_decoder,
    )
    vocab_rows = language_model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab_rows:
        # exactly the tokenizer's size, as LAVIS resizes: padding rows would take part in every softmax
        resize_llm_vocabulary(language_model, len(tokenizer))
    config.text_config = language_model.config
    config.image_token_index = processor.image_token_id
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config.text_config, name, getattr(tokenizer, name))

    model = InstructBlipForConditionalGeneration(config)
    _untie_like(model.language_model, language_model)
    state.update({f"language_model.{k}": v for k, v in language_model.state_dict().items()})
    _check_llm_tensors(lavis_llm, state, report, vocab_rows)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"converted weights do not fit the model: missing {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{name}: converted shape {tuple(tensor.shape)}, model expects {tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=True)
    model.to(getattr(torch, dtype))
    model.generation_config = paper_generation_config(config.text_config)

    output = Path(output)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "conversion_report.json").write_text(
        json.dumps({"converted": report.converted, "skipped": report.skipped}, indent=2)
    )
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lavis-checkpoint", required=True, help="LAVIS InstructBLIP *.pth (trimmed or full)")
    parser.add_argument("--vision-checkpoint", help="eva_vit_g.pth (not needed if the LAVIS file holds visual_encoder.*)")
    parser.add_argument("--llm", required=True, help="the LLM's folder or Hub id (Vicuna v1.1, FlanT5)")
    parser.add_argument("--qformer-tokenizer", required=True, help="bert-base-uncased's folder or Hub id")
    parser.add_argument("--output", required=True, help="folder to write the Hub-ready model to")
    parser.add_argument("--num-vision-layers", type=int, default=39, help="ViT blocks used (the paper: 39 of 40)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--vision-head-dim", type=int, default=88, help="EVA ViT-g: 88 (16 heads of 1408)")
    parser.add_argument("--qformer-head-dim", type=int, default=64, help="BERT-base: 64 (12 heads of 768)")
    args = parser.parse_args(argv)
    report = convert(
        args.lavis_checkpoint,
        args.vision_checkpoint,
        args.llm,
        args.qformer_tokenizer,
        args.output,
        num_vision_layers=args.num_vision_layers,
        dtype=args.dtype,
        vision_head_dim=args.vision_head_dim,
        qformer_head_dim=args.qformer_head_dim,
    )
    print(report.summary())
    print(f"saved to {args.output}")


if __name__ == "__main__":
    main()
