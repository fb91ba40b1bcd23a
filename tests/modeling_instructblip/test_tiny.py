"""The tiny builders used by the demo and the tests: the same tokenizers in every process (a resumed
or multi-rank run reloads them), and configs that follow the tokenizer."""

import json
import subprocess
import sys

from modeling_instructblip import tiny


VOCABS = (
    "import json; from modeling_instructblip import tiny; "
    "print(json.dumps({f.__name__: sorted(f().get_vocab().items()) for f in "
    "(tiny.train_llama_tokenizer, tiny.train_t5_tokenizer, tiny.train_bert_tokenizer)}))"
)


def test_tokenizers_are_the_same_in_every_process():
    # different hash seeds: tokenizers' own trainers broke ties by hash order
    runs = [
        subprocess.run([sys.executable, "-c", VOCABS], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
        for seed in ("1", "2")
    ]
    first, second = (json.loads(run.strip().splitlines()[-1]) for run in runs)
    assert first == second


def test_tokenizers_cover_the_corpus_without_unknown_tokens():
    for tokenizer in (tiny.train_t5_tokenizer(), tiny.train_bert_tokenizer()):
        ids = tokenizer(" ".join(tiny.CORPUS)).input_ids
        assert tokenizer.unk_token_id not in ids
