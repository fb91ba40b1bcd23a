"""InstructBLIP: a frozen vision tower, an instruction-aware Q-Former, a projection, a frozen LLM.

Ships to the Hub with the saved model (`trust_remote_code`): absolute `transformers` imports and
sibling-relative imports only. State-dict names are those of transformers'
`InstructBlipForConditionalGeneration`, so the published Salesforce/instructblip-* safetensors load
without renaming. Read top to bottom in the order data flows: vision tower -> Q-Former -> model.
"""

import copy
import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedModel
from transformers.generation import LogitsProcessorList, RepetitionPenaltyLogitsProcessor
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling, BaseModelOutputWithPoolingAndCrossAttentions
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.blip_2.modeling_blip_2 import eager_attention_forward
from transformers.utils import ModelOutput

from .configuration_instructblip import (
    InstructBlipConfig,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    convert_transformers_config_dict,
)


AUTO_MAP = {
    "AutoConfig": "configuration_instructblip.InstructBlipConfig",
    "AutoModel": "modeling_instructblip.InstructBlipForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_instructblip.InstructBlipForConditionalGeneration",
}


@dataclass
class InstructBlipImageFeatures(ModelOutput):
    r"""
    transformers' fields (`BaseModelOutputWithVisionQformerOutputs`):
    last_hidden_state (`[batch * num_frames, num_patches (+1), vision_hidden]`): the vision features
        after the trainable LayerNorm (= `image_embeds`).
    pooler_output (`[batch, num_frames * num_query_tokens, text_hidden]`): the projected query outputs
        (= `language_model_inputs`).
    hidden_states / attentions: the vision tower's, when asked for.
    vision_outputs: the vision tower's output (None when precomputed `vision_features` were given).
    qformer_outputs: the Q-Former's output over [queries ; instruction] (hidden states, attentions and
        cross-attentions when asked for).

    Ours:
    language_model_inputs (`[batch, num_frames * num_query_tokens, text_hidden]`): the visual tokens
        written into the LLM input (frames of a video concatenated along the sequence).
    query_output (`[batch * num_frames, num_query_tokens, qformer_hidden]`): the Q-Former's query outputs.
    image_embeds (`[batch * num_frames, num_patches (+1), vision_hidden]`): the vision tower's features
        after the trainable LayerNorm, which the Q-Former cross-attends to.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    vision_outputs: BaseModelOutputWithPooling | None = None
    qformer_outputs: BaseModelOutputWithPoolingAndCrossAttentions | None = None
    language_model_inputs: torch.FloatTensor | None = None
    query_output: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


@dataclass
class InstructBlipForConditionalGenerationModelOutput(ModelOutput):
    r"""
    loss: language-modelling loss over the supervised (label != -100) positions.
    logits: the LLM's logits (decoder logits for encoder-decoder LLMs).
    image_features: [`InstructBlipImageFeatures`] of the images in the batch.
    language_model_outputs: the LLM's own output (past_key_values, hidden states, ...).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    image_features: InstructBlipImageFeatures | None = None
    language_model_outputs: ModelOutput | None = None


@dataclass
class InstructBlipRankingOutput(ModelOutput):
    r"""
    sum_logprobs (`[batch, num_candidates]`): log-likelihood of each candidate (its tokens and EOS), summed;
        `-inf` for absent candidates (all-zero mask rows).
    num_tokens (`[batch, num_candidates]`): scored tokens per candidate.
    mean_logprobs (`[batch, num_candidates]`): `sum_logprobs / num_tokens` (length-normalised).
    """

    sum_logprobs: torch.FloatTensor | None = None
    num_tokens: torch.LongTensor | None = None
    mean_logprobs: torch.FloatTensor | None = None


def _attention_function(config) -> Callable:
    return ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)


def _all_set(mask: torch.Tensor) -> bool:
    """Whether a 1/0 mask has no 0: the eager shortcuts for unpadded batches (no attention mask, no
    position ids) take it. Under `torch.compile` it answers False, so the general path runs (the same
    result for an unpadded batch) and no data-dependent branch breaks the captured graph."""
    return not torch.compiler.is_compiling() and bool(mask.all())


def _require(condition: torch.Tensor, message) -> None:
    """Raise ValueError(message(compiled=False)) unless `condition` (a bool tensor) holds. Under
    `torch.compile` the check runs inside the graph (`torch._assert_async`) with
    message(compiled=True), which must not read tensor values."""
    if torch.compiler.is_compiling():
        torch._assert_async(condition, message(compiled=True))
    elif not bool(condition):
        raise ValueError(message(compiled=False))


# ---------------------------------------------------------------------------------------------
# Vision tower: EVA-CLIP ViT (CLS + patches, pre-LN blocks, q/v-bias attention, no final norm)
# ---------------------------------------------------------------------------------------------


class InstructBlipVisionEmbeddings(nn.Module):
    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.config = config
        self.patch_size = config.patch_size
        self.class_embedding = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        num_positions = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.randn(1, num_positions, config.hidden_size))

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """Bicubic resize of the patch position grid to `height x width` pixels; the CLS position is kept."""
        num_positions = self.position_embedding.shape[1] - 1
        grid = int(num_positions**0.5)
        new_h, new_w = height // self.patch_size, width // self.patch_size
        if new_h == grid and new_w == grid:
            return self.position_embedding
        dim = self.position_embedding.shape[-1]
        patch_pos = self.position_embedding[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(new_h, new_w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat([self.position_embedding[:, :1], patch_pos], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[batch, channels, height, width] -> [batch, 1 + patches, hidden]. Other image sizes than the
        config's interpolate the position embedding (the grid must still divide by the patch size)."""
        batch_size, _, height, width = pixel_values.shape
        dtype = self.patch_embedding.weight.dtype
        patches = self.patch_embedding(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(batch_size, 1, -1).to(dtype)
        embeddings = torch.cat([cls, patches], dim=1)
        return embeddings + self.interpolate_pos_encoding(height, width).to(dtype)


class InstructBlipAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (EVA: bias on q and v, the key's is zero)."""

    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        if self.head_dim * self.num_heads != config.hidden_size:
            raise ValueError(
                f"vision_config.hidden_size ({config.hidden_size}) must be divisible by "
                f"num_attention_heads ({config.num_attention_heads})"
            )
        self.scale = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.projection = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch_size, seq_len, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.config.attention_dropout if self.training else 0.0
        attn_output, attn_weights = _attention_function(self.config)(
            self, query, key, value, attention_mask=None, dropout=dropout, scaling=self.scale
        )
        return self.projection(attn_output.reshape(batch_size, seq_len, hidden)), attn_weights


class InstructBlipMLP(nn.Module):
    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class InstructBlipEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = InstructBlipAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = InstructBlipMLP(config)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (hidden_states, attention weights or None: only the eager implementation has them)."""
        attention, weights = self.self_attn(self.layer_norm1(hidden_states))
        hidden_states = hidden_states + attention
        return hidden_states + self.mlp(self.layer_norm2(hidden_states)), weights


class InstructBlipEncoder(nn.Module):
    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([InstructBlipEncoderLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
        all_hidden, all_weights = [hidden_states], []
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states)
            all_hidden.append(hidden_states)
            all_weights.append(weights)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_weights) if output_attentions else None,
        )


class InstructBlipVisionModel(nn.Module):
    """The EVA ViT and the LayerNorm after it (`post_layernorm`, LAVIS's trainable `ln_vision`)."""

    # what transformers reads on a composite model's towers before it dispatches an implementation
    _supports_sdpa = _supports_flash_attn = _supports_flex_attn = True

    def __init__(self, config: InstructBlipVisionConfig, post_layernorm_eps: float = 1e-5):
        super().__init__()
        self.config = config
        self.embeddings = InstructBlipVisionEmbeddings(config)
        self.encoder = InstructBlipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=post_layernorm_eps)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
        """Features before `post_layernorm`: `last_hidden_state` [batch, 1 + patches, hidden]."""
        return self.encoder(self.embeddings(pixel_values), output_hidden_states, output_attentions)


# ---------------------------------------------------------------------------------------------
# Q-Former: BERT layers over [query tokens ; instruction tokens], queries cross-attend to the image
# ---------------------------------------------------------------------------------------------


class InstructBlipQFormerEmbeddings(nn.Module):
    """Word + absolute position embeddings for the instruction only; the queries get none. One shared
    LayerNorm and dropout over [queries ; instruction]."""

    def __init__(self, config: InstructBlipQFormerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False)

    def forward(self, input_ids: torch.LongTensor | None, query_embeds: torch.Tensor, position_ids=None) -> torch.Tensor:
        if input_ids is not None and input_ids.shape[1] > 0:
            seq_len = input_ids.shape[1]
            if seq_len > (limit := self.position_ids.shape[1]):
                raise ValueError(f"qformer_input_ids has {seq_len} tokens; the Q-Former has {limit} positions")
            if position_ids is None:
                position_ids = self.position_ids[:, :seq_len]
            text = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
            embeddings = torch.cat([query_embeds.to(text.dtype), text], dim=1)
        else:
            embeddings = query_embeds
        embeddings = embeddings.to(self.layernorm.weight.dtype)
        return self.dropout(self.layernorm(embeddings))


class InstructBlipQFormerMultiHeadAttention(nn.Module):
    def __init__(self, config: InstructBlipQFormerConfig, is_cross_attention: bool = False):
        super().__init__()
        self.config = config
        if config.hidden_size % config.num_attention_heads != 0:
            raise ValueError(
                f"qformer_config.hidden_size ({config.hidden_size}) must be divisible by "
                f"num_attention_heads ({config.num_attention_heads})"
            )
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        kv_size = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(kv_size, config.hidden_size)
        self.value = nn.Linear(kv_size, config.hidden_size)

    def forward(self, hidden_states, key_value_states, attention_mask=None):
        """Queries from `hidden_states` [batch, q_len, hidden], keys/values from `key_value_states`
        [batch, kv_len, hidden or encoder_hidden]."""
        batch_size, q_len, _ = hidden_states.shape
        kv_len = key_value_states.shape[1]
        query = self.query(hidden_states).view(batch_size, q_len, -1, self.head_dim).transpose(1, 2)
        key = self.key(key_value_states).view(batch_size, kv_len, -1, self.head_dim).transpose(1, 2)
        value = self.value(key_value_states).view(batch_size, kv_len, -1, self.head_dim).transpose(1, 2)
        dropout = self.config.attention_probs_dropout_prob if self.training else 0.0
        attn_output, attn_weights = _attention_function(self.config)(
            self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling
        )
        return attn_output.reshape(batch_size, q_len, -1), attn_weights


class InstructBlipQFormerOutput(nn.Module):
    """BERT's sublayer output: LayerNorm(dropout(dense(x)) + residual), after attention or a feed-forward."""

    def __init__(self, config: InstructBlipQFormerConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class InstructBlipQFormerAttention(nn.Module):
    def __init__(self, config: InstructBlipQFormerConfig, is_cross_attention: bool = False):
        super().__init__()
        self.attention = InstructBlipQFormerMultiHeadAttention(config, is_cross_attention)
        self.output = InstructBlipQFormerOutput(config, config.hidden_size)

    def forward(self, hidden_states, key_value_states=None, attention_mask=None):
        key_value_states = hidden_states if key_value_states is None else key_value_states
        attention, weights = self.attention(hidden_states, key_value_states, attention_mask)
        return self.output(attention, hidden_states), weights


class InstructBlipQFormerIntermediate(nn.Module):
    def __init__(self, config: InstructBlipQFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class InstructBlipQFormerLayer(GradientCheckpointingLayer):
    """Bidirectional self-attention over [queries ; text]; cross-attention for the queries in every
    `cross_attention_frequency`-th layer; separate feed-forward blocks for queries and text. Every
    layer computes the text rows too, the last one included (LAVIS does): their output is not used
    after the last layer, but every trainable weight gets a gradient, so DDP without
    `find_unused_parameters` works."""

    def __init__(self, config: InstructBlipQFormerConfig, layer_idx: int):
        super().__init__()
        self.attention = InstructBlipQFormerAttention(config)
        self.has_cross_attention = layer_idx % config.cross_attention_frequency == 0
        if self.has_cross_attention:
            self.crossattention = InstructBlipQFormerAttention(config, is_cross_attention=True)
        self.intermediate = InstructBlipQFormerIntermediate(config)
        self.output = InstructBlipQFormerOutput(config, config.intermediate_size)
        self.intermediate_query = InstructBlipQFormerIntermediate(config)
        self.output_query = InstructBlipQFormerOutput(config, config.intermediate_size)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, query_length: int = 0):
        """Returns (hidden_states [batch, queries + text, hidden], self-attention weights, cross-attention
        weights); the weights are None unless the eager implementation computes them."""
        attention_output, self_weights = self.attention(hidden_states, hidden_states, attention_mask)
        queries = attention_output[:, :query_length]
        cross_weights = None
        if self.has_cross_attention:
            queries, cross_weights = self.crossattention(queries, encoder_hidden_states)
        queries = self.output_query(self.intermediate_query(queries), queries)
        if attention_output.shape[1] == query_length:
            return queries, self_weights, cross_weights
        text = attention_output[:, query_length:]
        text = self.output(self.intermediate(text), text)
        return torch.cat([queries, text], dim=1), self_weights, cross_weights


class InstructBlipQFormerEncoder(nn.Module):
    def __init__(self, config: InstructBlipQFormerConfig):
        super().__init__()
        self.layer = nn.ModuleList([InstructBlipQFormerLayer(config, i) for i in range(config.num_hidden_layers)])

    def forward(
        self, hidden_states, attention_mask, encoder_hidden_states, query_length,
        output_hidden_states: bool = False, output_attentions: bool = False,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        all_hidden, all_self, all_cross = [hidden_states], [], []
        for layer in self.layer:
            # tensors positional: gradient checkpointing passes keyword arguments through unchanged but
            # needs tensors that may carry gradients as positional ones
            hidden_states, self_weights, cross_weights = layer(
                hidden_states, attention_mask, encoder_hidden_states, query_length=query_length
            )
            all_hidden.append(hidden_states)
            all_self.append(self_weights)
            if layer.has_cross_attention:
                all_cross.append(cross_weights)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=hidden_states[:, 0],
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_self) if output_attentions else None,
            cross_attentions=tuple(all_cross) if output_attentions else None,
        )


class InstructBlipQFormerModel(nn.Module):
    _supports_sdpa = _supports_flash_attn = _supports_flex_attn = True

    def __init__(self, config: InstructBlipQFormerConfig):
        super().__init__()
        self.config = config
        self.embeddings = InstructBlipQFormerEmbeddings(config)
        self.encoder = InstructBlipQFormerEncoder(config)

    def forward(
        self, query_embeds, input_ids, attention_mask, encoder_hidden_states, output_hidden_states=False, output_attentions=False
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """
        query_embeds: [batch, num_query_tokens, hidden]; input_ids / attention_mask: [batch, text_len]
        (the instruction, BERT-tokenized); encoder_hidden_states: [batch, image_tokens, encoder_hidden].
        Returns `last_hidden_state` [batch, num_query_tokens + text_len, hidden]: the queries first.
        """
        query_length = query_embeds.shape[1]
        position_ids = None
        if input_ids is not None and attention_mask is not None and not _all_set(attention_mask):
            # text positions count real tokens, so left padding numbers the instruction as right padding does
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        embeddings = self.embeddings(input_ids, query_embeds, position_ids)
        mask = None
        if input_ids is not None and attention_mask is not None:
            query_mask = attention_mask.new_ones(attention_mask.shape[0], query_length)
            # in the format the attention implementation takes (flash: 2D or None, flex: a block mask)
            mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=embeddings, attention_mask=torch.cat([query_mask, attention_mask], dim=1)
            )
        return self.encoder(
            embeddings, mask, encoder_hidden_states.to(embeddings.dtype), query_length, output_hidden_states, output_attentions
        )


def resize_llm_vocabulary(language_model, rows: int):
    """`resize_token_embeddings(rows)` that keeps a separate output layer separate, and is reproducible.
    transformers 5 ties every T5's `lm_head` to `shared` when it resizes (its T5 config always says
    tied), while FlanT5's are two different matrices: tied, one of them would be lost. The new rows
    (the pad and `<image>` tokens) are the mean of the old ones, in both matrices, rather than a random draw."""
    head, embedding = language_model.get_output_embeddings(), language_model.get_input_embeddings()
    untied = head is not None and head.weight is not embedding.weight
    old_rows = embedding.weight.shape[0]
    old_head = head.weight.detach().clone() if untied else None
    language_model.resize_token_embeddings(rows, mean_resizing=False)
    head, embedding = language_model.get_output_embeddings(), language_model.get_input_embeddings()
    if untied and head.weight is embedding.weight:
        weight = embedding.weight.detach().clone()
        weight[: old_head.shape[0]] = old_head
        head.weight = nn.Parameter(weight)
    with torch.no_grad():
        for matrix in {id(m.weight): m.weight for m in (embedding, head) if m is not None}.values():
            if matrix.shape[0] > old_rows:
                matrix[old_rows:] = matrix[:old_rows].mean(0)
    return language_model


def _unpack_cpu_4bit_weights(model):
    """bitsandbytes (0.50) repacks 4-bit weights for its AVX512 CPU kernel at the first forward; its own inverse leaves a
    plain absmax packed (saved, the model reloads wrong) and re-quantizes a nested one. Undo it, keeping the kernel's absmax."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            absmax, state.original_nested = state.absmax, False  # packed: [K / blocksize, N], bf16
            weight.data, state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            state.absmax = absmax.T.reshape(-1).float()
            module.quant_state = weight.quant_state = state


def _int8_cpu_linear(module, x):
    """torchao (0.18) int8 weight-only linear converts the whole int8 weight to bf16 per call (Vicuna's 4096 x 11008, 5 beams:
    30 ms against 5 for PyTorch's `_weight_int8pack_mm`, which reads int8 as it is). That kernel wins up to ~16 rows
    (decoding), needs bf16 inputs and 16-byte-aligned weights (it crashes on others: a mapped checkpoint may leave them
    8 bytes off, and copying them would cost their memory); the rest runs torchao's linear."""
    weight, bias = module.weight, module.bias
    rows = x.reshape(-1, x.shape[-1])
    if x.device.type != "cpu" or x.dtype != torch.bfloat16 or rows.shape[0] > 16 or weight.qdata.data_ptr() % 16 \
            or not weight.qdata.is_contiguous() or x.requires_grad:  # the kernel has no backward
        return F.linear(x, weight, bias)
    out = torch._weight_int8pack_mm(rows.contiguous(), weight.qdata, weight.scale.reshape(-1).to(x.dtype))
    out = out.reshape(*x.shape[:-1], out.shape[-1])
    return out if bias is None else out + bias


def _suppress_placeholder_logits(module, args, output):
    """Forward hook on the LLM (`match_lavis`): the `<image>` placeholder's logit is the dtype's lowest
    value, so no softmax gives it probability (exp underflows to 0): the loss, ranking and beam scores
    are LAVIS's, whose vocabulary has no such token. Not -inf, so that differences of logits stay finite."""
    token = getattr(module, "_instructblip_suppressed_token", None)
    logits = getattr(output, "logits", None)
    if token is not None and logits is not None and 0 <= token < logits.shape[-1]:
        logits[..., token] = torch.finfo(logits.dtype).min  # in place: the LM head's backward does not read its output
    return output


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class InstructBlipPreTrainedModel(PreTrainedModel):
    config: InstructBlipConfig
    config_class = InstructBlipConfig
    base_model_prefix = "instructblip"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _keep_in_fp32_modules = ["query_tokens"]
    _no_split_modules = [
        "InstructBlipEncoderLayer",
        "InstructBlipQFormerLayer",
        "InstructBlipQFormerEmbeddings",
    ]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, InstructBlipVisionEmbeddings):
            init.trunc_normal_(module.position_embedding, mean=0.0, std=std)
            init.trunc_normal_(module.class_embedding, mean=0.0, std=std)
        elif isinstance(module, InstructBlipForConditionalGeneration):
            init.normal_(module.query_tokens, mean=0.0, std=std)  # the paper's N(0, 0.02)
        elif isinstance(module, InstructBlipQFormerEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class InstructBlipForConditionalGeneration(InstructBlipPreTrainedModel, GenerationMixin):
    """Image(s) or video + instruction -> text, with the paper's instruction-aware visual features.

    Inputs follow transformers' `InstructBlipForConditionalGeneration`: the processor puts
    `num_query_tokens` `<image>` placeholders (times the number of frames for a video) at the front
    of `input_ids`, and the model writes the projected query outputs into those positions.
    """

    # What `from_pretrained(..., quantization_config=...)` leaves in the model's dtype when the config
    # names no modules of its own: everything but the LLM, whose weights are read again for every
    # generated token (the vision tower and Q-Former run once per image, and the Q-Former, query tokens
    # and projection are what instruction tuning trained), and the LLM's output layer, which
    # transformers' quantizers keep too. A config that names its own list (`modules_to_not_convert`,
    # `llm_int8_skip_modules`, even `[]`) is taken as given.
    _quantization_skip_modules = (
        "vision_model", "vision_layernorm", "query_tokens", "qformer", "language_projection", "language_model.lm_head",
    )

    def __init__(self, config: InstructBlipConfig):
        if not isinstance(config, InstructBlipConfig):  # e.g. transformers' own InstructBlipConfig
            given = config
            config = InstructBlipConfig.from_dict(convert_transformers_config_dict(given.to_dict()))
            for key in ("", "vision_config", "qformer_config", "text_config"):  # not in to_dict()
                source, target = (given, config) if not key else (getattr(given, key, None), getattr(config, key))
                if source is not None and getattr(source, "_attn_implementation_internal", None) is not None:
                    target._attn_implementation_internal = source._attn_implementation_internal
        super().__init__(config)
        # transformers resolves the attention implementation per PreTrainedModel; our vision tower and
        # Q-Former are plain modules, so their configs take the resolved top-level choice
        own_configs = [config.qformer_config] + ([config.vision_config] if config.uses_eva_vision else [])
        for sub_config in own_configs:
            if sub_config._attn_implementation is None:
                sub_config._attn_implementation_internal = config._attn_implementation or "sdpa"
        if config.uses_eva_vision:
            self.vision_model = InstructBlipVisionModel(config.vision_config, config.resolved_vision_layernorm_eps)
        else:
            self.vision_model = AutoModel.from_config(config.vision_config)
            # LAVIS's `ln_vision` after a foreign tower; the EVA tower keeps it as `post_layernorm`
            self.vision_layernorm = nn.LayerNorm(config.vision_config.hidden_size, eps=config.resolved_vision_layernorm_eps)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size))
        self.qformer = InstructBlipQFormerModel(config.qformer_config)
        self.language_projection = nn.Linear(config.qformer_config.hidden_size, config.text_config.hidden_size)
        if config.use_decoder_only_language_model:
            self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        else:
            self.language_model = AutoModelForSeq2SeqLM.from_config(config.text_config)
        self._frozen_modules_in_eval = False
        self.post_init()

    def _suppress_placeholder(self):
        """With `config.match_lavis`, make sure the LLM (whichever module `language_model` is now)
        gives the `<image>` placeholder no probability (`_suppress_placeholder_logits`)."""
        if torch.compiler.is_compiling():  # installed when the LLM was set (`__setattr__`) and by eager calls
            return
        model = self.language_model
        token = self.config.image_token_index if getattr(self.config, "match_lavis", True) else None
        model.__dict__["_instructblip_suppressed_token"] = token
        if token is not None and _suppress_placeholder_logits not in model._forward_hooks.values():
            model.register_forward_hook(_suppress_placeholder_logits)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "language_model" and isinstance(value, nn.Module):  # built here, or put in later (compose_from_parts)
            self._suppress_placeholder()

    # -- plumbing the LLM's embeddings and generation through ------------------------------------

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        self.language_model.set_output_embeddings(new_embeddings)

    def get_encoder(self, modality=None):
        return self.language_model.get_encoder() if modality is None else super().get_encoder(modality=modality)

    def get_decoder(self):
        return self.language_model.get_decoder()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, reading safetensors only: unpickling a `.bin`/`.pt` file can
        run arbitrary code, so pickled weights are refused (the LAVIS converter is the one place that
        reads pickles, with `weights_only=True`)."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("use_safetensors=False is refused: pickled weights can run arbitrary code when loaded. "
                             "Save them as safetensors first (safetensors.torch.save_file).")
        kwargs["use_safetensors"] = True
        if kwargs.get("quantization_config") is not None:
            kwargs["quantization_config"] = cls._with_quantization_skip_modules(kwargs["quantization_config"])
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except OSError as err:
            folder = Path(str(pretrained_model_name_or_path))
            pickles = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            if folder.is_dir() and pickles:
                raise ValueError(
                    f"{folder} holds pickled weights ({', '.join(pickles)}) and no safetensors. We load "
                    "safetensors only, because unpickling can run arbitrary code. Convert them once with "
                    "`torch.load(path, weights_only=True)` + `safetensors.torch.save_file`, or, for the original "
                    "LAVIS checkpoints, with `python -m modeling_instructblip.convert`."
                ) from err
            raise
        for module in (model[0] if isinstance(model, tuple) else model).modules():  # quantized layers' CPU kernels
            weight = getattr(module, "weight", None)
            if type(module).__name__ == "Linear4bit" and (module.out_features % 32 or module.in_features % 64):
                module.support_avx512bf16_for_cpu = False  # bitsandbytes' AVX512 kernel fails on them; its plain path
            int8 = isinstance(module, nn.Linear) and type(weight).__name__ == "Int8Tensor" and weight.act_quant_kwargs is None
            if int8 and weight.act_pre_scale is None and weight.scale.numel() == weight.shape[0] \
                    and not (weight.shape[0] % 64 or weight.shape[1] % 64):
                module.forward = functools.partial(_int8_cpu_linear, module)
        return model

    @classmethod
    def _with_quantization_skip_modules(cls, quantization_config):
        """A copy of transformers' quantization config (or its dict) that keeps
        `_quantization_skip_modules` out of the quantizer's reach, unless it names modules itself."""
        from transformers.quantizers.auto import AutoQuantizationConfig
        from transformers.utils.quantization_config import QuantizationConfigMixin

        if isinstance(quantization_config, dict):
            quantization_config = AutoQuantizationConfig.from_dict(dict(quantization_config))
        if not isinstance(quantization_config, QuantizationConfigMixin):
            raise TypeError(
                "quantization_config: expected one of transformers' quantization configs (e.g. TorchAoConfig, "
                f"BitsAndBytesConfig) or its dict, got {type(quantization_config).__name__}"
            )
        quantization_config = copy.deepcopy(quantization_config)
        # bitsandbytes and HQQ name the list differently; every other quantizer calls it modules_to_not_convert
        for name in ("llm_int8_skip_modules", "skip_modules", "modules_to_not_convert"):
            if hasattr(quantization_config, name):
                if getattr(quantization_config, name) is None:
                    setattr(quantization_config, name, list(cls._quantization_skip_modules))
                break
        return quantization_config

    def set_attn_implementation(self, attn_implementation: str | dict, **kwargs):
        """transformers' switch, reaching our vision tower and Q-Former too: they are plain modules,
        which transformers' own walk over sub-models does not visit."""
        super().set_attn_implementation(attn_implementation, **kwargs)
        keys = ["qformer_config"] + (["vision_config"] if self.config.uses_eva_vision else [])
        for key in keys:
            wanted = attn_implementation
            if isinstance(wanted, dict):  # {"": ...} is the top level only; a sub-config changes when named
                if key not in wanted:
                    continue
                wanted = wanted[key]
            if isinstance(wanted, dict):
                wanted = wanted.get("", getattr(self.config, key)._attn_implementation)
            getattr(self.config, key)._attn_implementation_internal = wanted or "sdpa"

    def save_pretrained(self, save_directory, *args, **kwargs):
        # both Auto classes resolve to this class; register_for_auto_class records only one
        self.config.auto_map = dict(AUTO_MAP)
        quantizer = getattr(self, "hf_quantizer", None)
        if quantizer is not None and quantizer.quantization_config.quant_method == "bitsandbytes":
            _unpack_cpu_4bit_weights(self)
        if quantizer is None or quantizer.quantization_config.quant_method != "torchao":
            return super().save_pretrained(save_directory, *args, **kwargs)
        # torchao's reader splits every name it lists in `tensor_names` at its last dot (a top-level
        # `query_tokens` fails to load) and, for each quantized weight, scans every name against every
        # metadata entry (FlanT5-XL int8 took 70 s to load). Plain tensors load like any unquantized
        # weight without entries, so only the quantized ones are listed
        flatten = quantizer.get_state_dict_and_metadata

        def state_dict_and_metadata(model):
            state_dict, metadata = flatten(model)
            names = json.loads(metadata.pop("tensor_names"))
            plain = {name for name in names if json.loads(metadata[name])["_type"] == "Tensor"}
            metadata = {key: value for key, value in metadata.items() if key not in plain}
            return state_dict, metadata | {"tensor_names": json.dumps([name for name in names if name not in plain])}

        quantizer.get_state_dict_and_metadata = state_dict_and_metadata
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            del quantizer.get_state_dict_and_metadata

    # -- training semantics -------------------------------------------------------------------------

    def _trainable_vision_norm(self) -> nn.LayerNorm:
        return self.vision_model.post_layernorm if self.config.uses_eva_vision else self.vision_layernorm

    def _frozen_vision_modules(self) -> list[nn.Module]:
        vision = self.vision_model
        return [vision.embeddings, vision.encoder] if self.config.uses_eva_vision else [vision]

    def _frozen_modules(self) -> list[nn.Module]:
        vision = [] if getattr(self, "_vision_model_trains", False) else self._frozen_vision_modules()
        language_model = [] if getattr(self, "_language_model_trains", False) else [self.language_model]
        return [*vision, *language_model]

    def freeze_for_instruction_tuning(
        self, keep_frozen_in_eval: bool = True, train_language_model: bool = False, train_vision_model: bool = False
    ):
        """Freeze what the paper freezes: the vision tower and the LLM. The Q-Former, the query tokens,
        the projection and the LayerNorm after the vision tower train. With `keep_frozen_in_eval`, the
        frozen towers stay in eval mode (no dropout) whenever the model is put in train mode.
        `train_language_model=True` leaves the LLM trainable and in the model's train/eval mode: for
        LoRA, then wrap the LLM with peft, which freezes all but its adapters. `train_vision_model=True`
        trains the vision tower as well (a model built from scratch has no pretrained tower to keep)."""
        self._language_model_trains = train_language_model
        self._vision_model_trains = train_vision_model
        for param in self.parameters():
            param.requires_grad = True
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self._frozen_modules_in_eval = keep_frozen_in_eval
        self.train(self.training)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "_frozen_modules_in_eval", False):
            for module in self._frozen_modules():
                module.eval()
        return self

    # -- visual features ------------------------------------------------------------------------------

    def get_vision_features(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, output_hidden_states: bool = False,
        output_attentions: bool = False, return_outputs: bool = False,
    ):
        """The frozen vision tower's output, before the trainable LayerNorm: [images, tokens, vision_hidden]
        (with `return_outputs`, the tower's `BaseModelOutput`, hidden states and attentions if asked).

        `pixel_values` is [batch, 3, H, W] or, for video, [batch, frames, 3, H, W] (flattened to
        batch * frames images). No autograd graph is kept when no tower parameter needs a gradient.
        Reuse the result across prompts about the same image via `vision_features=` (forward,
        `generate`, `rank_candidates`). `interpolate_pos_encoding` is accepted for transformers
        compatibility: other image sizes are always interpolated.
        """
        if pixel_values.dim() == 5:
            pixel_values = pixel_values.flatten(0, 1)
        if pixel_values.dim() != 4:
            raise ValueError("pixel_values must be [batch, channels, height, width] or, for video, "
                             f"[batch, frames, channels, height, width]; got shape {tuple(pixel_values.shape)}")
        frozen = self._frozen_vision_modules()
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for m in frozen for p in m.parameters())
        with torch.set_grad_enabled(needs_grad):
            if self.config.uses_eva_vision:
                outputs = self.vision_model(pixel_values, output_hidden_states, output_attentions)
            else:
                tower = self.vision_model(
                    pixel_values=pixel_values, output_hidden_states=True, output_attentions=output_attentions
                )
                outputs = BaseModelOutput(
                    last_hidden_state=tower.hidden_states[self.config.vision_feature_layer],
                    hidden_states=tower.hidden_states if output_hidden_states else None,
                    attentions=getattr(tower, "attentions", None) if output_attentions else None,
                )
        return outputs if return_outputs else outputs.last_hidden_state

    def get_image_features(
        self,
        pixel_values: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        vision_features: torch.Tensor | None = None,
        num_frames: int | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> "InstructBlipImageFeatures | tuple":
        """Images (or video frames) + instruction -> visual tokens for the LLM.

        Returns what transformers' `get_image_features` does: `last_hidden_state` (the vision features
        after the trainable LayerNorm), `pooler_output` (the projected query outputs, the LLM's visual
        tokens), `vision_outputs`, `qformer_outputs` (hidden states and attentions when asked; the
        attentions need `attn_implementation="eager"`), and under our own names `language_model_inputs`,
        `query_output`, `image_embeds`. `return_dict=False` gives a tuple of the fields that are set.

        Every frame of a video goes through the Q-Former with the same instruction; the frames'
        query outputs are concatenated along the sequence ([batch, frames * num_query_tokens, hidden]).
        """
        output_hidden_states = bool(output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states)
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        vision_outputs = None
        if vision_features is None:
            if pixel_values is None:
                raise ValueError("Pass `pixel_values` (or precomputed `vision_features`)")
            num_frames = pixel_values.shape[1] if pixel_values.dim() == 5 else 1
            vision_outputs = self.get_vision_features(
                pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                return_outputs=True,
            )
            vision_features = vision_outputs.last_hidden_state
        num_frames = num_frames or 1
        norm = self._trainable_vision_norm()  # trainable, in the Q-Former's dtype when the frozen tower's is lower
        image_embeds = norm(vision_features.to(norm.weight.dtype))
        num_images = image_embeds.shape[0]
        if not self.config.instruction_aware:  # BLIP-2's Q-Former: the queries alone
            qformer_input_ids = qformer_attention_mask = None
        if qformer_input_ids is not None and num_frames > 1:
            qformer_input_ids = qformer_input_ids.repeat_interleave(num_frames, dim=0)
            if qformer_attention_mask is not None:
                qformer_attention_mask = qformer_attention_mask.repeat_interleave(num_frames, dim=0)
        if qformer_input_ids is not None and qformer_input_ids.shape[0] != num_images:
            raise ValueError(f"qformer_input_ids has {qformer_input_ids.shape[0]} rows for {num_images // num_frames} images")
        if qformer_input_ids is not None and qformer_attention_mask is None:
            qformer_attention_mask = torch.ones_like(qformer_input_ids)
        query_tokens = self.query_tokens.expand(num_images, -1, -1)
        qformer_outputs = self.qformer(
            query_tokens, qformer_input_ids, qformer_attention_mask, image_embeds,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )
        query_output = qformer_outputs.last_hidden_state[:, : query_tokens.shape[1]]
        language_model_inputs = self.language_projection(query_output)
        batch_size = num_images // num_frames
        language_model_inputs = language_model_inputs.reshape(batch_size, -1, language_model_inputs.shape[-1])
        if vision_outputs is not None:  # transformers' vision output: the features after the LayerNorm
            vision_outputs = BaseModelOutputWithPooling(
                last_hidden_state=image_embeds, pooler_output=image_embeds[:, 0],
                hidden_states=vision_outputs.hidden_states, attentions=vision_outputs.attentions,
            )
        tower = BaseModelOutputWithPooling() if vision_outputs is None else vision_outputs
        features = InstructBlipImageFeatures(
            last_hidden_state=image_embeds, pooler_output=language_model_inputs, hidden_states=tower.hidden_states,
            attentions=tower.attentions, vision_outputs=vision_outputs, qformer_outputs=qformer_outputs,
            language_model_inputs=language_model_inputs, query_output=query_output, image_embeds=image_embeds,
        )
        return features if return_dict else features.to_tuple()

    def _merge_visual_tokens(self, input_ids, inputs_embeds, language_model_inputs):
        """Write the visual tokens into the `<image>` placeholder positions of the LLM input."""
        if self.config.image_token_index is None:
            raise ValueError(
                "config.image_token_index is not set: it must name the `<image>` placeholder id in the LLM "
                "vocabulary (the processor adds the token and reports its id as `processor.image_token_id`)"
            )
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids` (with the `<image>` placeholders) or `inputs_embeds`")
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if input_ids is not None:
            mask = input_ids == self.config.image_token_index
        else:  # the placeholder's embedding marks the positions
            image_embedding = self.get_input_embeddings()(torch.tensor(self.config.image_token_index, device=inputs_embeds.device))
            mask = (inputs_embeds == image_embedding).all(-1)
        found, expected = mask.sum(-1), language_model_inputs.shape[1]
        samples = language_model_inputs.shape[0]
        if mask.shape[0] != samples:  # packed rows: the samples' placeholders in order
            _require(
                found.sum() == expected * samples,
                lambda compiled: (
                    f"{mask.shape[0]} packed row(s) for {samples} samples need {expected * samples} `<image>` "
                    f"placeholder tokens, found {'another count' if compiled else int(found.sum())}; pack "
                    "batches with InstructBlipCollator(pack=True)"
                ),
            )
        else:
            _require(
                (found == expected).all(),
                lambda compiled: (
                    f"Each sample needs {expected} `<image>` placeholder tokens (num_query_tokens x frames) in "
                    f"input_ids, found {'another count' if compiled else found.tolist()}; build inputs with "
                    "the processor, passing the same images"
                ),
            )
        visual = language_model_inputs.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), visual)

    # -- forward, loss --------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        vision_features: torch.Tensor | None = None,
        num_frames: int | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> InstructBlipForConditionalGenerationModelOutput | tuple:
        r"""
        pixel_values: [batch, 3, H, W], or [batch, frames, 3, H, W] for video.
        qformer_input_ids / qformer_attention_mask: [batch, qformer_len], the instruction for the Q-Former.
        input_ids / attention_mask: [batch, seq], the LLM input with the `<image>` placeholders.
        labels: decoder-only: [batch, seq] aligned with `input_ids` (-100 where unsupervised), shifted
            inside; encoder-decoder: [batch, target_len] decoder targets.
        num_items_in_batch: supervised tokens across the whole (accumulated) batch; the loss is then
            a sum over this batch divided by it, so gradient accumulation weighs every token equally.
        shift_labels (keyword): decoder-only: [batch, seq] targets already aligned with the logits
            (position `i` predicts `shift_labels[:, i]`), as sequence/context-parallel training passes
            them; used instead of shifting `labels`. A keyword, as in transformers' models, so the
            Trainer's label detection keeps seeing `labels` alone.
        return_dict: False gives a tuple of the output's fields that are set (transformers' convention).
        output_attentions / output_hidden_states (and any other LLM keyword) go to the LLM.
        Packed batches (decoder-only): `input_ids` / `labels` of shape [rows, tokens] holding several
            samples per row without padding, `position_ids` restarting at 0 for each sample and no
            `attention_mask`; the images stay one per sample, in the order the samples appear.

        In training mode with `labels`, a decoder-only LLM computes logits only at the supervised
        positions: `logits` is then [supervised tokens, vocab] in label order (pass
        `logits_to_keep=0` for all of them).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        shift_labels = kwargs.pop("shift_labels", None)
        self._suppress_placeholder()
        if shift_labels is not None and not self.config.use_decoder_only_language_model:
            raise ValueError("shift_labels applies to a decoder-only LLM; an encoder-decoder LLM takes `labels`")
        image_features = self.get_image_features(
            pixel_values, qformer_input_ids, qformer_attention_mask, vision_features=vision_features,
            num_frames=num_frames, return_dict=True,
        )
        inputs_embeds = self._merge_visual_tokens(input_ids, inputs_embeds, image_features.language_model_inputs)
        kwargs["return_dict"] = True
        packed = inputs_embeds.shape[0] != image_features.language_model_inputs.shape[0]
        if packed:
            # several samples per row, no padding: the LLM keeps them apart by position_ids restarting at
            # each sample, which transformers reads only when no 2D attention mask is given
            if not self.config.use_decoder_only_language_model or kwargs.get("position_ids") is None:
                raise ValueError(
                    "input_ids has fewer rows than there are images: packed samples need a decoder-only LLM and "
                    "position_ids that restart at each sample (InstructBlipCollator(pack=True) builds them)"
                )
            if attention_mask is not None:
                no_padding = "packed rows hold no padding: pass attention_mask=None (or all ones)"
                _require(attention_mask.all(), lambda compiled: no_padding)
            attention_mask = None
        elif attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)

        if self.config.use_decoder_only_language_model:
            if kwargs.get("position_ids") is None and attention_mask is not None and not _all_set(attention_mask):
                # positions count real tokens only, so a left-padded prompt ([IMG..][PAD..][BOS] prompt)
                # is read as if unpadded; without this the LLM would number the pads too
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                kwargs["position_ids"] = positions[:, -inputs_embeds.shape[1] :]
            supervised = targets = None
            if shift_labels is not None:
                targets = shift_labels
            elif labels is not None:  # position i predicts label i + 1; the last position predicts nothing
                targets = torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), -100)], dim=1)
            targets = self._without_placeholder_targets(targets)
            if targets is not None and self.training:
                kwargs.setdefault("use_cache", False)  # no key/value cache to fill in training
            if targets is not None and self.training and "logits_to_keep" not in kwargs and self._lm_keeps_logits() \
                    and not torch.compiler.is_compiling():
                # training needs logits only where a label is supervised (the LM head is costly); not under
                # torch.compile, whose graph keeps static shapes while the count of labels is data
                supervised = targets != -100
                kwargs["logits_to_keep"] = supervised
            outputs = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
            if supervised is not None:  # logits: [supervised tokens, vocab], in label order
                targets = targets[supervised]
            loss = None if targets is None else self._lm_loss(outputs.logits, targets, num_items_in_batch)
        else:
            if decoder_input_ids is None and labels is not None:
                decoder_input_ids = self.language_model._shift_right(labels)
            elif decoder_input_ids is None:  # score the first decoder step
                start = self.language_model.config.decoder_start_token_id
                decoder_input_ids = torch.full((inputs_embeds.shape[0], 1), start, device=inputs_embeds.device)
            outputs = self.language_model(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask, **kwargs,
            )
            labels = self._without_placeholder_targets(labels)
            loss = None if labels is None else self._lm_loss(outputs.logits, labels, num_items_in_batch)

        output = InstructBlipForConditionalGenerationModelOutput(
            loss=loss, logits=outputs.logits, image_features=image_features, language_model_outputs=outputs
        )
        return output if return_dict else output.to_tuple()

    def _lm_keeps_logits(self) -> bool:
        if not hasattr(self, "_lm_accepts_logits_to_keep"):
            parameters = inspect.signature(self.language_model.forward).parameters
            self._lm_accepts_logits_to_keep = "logits_to_keep" in parameters
        return self._lm_accepts_logits_to_keep

    def _without_placeholder_targets(self, targets):
        """With `match_lavis` the `<image>` placeholder takes no probability, so it is no target either:
        a label equal to it (a placeholder position left supervised) is ignored like -100 rather than
        giving an infinite loss. Our collator never supervises them."""
        token = self.config.image_token_index
        if targets is None or token is None or not self.config.match_lavis:
            return targets
        return targets.masked_fill(targets == token, -100)

    @staticmethod
    def _lm_loss(logits, labels, num_items_in_batch=None):
        labels = labels.to(logits.device)
        loss = F.cross_entropy(logits.float().flatten(0, -2), labels.reshape(-1), ignore_index=-100, reduction="sum")
        if num_items_in_batch is None:
            num_items_in_batch = (labels != -100).sum()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        return loss / num_items_in_batch

    # -- generation ------------------------------------------------------------------------------------

    def _language_model_inputs(
        self, pixel_values, qformer_input_ids, qformer_attention_mask, input_ids, attention_mask, inputs_embeds,
        vision_features, num_frames,
    ):
        """The LLM's input embeddings with the visual tokens written in (from a bare `[IMG..][BOS]` prompt
        when neither `input_ids` nor `inputs_embeds` is given), and its attention mask."""
        image_features = self.get_image_features(
            pixel_values, qformer_input_ids, qformer_attention_mask, vision_features=vision_features,
            num_frames=num_frames, return_dict=True,
        )
        visual = image_features.language_model_inputs
        if inputs_embeds is None and input_ids is None:
            start = [self.config.image_token_index] * visual.shape[1]
            bos = self.config.text_config.bos_token_id
            if self.config.use_decoder_only_language_model and bos is not None:
                start.append(bos)
            input_ids = torch.tensor([start], dtype=torch.long, device=visual.device).repeat(visual.shape[0], 1)
        inputs_embeds = self._merge_visual_tokens(input_ids, inputs_embeds, visual)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        return input_ids, inputs_embeds, attention_mask

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        vision_features: torch.Tensor | None = None,
        num_frames: int | None = None,
        **generate_kwargs,
    ) -> torch.LongTensor:
        """Generate with the LLM from [visual tokens ; prompt]. Decoder-only LLMs return the prompt ids
        followed by the answer (as transformers does); encoder-decoder LLMs return the decoder ids.
        Decoding settings come from `self.generation_config` unless given here."""
        input_ids, inputs_embeds, attention_mask = self._language_model_inputs(
            pixel_values, qformer_input_ids, qformer_attention_mask, input_ids, attention_mask, inputs_embeds,
            vision_features, num_frames,
        )
        self._suppress_placeholder()
        inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if self.config.use_decoder_only_language_model:
            inputs["input_ids"] = input_ids
        generation_config = generate_kwargs.pop("generation_config", None) or self.generation_config
        generation_config = copy.deepcopy(generation_config)
        model_kwargs = generation_config.update(**generate_kwargs)  # returns what is not a decoding setting
        penalty = generation_config.repetition_penalty
        if self.config.use_decoder_only_language_model and self.config.match_lavis and penalty not in (None, 1.0):
            # LAVIS gives the LLM the prompt as embeddings only, so the penalty sees the generated
            # tokens alone; transformers' own processor, told to skip the prompt, takes the place of
            # the one `generate` would build (same position among the processors)
            processors = LogitsProcessorList(model_kwargs.pop("logits_processor", None) or [])
            if not any(isinstance(p, RepetitionPenaltyLogitsProcessor) for p in processors):  # the caller's wins
                processors.append(RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=inputs_embeds.shape[1]))
            model_kwargs["logits_processor"] = processors
        if self.config.use_decoder_only_language_model:
            inputs = self._prompt_prefilled_once(inputs, generation_config, model_kwargs) or inputs
        return self.language_model.generate(**inputs, generation_config=generation_config, **model_kwargs)

    def _prompt_prefilled_once(self, inputs, generation_config, model_kwargs):
        """Beam search (and several samples per prompt) from a decoder-only LLM: transformers copies each
        prompt to every beam before its first forward pass, so the prompt (visual tokens included), most
        of the work for the paper's short answers, is computed `num_beams` times. Here the prompt but its
        last token runs once per sample, its key/value cache is copied to the beams, and `generate`
        continues from the last prompt token: the same positions, masks, sequences and scores.
        Returns `generate`'s inputs, or None where this does not apply."""
        copies = max(generation_config.num_beams or 1, generation_config.num_return_sequences or 1)
        input_ids, attention_mask = inputs.get("input_ids"), inputs["attention_mask"]
        if copies == 1 or input_ids is None or input_ids.shape[1] < 2 or model_kwargs.get("past_key_values") is not None:
            return None
        if generation_config.cache_implementation not in (None, "dynamic") or not self._lm_keeps_logits() or (
            generation_config.output_hidden_states or generation_config.output_attentions
        ):
            return None
        if bool((input_ids[:, -1] == self.config.image_token_index).any()):  # generate re-embeds the last token
            return None
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)  # as generate numbers them
        prefix = self.language_model(
            inputs_embeds=inputs["inputs_embeds"][:, :-1], attention_mask=attention_mask[:, :-1],
            position_ids=positions[:, :-1], use_cache=True, logits_to_keep=1,
        )
        cache = prefix.past_key_values
        if not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(copies)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": cache}

    # -- candidate ranking -----------------------------------------------------------------------------

    @torch.no_grad()
    def rank_candidates(
        self,
        candidate_input_ids,
        candidate_attention_mask=None,
        pixel_values: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        vision_features: torch.Tensor | None = None,
        num_frames: int | None = None,
        candidate_batch_size: int | None = None,
    ) -> InstructBlipRankingOutput:
        """Log-likelihood of each candidate answer given image + prompt (the paper's vocabulary ranking).

        `candidate_input_ids` / `candidate_attention_mask`: [batch, candidates, cand_len], each candidate
        tokenized like a training target (no special tokens, EOS appended; `processor.tokenize_candidates`),
        right-padded; all-zero mask rows mark absent candidates. The image and the prompt are encoded
        once per sample; candidates are then scored in batches of `candidate_batch_size` (all at once by
        default) against the shared prefix: the decoder-only LLM's key/value cache, or the
        encoder-decoder LLM's encoder output.
        """
        if candidate_input_ids.dim() != 3:
            raise ValueError(f"candidate_input_ids must be [batch, candidates, length], got {tuple(candidate_input_ids.shape)}")
        if candidate_attention_mask is None:
            candidate_attention_mask = torch.ones_like(candidate_input_ids)
        self._suppress_placeholder()
        _, inputs_embeds, attention_mask = self._language_model_inputs(
            pixel_values, qformer_input_ids, qformer_attention_mask, input_ids, attention_mask, None,
            vision_features, num_frames,
        )
        if (samples := candidate_input_ids.shape[0]) != inputs_embeds.shape[0]:
            raise ValueError(f"candidate_input_ids has {samples} samples, the prompts have {inputs_embeds.shape[0]}")
        candidate_input_ids = candidate_input_ids.to(inputs_embeds.device)
        candidate_attention_mask = candidate_attention_mask.to(inputs_embeds.device)
        decoder_only = self.config.use_decoder_only_language_model
        scorer = self._score_candidates_decoder_only if decoder_only else self._score_candidates_encoder_decoder
        sums = scorer(inputs_embeds, attention_mask, candidate_input_ids, candidate_attention_mask, candidate_batch_size)
        num_tokens = candidate_attention_mask.sum(-1)
        sums = sums.masked_fill(num_tokens == 0, float("-inf"))
        return InstructBlipRankingOutput(sum_logprobs=sums, num_tokens=num_tokens, mean_logprobs=sums / num_tokens.clamp(min=1))

    @staticmethod
    def _token_logprobs(logits, target_ids, target_mask):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
        return (picked * target_mask).sum(-1)

    def _score_candidates_decoder_only(self, inputs_embeds, attention_mask, cand_ids, cand_mask, chunk):
        batch_size, num_cands, _ = cand_ids.shape
        chunk = chunk or num_cands
        sums = torch.zeros(batch_size, num_cands, device=inputs_embeds.device)
        for b in range(batch_size):
            keep = attention_mask[b].bool()
            prefix = self.language_model(inputs_embeds=inputs_embeds[b : b + 1, keep], use_cache=True)
            first_logits = prefix.logits[:, -1:]  # predicts each candidate's first token
            prefix_len = int(keep.sum())
            present = torch.nonzero(cand_mask[b].any(-1)).flatten()
            for start in range(0, len(present), chunk):
                rows = present[start : start + chunk]
                ids, mask = cand_ids[b, rows], cand_mask[b, rows]
                ids, mask = ids[:, : int(mask.sum(-1).max())], mask[:, : int(mask.sum(-1).max())]
                cache = copy.deepcopy(prefix.past_key_values)
                cache.batch_repeat_interleave(len(rows))
                full_mask = torch.cat([mask.new_ones(len(rows), prefix_len), mask], dim=1)
                out = self.language_model(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True)
                logits = torch.cat([first_logits.expand(len(rows), -1, -1), out.logits[:, :-1]], dim=1)
                sums[b, rows] = self._token_logprobs(logits, ids, mask)
        return sums

    def _score_candidates_encoder_decoder(self, inputs_embeds, attention_mask, cand_ids, cand_mask, chunk):
        batch_size, num_cands, _ = cand_ids.shape
        encoder = self.language_model.get_encoder()
        encoder_hidden = encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        pairs = torch.nonzero(cand_mask.any(-1))  # (sample, candidate) pairs that exist
        chunk = chunk or num_cands
        sums = torch.zeros(batch_size, num_cands, device=inputs_embeds.device)
        for start in range(0, len(pairs), chunk):
            b, c = pairs[start : start + chunk].unbind(-1)
            ids, mask = cand_ids[b, c], cand_mask[b, c]
            width = int(mask.sum(-1).max())
            ids, mask = ids[:, :width], mask[:, :width]
            labels = ids.masked_fill(mask == 0, -100)
            out = self.language_model(
                encoder_outputs=(encoder_hidden[b],),
                attention_mask=attention_mask[b],
                decoder_input_ids=self.language_model._shift_right(labels),
                decoder_attention_mask=mask,
            )
            sums[b, c] = self._token_logprobs(out.logits, ids, mask)
        return sums


InstructBlipConfig.register_for_auto_class()
InstructBlipForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = ["InstructBlipForConditionalGeneration", "InstructBlipPreTrainedModel", "resize_llm_vocabulary"]
