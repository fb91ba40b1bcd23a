"""Shared fixtures: tokenizers trained here, tiny configs and models. Nothing is downloaded."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

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


# ---- LLM tokenizers with the `<image>` placeholder, tiny models, transformers references ----------

import torch  # noqa: E402

from tests.helpers import randomize_, with_image_token  # noqa: E402


@pytest.fixture(scope="session")
def llm_tokenizers(llama_tokenizer, t5_tokenizer):
    """{"llama": ..., "t5": ...}, each with `<image>` added (copies: tests must not mutate them)."""
    return {"llama": with_image_token(llama_tokenizer), "t5": with_image_token(t5_tokenizer)}


@pytest.fixture(scope="session")
def reference_pair(llm_tokenizers, tmp_path_factory):
    """kind -> (transformers' InstructBlipForConditionalGeneration, ours loaded from its saved folder, folder).

    transformers' class appears only in tests: it is the reference our weights and outputs must match.
    """
    from transformers import InstructBlipConfig as ReferenceConfig
    from transformers import InstructBlipForConditionalGeneration as Reference

    from modeling_instructblip import InstructBlipForConditionalGeneration

    cache = {}

    def build(kind):
        if kind not in cache:
            ours_config = tiny.tiny_config(kind, tokenizer=llm_tokenizers[kind])
            reference_config = ReferenceConfig(
                vision_config=dict(tiny.TINY_VISION),
                qformer_config=dict(tiny.TINY_QFORMER, vocab_size=ours_config.qformer_config.vocab_size),
                text_config=ours_config.text_config.to_dict(),
                num_query_tokens=ours_config.num_query_tokens,
                image_token_index=ours_config.image_token_index,
            )
            torch.manual_seed(0)
            reference = randomize_(Reference(reference_config)).eval()
            folder = tmp_path_factory.mktemp(f"transformers-{kind}")
            reference.save_pretrained(folder)
            # transformers' port exactly: its post-ViT LayerNorm eps (the blocks' 1e-6; LAVIS's is 1e-5) and
            # no LAVIS behaviour at the LLM seam
            ours = InstructBlipForConditionalGeneration.from_pretrained(folder, match_lavis=False).eval()
            cache[kind] = (reference, ours, folder)
        return cache[kind]

    return build


# ---- the sample corpus and train.py runs several test files share: built once per process -------------


@pytest.fixture(scope="session")
def held_in_corpus(tmp_path_factory):
    """The bundled sample corpus (24 images; its held-in datasets, GQA left out) and a builder cache:
    {"data_dirs": {name: folder}, "cache": folder, "root": the raw corpus folder}. Shared: copy a
    folder before damaging anything in it."""
    from dataset_builders.sample_data import write_sample_corpus

    root = tmp_path_factory.mktemp("corpus")
    dirs = write_sample_corpus(str(root / "raw"), num_images=24)
    return {"data_dirs": {name: folder for name, folder in dirs.items() if name != "gqa"},
            "cache": str(root / "cache"), "root": str(root / "raw")}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A dropout-free tiny model saved as a checkpoint (helpers.save_tiny_checkpoint): runs in separate
    processes start from it."""
    from tests.helpers import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="session")
def reference_run(held_in_corpus, tiny_checkpoint, tmp_path_factory):
    """One uninterrupted single-process run (global batch 4, 6 steps, checkpoints every 2) with probes
    (tests/training/train_fixtures.py): <root>/out holds its checkpoints and weights, <root>/probe its draws and
    per-step weight digests. Resumed, distributed and interrupted runs must end as it does."""
    from tests.helpers import launch_train, small_run_args

    root = tmp_path_factory.mktemp("reference")
    launch_train(small_run_args(held_in_corpus, root / "out", tiny_checkpoint), root / "probe")
    return root


@pytest.fixture(scope="session")
def stream_reference_run(held_in_corpus, tiny_checkpoint, tmp_path_factory):
    """`reference_run` reading the data as a stream."""
    from tests.helpers import STREAM_ARGS, launch_train, small_run_args

    root = tmp_path_factory.mktemp("stream_reference")
    launch_train(small_run_args(held_in_corpus, root / "out", tiny_checkpoint, **STREAM_ARGS), root / "probe")
    return root


# ---- the Space served on loopback (tests/space/, tests/test_reliability.py): one server per test module ----


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app as a fresh checkout runs it: no model configured, no `make demo` output."""
    from tests.helpers import import_app

    return import_app(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def url(app):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(app.demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)
