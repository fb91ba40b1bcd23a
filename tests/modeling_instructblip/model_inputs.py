"""Model inputs laid out as the processor lays them out, without the processor: the tiny models' tests
(test_modeling.py, test_transformers_contract.py) feed them to ours and to transformers' class alike."""

import torch

from tests.helpers import NUM_QUERY_TOKENS

PROMPTS = ["Question: what color is the square? Short answer:", "How many circles?"]


def llm_inputs(tokenizer, prompts, image_token_id, frames=1, padding_side="left"):
    """[IMG x N][PAD ...] prompt (left) or [IMG x N] prompt [PAD ...] (right), like the processor."""
    rows = [tokenizer(p).input_ids for p in prompts]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = [], []
    for row in rows:
        fill = [pad] * (width - len(row))
        image = [image_token_id] * NUM_QUERY_TOKENS * frames
        ids.append(image + (fill + row if padding_side == "left" else row + fill))
        real = [1] * len(row)
        mask.append([1] * len(image) + ([0] * len(fill) + real if padding_side == "left" else real + [0] * len(fill)))
    return torch.tensor(ids), torch.tensor(mask)


def qformer_inputs(bert_tokenizer, prompts):
    encoded = bert_tokenizer(prompts, padding=True, return_tensors="pt")
    return encoded.input_ids, encoded.attention_mask


def batch(kind, tokenizers, bert_tokenizer, prompts=PROMPTS, frames=1, seed=0, padding_side=None):
    """Inputs as the processor lays them out: decoder-only prompts left-padded (generation) unless
    `padding_side="right"` (training); encoder-decoder prompts right-padded."""
    tokenizer = tokenizers[kind]
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    side = padding_side or ("left" if kind == "llama" else "right")
    input_ids, attention_mask = llm_inputs(tokenizer, prompts, image_token_id, frames, side)
    qformer_input_ids, qformer_attention_mask = qformer_inputs(bert_tokenizer, prompts)
    shape = (len(prompts), 3, 28, 28) if frames == 1 else (len(prompts), frames, 3, 28, 28)
    pixel_values = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return dict(
        pixel_values=pixel_values,
        qformer_input_ids=qformer_input_ids,
        qformer_attention_mask=qformer_attention_mask,
        input_ids=input_ids,
        attention_mask=attention_mask,
    )


def real_positions(kind, inputs):
    """Where logits mean something: decoder-only logits at pad positions depend on how pads are numbered."""
    if kind == "llama":
        return inputs["attention_mask"].bool()
    return slice(None)


def labels_for(kind, tokenizers, inputs):
    if kind == "llama":  # supervise each prompt's last 3 real tokens, as if they were the target
        labels = torch.full_like(inputs["input_ids"], -100)
        for row, mask in enumerate(inputs["attention_mask"]):
            last = int(mask.nonzero().max())
            labels[row, last - 2 : last + 1] = inputs["input_ids"][row, last - 2 : last + 1]
        return labels
    labels = tokenizers["t5"](["red", "two apples"], padding=True, return_tensors="pt").input_ids
    return labels.masked_fill(labels == tokenizers["t5"].pad_token_id, -100)
