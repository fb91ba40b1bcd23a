"""InstructBLIP configuration: vision tower, instruction-aware Q-Former, and any transformers LLM.

Ships to the Hub with the model (`trust_remote_code`): absolute `transformers` imports only.
Field names match transformers' `InstructBlipConfig`, so a `config.json` written by transformers
(`model_type: instructblip`, e.g. a Salesforce/instructblip-* snapshot) loads into these classes.
"""

from transformers import AutoConfig, GenerationConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# transformers' own model types, which we read (and rewrite to ours) when loading its checkpoints
TRANSFORMERS_MODEL_TYPES = {
    "instructblip": "instructblip_hub",
    "instructblip_vision_model": "instructblip_hub_vision",
    "instructblip_qformer": "instructblip_hub_qformer",
    # transformers' InstructBlipVideo* classes: the same model, frames through the Q-Former one by one
    "instructblipvideo": "instructblip_hub",
    "instructblipvideo_vision_model": "instructblip_hub_vision",
    "instructblipvideo_qformer": "instructblip_hub_qformer",
}


class InstructBlipVisionConfig(PreTrainedConfig):
    r"""The paper's EVA-CLIP ViT-g/14 (penultimate layer: 39 of its 40 blocks), by default.

    `qkv_bias` gives the query and value projections a bias and the key none, as EVA does.
    """

    model_type = "instructblip_hub_vision"
    base_config_key = "vision_config"

    hidden_size: int = 1408
    intermediate_size: int = 6144
    num_hidden_layers: int = 39
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    initializer_range: float = 1e-10
    qkv_bias: bool = True


class InstructBlipQFormerConfig(PreTrainedConfig):
    r"""The Q-Former (bert-base-uncased sized). Cross-attention to the image in every
    `cross_attention_frequency`-th layer, keys and values projected from `encoder_hidden_size`."""

    model_type = "instructblip_hub_qformer"
    base_config_key = "qformer_config"

    vocab_size: int = 30523
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    cross_attention_frequency: int = 2
    encoder_hidden_size: int = 1408


class InstructBlipConfig(PreTrainedConfig):
    r"""
    Args:
        vision_config: the EVA ViT's settings (a dict or [`InstructBlipVisionConfig`]), or any vision
            tower transformers can build, named by its `model_type` (`clip_vision_model`,
            `siglip_vision_model`, ...). For such a tower, `vision_feature_layer` picks the hidden
            state the Q-Former attends to, and a trainable LayerNorm follows it (LAVIS's `ln_vision`).
        qformer_config: the Q-Former's settings.
        text_config: any causal LM (llama, mistral, qwen2, opt, gpt2, ...) or encoder-decoder (t5)
            config transformers can build; `model_type` picks it.
        num_query_tokens: learned queries, hence visual tokens per image (per frame for video).
        image_token_index: id of the `<image>` placeholder in the LLM vocabulary; the processor
            puts `num_query_tokens` of them at the front of the LLM input, the model writes the
            projected query outputs there.
        vision_feature_layer: hidden-state index taken from a non-EVA vision tower (-1: last).
        vision_layernorm_eps: eps of the trainable LayerNorm after the vision tower (LAVIS's
            `ln_vision`, `post_layernorm` here). None: 1e-5 with `match_lavis` (LAVIS builds it as
            `nn.LayerNorm(num_features)`, and the released checkpoints were trained with it), else the
            vision config's `layer_norm_eps` (what transformers' port uses, 1e-6 for EVA).
        match_lavis: behave like LAVIS, the code behind the paper's numbers, where transformers' port
            differs at the LLM seam: the `<image>` placeholder (a token LAVIS's vocabulary does not have)
            gets no probability (its logit is -inf in `forward`, ranking and decoding), and with a
            decoder-only LLM the repetition penalty covers the generated tokens only (LAVIS calls the
            LLM's `generate` with `inputs_embeds` and no prompt ids); the post-ViT LayerNorm's eps is
            LAVIS's (see `vision_layernorm_eps`). False: transformers' `InstructBlipForConditionalGeneration`
            exactly (the prompt ids are penalised too).
            Decoding lengths are not part of this switch: the paper's settings are stated in new
            tokens in `paper_generation_config` and `evaluation/tasks.py`.
        instruction_aware: whether the Q-Former reads the instruction (the paper's instruction-aware
            visual features). False: BLIP-2's Q-Former input, the queries only, whatever
            `qformer_input_ids` are passed (the paper's Table 2 ablation "w/o instruction-aware visual
            features").
        trained_on_held_out: the held-out datasets (registry names, e.g. `scienceqa`) this model was
            fine-tuned on (`train.py --finetune_on_held_out`): its scores there are fine-tuned results,
            which `evaluate.py` never reports as zero-shot.
    """

    model_type = "instructblip_hub"
    attribute_map = {"image_token_id": "image_token_index"}
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=InstructBlipVisionConfig),
        "qformer_config": SubConfigSpec(config_class=InstructBlipQFormerConfig),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    qformer_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    num_query_tokens: int = 32
    image_token_index: int | None = None
    vision_feature_layer: int = -1
    vision_layernorm_eps: float | None = None
    match_lavis: bool = True
    instruction_aware: bool = True
    trained_on_held_out: list | None = None
    initializer_factor: float = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.vision_config = _vision_config_from(self.vision_config)
        if isinstance(self.qformer_config, dict):
            self.qformer_config = {k: v for k, v in self.qformer_config.items() if k != "model_type"}
        kwargs.pop("use_decoder_only_language_model", None)  # derived below, never trusted from a file
        super().__post_init__(**kwargs)
        self.qformer_config.encoder_hidden_size = self.vision_config.hidden_size

    @property
    def use_decoder_only_language_model(self) -> bool:
        return not getattr(self.text_config, "is_encoder_decoder", False)

    @property
    def resolved_vision_layernorm_eps(self) -> float:
        """The post-ViT LayerNorm's eps: `vision_layernorm_eps`, or by default LAVIS's 1e-5 with
        `match_lavis` and the vision config's own eps without."""
        if self.vision_layernorm_eps is not None:
            return self.vision_layernorm_eps
        return 1e-5 if self.match_lavis else getattr(self.vision_config, "layer_norm_eps", 1e-6)

    @property
    def uses_eva_vision(self) -> bool:
        return isinstance(self.vision_config, InstructBlipVisionConfig)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return convert_transformers_config_dict(config_dict), kwargs

    def to_dict(self):
        output = super().to_dict()
        output["use_decoder_only_language_model"] = self.use_decoder_only_language_model
        return output


def _vision_config_from(vision_config):
    """A dict names its tower by `model_type`: ours (the default) or one transformers can build."""
    if isinstance(vision_config, PreTrainedConfig) and not isinstance(vision_config, InstructBlipVisionConfig):
        if TRANSFORMERS_MODEL_TYPES.get(vision_config.model_type) == InstructBlipVisionConfig.model_type:
            vision_config = vision_config.to_dict()  # transformers' InstructBlip(Video)VisionConfig: ours
    if vision_config is None or isinstance(vision_config, PreTrainedConfig):
        return vision_config
    if not isinstance(vision_config, dict):
        raise TypeError(f"`vision_config` must be a dict or a PreTrainedConfig, got {type(vision_config).__name__}")
    vision_config = dict(vision_config)
    model_type = vision_config.pop("model_type", InstructBlipVisionConfig.model_type)
    if TRANSFORMERS_MODEL_TYPES.get(model_type, model_type) == InstructBlipVisionConfig.model_type:
        return InstructBlipVisionConfig(**vision_config)
    try:
        return AutoConfig.for_model(model_type, **vision_config)
    except ValueError as err:
        raise ValueError(
            f"`vision_config.model_type` is {model_type!r}: expected {InstructBlipVisionConfig.model_type!r} "
            "(the paper's EVA ViT) or a vision model type transformers knows (e.g. 'clip_vision_model', "
            "'siglip_vision_model')"
        ) from err


def convert_transformers_config_dict(config_dict: dict) -> dict:
    """Rewrite a transformers `instructblip` / `instructblipvideo` config dict to our model types (no-op
    for ours). A video config's placeholder is `video_token_index`: ours calls it `image_token_index`
    (the model writes each frame's visual tokens into the placeholders whatever they are named)."""
    if config_dict.get("model_type") not in ("instructblip", "instructblipvideo"):
        return config_dict
    config_dict = dict(config_dict, model_type=TRANSFORMERS_MODEL_TYPES[config_dict["model_type"]])
    if config_dict.get("image_token_index") is None and config_dict.get("video_token_index") is not None:
        config_dict["image_token_index"] = config_dict["video_token_index"]
    for key in ("vision_config", "qformer_config"):
        sub = config_dict.get(key)
        if isinstance(sub, dict) and sub.get("model_type") in TRANSFORMERS_MODEL_TYPES:
            config_dict[key] = dict(sub, model_type=TRANSFORMERS_MODEL_TYPES[sub["model_type"]])
    # transformers' model class names do not apply to ours; auto_map is set when we save
    config_dict.pop("architectures", None)
    return config_dict


def paper_generation_config(text_config) -> GenerationConfig:
    """LAVIS's `generate` defaults: beam search 5, max length 256, min length 1, repetition penalty
    1.5, length penalty 1.0 (top_p 0.9 and temperature 1 only apply when sampling).

    In new tokens: FlanT5 gets `max_new_tokens=max_length` from LAVIS and `min_length` counts its
    decoder start token, so 256 / 0 new tokens at least. For a decoder-only LLM, LAVIS's call
    `generate(inputs_embeds=..., max_length=256, min_length=1)` ran under transformers 4.28-4.33,
    which seeded the output with a BOS that counts towards both lengths and is never fed to the
    model: 255 new tokens at most, none at least (an empty answer is allowed)."""
    decoder_only = not getattr(text_config, "is_encoder_decoder", False)
    return GenerationConfig(
        num_beams=5,
        max_new_tokens=255 if decoder_only else 256,
        min_new_tokens=0,
        repetition_penalty=1.5,
        length_penalty=1.0,
        do_sample=False,
        bos_token_id=getattr(text_config, "bos_token_id", None),  # T5's config need not have one
        eos_token_id=text_config.eos_token_id,
        pad_token_id=text_config.pad_token_id,
        decoder_start_token_id=getattr(text_config, "decoder_start_token_id", None),
    )


__all__ = ["InstructBlipConfig", "InstructBlipQFormerConfig", "InstructBlipVisionConfig", "paper_generation_config"]
