"""Shared fixtures: tokenizers trained here, tiny configs and models. Nothing is downloaded."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modeling_instructblip import tiny  # noqa: E402


@pytest.fixture(scope="session")
def llama_tokenizer():
    return tiny.train_llama_tokenizer()


@pytest.fixture(scope="session")
def t5_tokenizer():
    return tiny.train_t5_tokenizer()


@pytest.fixture(scope="session")
def bert_tokenizer():
    return tiny.train_bert_tokenizer()
