"""Plain helpers shared by tests (fixtures live in conftest.py)."""

import copy

import torch
from tokenizers import AddedToken


NUM_QUERY_TOKENS = 8  # tiny configs use 8 queries (the paper: 32)


def with_image_token(tokenizer):
    """A copy of `tokenizer` with the `<image>` placeholder added as a special token."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_tokens([AddedToken("<image>", normalized=False, special=True)], special_tokens=True)
    return tokenizer


def randomize_(model, std=0.2, seed=0):
    """Non-trivial random weights (default inits make many outputs near-constant)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model
