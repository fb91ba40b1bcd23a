"""Lays out, offline, the two Hub repos transformers' InstructBLIP processor test loads its tokenizers from
(`hf-internal-testing/tiny-random-GPT2Model`, `hf-internal-testing/tiny-random-bert`), as a hand-made Hub cache:
`HF_HOME/hub/models--org--name/{refs/main, snapshots/<sha>/...}`. The tokenizers are stand-ins trained here with
the same classes and special tokens (GPT-2 byte-level BPE with `<|endoftext|>` and no pad token; lower-cased BERT
WordPiece), not the Hub's files: the test checks the processor's plumbing, not particular ids.

    python tools/transformers_suite/hub_fixtures.py HF_HOME

With HUB_FIXTURES_PAD_TOKEN=1 the GPT-2 stand-in gets a pad token, so that the padding tests can be told apart from
the "tokenizer has no pad token" error they otherwise end in, for both processors.
"""

import json
import os
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


SNAPSHOT = "0" * 40
CORPUS = ["lower newer", "upper older longer string", "hello world, this is a test."] * 20


def gpt2_tokenizer():
    from transformers import GPT2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    pad = {"pad_token": "<|endoftext|>"} if os.environ.get("HUB_FIXTURES_PAD_TOKEN") == "1" else {}
    return GPT2Tokenizer(vocab=model["vocab"], merges=merges, unk_token="<|endoftext|>",
                         bos_token="<|endoftext|>", eos_token="<|endoftext|>", model_max_length=1024, **pad)


def bert_tokenizer():
    from modeling_instructblip.tiny import train_bert_tokenizer

    return train_bert_tokenizer(extra_corpus=CORPUS)


def lay_out(hf_home: Path):
    for repo, build in (("tiny-random-GPT2Model", gpt2_tokenizer), ("tiny-random-bert", bert_tokenizer)):
        root = hf_home / "hub" / f"models--hf-internal-testing--{repo}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(SNAPSHOT)
        build().save_pretrained(root / "snapshots" / SNAPSHOT)


if __name__ == "__main__":
    lay_out(Path(sys.argv[1]))
