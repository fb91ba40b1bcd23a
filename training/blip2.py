"""Start instruction tuning from BLIP-2, as the paper does (Dai et al. 2023, §3: "we initialize the
model from pre-trained BLIP-2 checkpoints").

Two kinds of BLIP-2 checkpoint are read:

- transformers' format (`Blip2ForConditionalGeneration`, `model_type: blip-2`, e.g.
  `Salesforce/blip2-flan-t5-xl`), a Hub id or a folder: vision tower, Q-Former layers, query tokens,
  `language_projection` and LLM are taken as they are (safetensors, loaded by transformers);
- LAVIS's own `.pth` files (a path or an https URL, downloaded once into torch's hub cache): stage 1
  (`blip2_pretrained.pth`: vision tower, Q-Former with its text parts, query tokens; no LLM, no
  projection) and stage 2 (`blip2_pretrained_flant5xl.pth`, `..._opt2.7b.pth`: Q-Former without text
  parts, projection), read with the converter's key mapping and `weights_only=True`. They hold no
  LLM: `language_model` names it; a file without the ViT needs `vision_model` (`eva_vit_g.pth`).

What a stage-2 BLIP-2 lacks and InstructBLIP needs (its Q-Former reads the instruction): the
Q-Former's word and position embeddings and each layer's text feed-forward block (LAVIS's
`Blip2T5.__init__` deletes them). They come from LAVIS's stage-1 checkpoint when `stage1` is given
(what LAVIS's InstructBLIP classes were written to load first, `blip2_t5_instruct.py`), otherwise
from the BERT checkpoint `qformer_model` (bert-base-uncased: what LAVIS's `init_Qformer` starts from),
with one more vocabulary row for LAVIS's `[DEC]` token (the mean row; InstructBLIP never feeds it).
A stage-1 BLIP-2 has no projection: it is new (`nn.Linear`'s default init, as LAVIS's), which is the
Vicuna models' case (no stage-2 BLIP-2 with Vicuna was released).
"""

import logging
import os
import urllib.parse
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from modeling_instructblip import (
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipImageProcessor,
    InstructBlipProcessor,
)
from modeling_instructblip.convert import (
    ConversionReport,
    _check_llm_tensors,
    convert_lavis_key,
    convert_lavis_state_dict,
    convert_vision_state_dict,
    infer_architecture,
    lavis_qformer_tokenizer,
    load_pickled_state_dict,
    prepare_llm_tokenizer,
)
from modeling_instructblip.modeling_instructblip import resize_llm_vocabulary
from training.modeling import QFORMER_TEXT_ONLY, bert_to_qformer_state_dict

logger = logging.getLogger(__name__)

LAVIS_SUFFIXES = (".pth", ".pt")
URL_SCHEMES = ("http://", "https://", "file://")
# transformers' BLIP-2 names -> ours (the Q-Former's input LayerNorm sits in our embeddings module)
TRANSFORMERS_KEY_MAPPING = {r"^qformer\.layernorm\.": "qformer.embeddings.layernorm."}


def blip2_format(path) -> str | None:
    """"lavis" (a `.pth` file or URL), "transformers" (a folder / Hub id whose config says `blip-2`) or None."""
    path = str(path)
    if path.startswith(URL_SCHEMES) or path.endswith(LAVIS_SUFFIXES):
        return "lavis"
    from transformers import PreTrainedConfig

    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(path)
    except (OSError, ValueError):
        return None
    return "transformers" if config_dict.get("model_type") == "blip-2" else None


def local_file(path_or_url: str) -> str:
    """A local path for a checkpoint named by path or URL: URLs are downloaded once (with a progress bar)
    into torch's hub cache, `<torch.hub.get_dir()>/checkpoints/<file name>`, as LAVIS caches them."""
    if not str(path_or_url).startswith(URL_SCHEMES):
        if not os.path.isfile(path_or_url):
            raise FileNotFoundError(f"BLIP-2 checkpoint not found: {path_or_url}")
        return str(path_or_url)
    name = os.path.basename(urllib.parse.urlparse(path_or_url).path)
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s to %s", path_or_url, target)
        torch.hub.download_url_to_file(path_or_url, str(target), progress=True)
    return str(target)


def qformer_text_parts(qformer_model: str, stage1: str | None, vocab_rows: int, num_vision_layers: int, report=None) -> dict:
    """The Q-Former's text-only tensors (our names, `qformer.` prefixed): from LAVIS's stage-1 file, or from
    BERT with its word embeddings grown to `vocab_rows` (the new rows: the mean row)."""
    if stage1 is not None:
        raw = load_pickled_state_dict(local_file(stage1))
        own = ConversionReport()
        state = convert_lavis_state_dict(raw, num_vision_layers, own)
        parts = {k: v for k, v in state.items() if k.startswith("qformer.") and QFORMER_TEXT_ONLY.match(k[len("qformer."):])}
        if report is not None:  # every key of the stage-1 file is accounted for, as the converter's are
            own_skipped = {key for keys in own.skipped.values() for key in keys}
            for reason, keys in own.skipped.items():
                for key in keys:
                    report.skip(key, reason)
            for key in raw:
                if key in own_skipped:
                    continue
                if convert_lavis_key(key) in parts:
                    report.converted += 1
                else:
                    report.skip(key, "in the stage-1 file, superseded by the stage-2 file's (LAVIS's stage 2 started from stage 1)")
        if not parts:
            raise ValueError(f"{stage1} holds no Q-Former text parts (word embeddings, text feed-forward): "
                             "expected LAVIS's stage-1 blip2_pretrained.pth")
        return parts
    bert = AutoModel.from_pretrained(qformer_model)
    parts = {f"qformer.{k}": v for k, v in bert_to_qformer_state_dict(bert.state_dict()).items() if QFORMER_TEXT_ONLY.match(k)}
    words = parts["qformer.embeddings.word_embeddings.weight"]
    if words.shape[0] < vocab_rows:
        extra = words.mean(0, keepdim=True).expand(vocab_rows - words.shape[0], -1)
        parts["qformer.embeddings.word_embeddings.weight"] = torch.cat([words, extra])
    return parts


def _fill_text_parts(model, parts: dict, source: str):
    expected = {k: v for k, v in model.state_dict().items() if k.startswith("qformer.") and QFORMER_TEXT_ONLY.match(k[8:])}
    if set(parts) != set(expected):
        raise KeyError(f"{source}: Q-Former text parts do not fit: missing {sorted(set(expected) - set(parts))[:5]}, "
                       f"unexpected {sorted(set(parts) - set(expected))[:5]}")
    for name, tensor in parts.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{source}: {name} has shape {tuple(tensor.shape)}, the Q-Former {tuple(expected[name].shape)}")
    model.load_state_dict(parts, strict=False)


def _lavis_text_config(text_config):
    """LAVIS runs FlanT5's feed-forward with exact GELU (`t5_config.dense_act_fn = "gelu"`), as the
    paper's models were trained; transformers' FlanT5 configs say gelu_new."""
    if getattr(text_config, "is_encoder_decoder", False) and getattr(text_config, "dense_act_fn", None) == "gelu_new":
        text_config.dense_act_fn = "gelu"
    return text_config


def _token_ids_from(text_config, tokenizer, overwrite: bool = False):
    """The LLM config's BOS/EOS/PAD ids from its tokenizer where the config has none (or always)."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if overwrite or getattr(text_config, name, None) is None:
            setattr(text_config, name, getattr(tokenizer, name))


def _grow_vocabulary(model, processor):
    """`<image>` in the LLM vocabulary (the processor adds it when the tokenizer lacks it)."""
    rows = model.language_model.get_input_embeddings().weight.shape[0]
    if len(processor.tokenizer) > rows:
        resize_llm_vocabulary(model.language_model, len(processor.tokenizer))
        model.config.text_config = model.language_model.config
    model.config.image_token_index = processor.image_token_id


TEXT_PARTS = "the Q-Former's text parts (word and position embeddings, text feed-forward)"


def from_transformers_blip2(path: str, qformer_model: str, stage1: str | None = None, dtype=None):
    """(model, processor, sources) from a transformers BLIP-2 checkpoint (Hub id or folder); `sources`:
    [(checkpoint, what was taken from it)], for the model card."""
    from transformers import Blip2Config
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.utils import logging as transformers_logging

    blip2 = Blip2Config.from_pretrained(path)
    qformer_tokenizer = lavis_qformer_tokenizer(qformer_model)
    qformer = {k: v for k, v in blip2.qformer_config.to_dict().items() if k not in ("model_type", "use_qformer_text_input")}
    qformer["vocab_size"] = len(qformer_tokenizer)
    text_config = _lavis_text_config(blip2.text_config)
    config = InstructBlipConfig(
        vision_config={k: v for k, v in blip2.vision_config.to_dict().items() if k != "model_type"},
        qformer_config=qformer,
        text_config=text_config.to_dict(),
        num_query_tokens=blip2.num_query_tokens,
        image_token_index=getattr(blip2, "image_token_index", None),
    )
    # transformers' load report would call the text parts "newly initialized": they are filled below
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = InstructBlipForConditionalGeneration.from_pretrained(
            path, config=config, dtype=dtype, key_mapping=TRANSFORMERS_KEY_MAPPING, output_loading_info=True
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    text_only = {k for k in info["missing_keys"] if k.startswith("qformer.") and QFORMER_TEXT_ONLY.match(k[8:])}
    other = sorted(set(info["missing_keys"]) - text_only)
    if other or info["unexpected_keys"] or info["mismatched_keys"]:
        raise KeyError(f"{path}: the BLIP-2 weights do not fit InstructBLIP: missing {other[:5]}, "
                       f"unexpected {sorted(info['unexpected_keys'])[:5]}, mismatched {sorted(info['mismatched_keys'])[:5]}")
    sources = [(path, "BLIP-2 (transformers' format): vision tower, Q-Former, query tokens, projection, LLM")]
    if text_only:
        _fill_text_parts(model, qformer_text_parts(qformer_model, stage1, len(qformer_tokenizer),
                                                  config.vision_config.num_hidden_layers), stage1 or qformer_model)
        sources.append((stage1 or qformer_model, TEXT_PARTS))
    elif stage1 is not None:
        raise ValueError(f"{path} holds the Q-Former's text parts already: drop the stage-1 checkpoint {stage1}")

    image_settings, _ = ImageProcessingMixin.get_image_processor_dict(path)  # BLIP-2's preprocessor_config.json
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # batches need one (as compose_from_parts): the LLM's unknown or end token
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    processor = InstructBlipProcessor(
        image_processor=InstructBlipImageProcessor(
            **{k: image_settings[k] for k in ("size", "resample", "image_mean", "image_std") if k in image_settings}
        ),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=config.num_query_tokens,
        is_encoder_decoder=not config.use_decoder_only_language_model,
    )
    _grow_vocabulary(model, processor)
    _token_ids_from(model.config.text_config, tokenizer)
    if qformer_model not in dict(sources):
        sources.append((qformer_model, "the Q-Former's tokenizer"))
    return model.eval(), processor, sources


def from_lavis_blip2(
    path: str, qformer_model: str, language_model: str, stage1: str | None = None, vision_model: str | None = None,
    dtype=None, num_vision_layers: int = 39, report: ConversionReport | None = None,
):
    """(model, processor, sources) from a LAVIS BLIP-2 `.pth` (stage 1 or 2) + the LLM `language_model` (+
    the ViT `vision_model` when the file has none; when both have one they must be equal)."""
    report = report if report is not None else ConversionReport()
    if language_model is None:
        raise ValueError(f"{path} is a LAVIS BLIP-2 file, which holds no LLM: pass language_model (e.g. google/flan-t5-xl, "
                         "lmsys/vicuna-7b-v1.1)")
    lavis_llm = {}
    state = convert_lavis_state_dict(load_pickled_state_dict(local_file(path)), num_vision_layers, report, lavis_llm)
    if vision_model is not None:
        vision = convert_vision_state_dict(load_pickled_state_dict(local_file(vision_model)), num_vision_layers, report)
        for name, tensor in vision.items():
            if name in state and not torch.equal(state[name], tensor.to(state[name].dtype)):
                raise ValueError(f"{name}: the vision tower in {path} differs from {vision_model}'s; pass one of them")
            state.setdefault(name, tensor)
    if "vision_model.embeddings.patch_embedding.weight" not in state:
        raise ValueError(f"{path} holds no vision tower (visual_encoder.*): pass vision_model (LAVIS's eva_vit_g.pth)")
    if "vision_model.post_layernorm.weight" not in state:
        raise ValueError(f"{path} holds no ln_vision: expected a BLIP-2 checkpoint (stage 1 or 2)")

    qformer_tokenizer = lavis_qformer_tokenizer(qformer_model)
    has_text = "qformer.embeddings.word_embeddings.weight" in state
    if has_text and stage1 is not None:
        raise ValueError(f"{path} holds the Q-Former's text parts already (a stage-1 file): drop the stage-1 checkpoint {stage1}")
    stage = "stage 1" if has_text else "stage 2"
    sources = [(path, f"BLIP-2 (LAVIS, {stage}): Q-Former, query tokens, ln_vision"
                + (", vision tower" if "vision_model.embeddings.patch_embedding.weight" in state and vision_model is None else "")
                + (", projection" if "language_projection.weight" in state else ""))]
    if not has_text:
        state.update(qformer_text_parts(qformer_model, stage1, len(qformer_tokenizer), num_vision_layers, report))
        sources.append((stage1 or qformer_model, TEXT_PARTS))
    if vision_model is not None:
        sources.append((vision_model, "vision tower"))
    sources.append((language_model, "LLM"))
    if qformer_model not in dict(sources):
        sources.append((qformer_model, "the Q-Former's tokenizer"))
    vision_config, qformer_config = infer_architecture(state, num_vision_layers)
    if qformer_config["vocab_size"] != len(qformer_tokenizer):
        raise ValueError(f"the Q-Former has {qformer_config['vocab_size']} word embeddings, {qformer_model}'s tokenizer "
                         f"(+ [DEC]) {len(qformer_tokenizer)} tokens")

    text_config = _lavis_text_config(AutoConfig.from_pretrained(language_model))
    is_encoder_decoder = bool(getattr(text_config, "is_encoder_decoder", False))
    llm_class = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    llm = llm_class.from_pretrained(language_model, config=text_config, dtype=dtype)
    # LAVIS's InstructBLIP classes set up the LLM tokenizer this way (Vicuna: [PAD], BOS = EOS = UNK = </s>)
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    if text_config.model_type == "llama":  # Blip2VicunaInstruct's set-up; Blip2OPT / Blip2T5 keep their tokenizers
        tokenizer = prepare_llm_tokenizer(tokenizer, is_encoder_decoder)
    processor = InstructBlipProcessor(
        image_processor=InstructBlipImageProcessor(size=vision_config["image_size"]),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=state["query_tokens"].shape[1],
        is_encoder_decoder=is_encoder_decoder,
    )
    vocab_rows = llm.get_input_embeddings().weight.shape[0]
    config = InstructBlipConfig(
        vision_config=vision_config, qformer_config=qformer_config, text_config=llm.config.to_dict(),
        num_query_tokens=state["query_tokens"].shape[1],
    )
    with torch.device("meta"):
        model = InstructBlipForConditionalGeneration(config)
    model.language_model = llm
    projection = {k: v for k, v in state.items() if k.startswith("language_projection.")}
    rest = {k: v for k, v in state.items() if not k.startswith(("language_projection.", "language_model."))}
    rest = {k: v.to(dtype or torch.get_default_dtype()) if v.is_floating_point() else v for k, v in rest.items()}
    missing, unexpected = model.load_state_dict(rest, strict=False, assign=True)
    missing = [k for k in missing if not k.startswith(("language_model.", "language_projection.")) and not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"{path}: the BLIP-2 weights do not fit InstructBLIP: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.qformer.embeddings.position_ids = torch.arange(qformer_config["max_position_embeddings"]).expand((1, -1))
    model.language_projection.to_empty(device="cpu")
    if projection:
        model.language_projection.load_state_dict({k.split(".", 1)[1]: v for k, v in projection.items()})
    else:  # stage 1: a new projection, as LAVIS's nn.Linear starts
        model.language_projection.reset_parameters()
        report.skip("language_projection", "not in a stage-1 BLIP-2: newly initialised")
    if lavis_llm:  # the frozen LLM's tensors in the file must be the ones loaded from `language_model`
        llm_state = {f"language_model.{k}": v for k, v in llm.state_dict().items()}
        _check_llm_tensors(lavis_llm, llm_state, report, vocab_rows)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise KeyError(f"{path}: no weights for {leftover[:5]}")
    if dtype is not None:
        model.to(dtype)
    _grow_vocabulary(model, processor)
    _token_ids_from(model.config.text_config, tokenizer, overwrite=True)  # LAVIS's tokenizer set-up decides
    logger.info("BLIP-2 weights from %s:\n%s", path, report.summary())
    return model.eval(), processor, sources


def load_blip2(path: str, qformer_model: str = "bert-base-uncased", stage1: str | None = None,
               language_model: str | None = None, vision_model: str | None = None, dtype=None):
    """(model, processor, [(checkpoint, what was taken from it)] for the card) from a BLIP-2 of either kind."""
    kind = blip2_format(path)
    if kind == "transformers":
        if language_model is not None or vision_model is not None:
            raise ValueError(f"{path} is a whole BLIP-2 (vision tower and LLM included): drop language_model / vision_model")
        return from_transformers_blip2(path, qformer_model, stage1, dtype)
    if kind == "lavis":
        return from_lavis_blip2(path, qformer_model, language_model, stage1, vision_model, dtype)
    raise ValueError(f"{path} is not a BLIP-2 checkpoint (transformers' blip-2 folder / Hub id, or LAVIS's .pth)")
