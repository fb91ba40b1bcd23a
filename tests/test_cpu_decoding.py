"""generate's CPU fast path (modeling_instructblip/cpu_decoding.py): the LLM's per-token products from
MKL-prepacked weights give the plain path's sequences and scores, follow their weights, keep to their
memory budget, and leave training, copies and threads alone. The tiny test matrices are far under the
4 MiB the product packs from, so the tests lower that threshold."""

import copy
import pickle
import threading

import pytest
import torch
from tests.test_modeling import KINDS, PROMPTS, labels_for, training_step
from tests.test_modeling import batch as two_prompts

from modeling_instructblip import InstructBlipForConditionalGeneration, cpu_decoding


pytestmark = pytest.mark.skipif(not cpu_decoding.mkl_prepacking_available(), reason="this torch has no MKL")
FOUR = PROMPTS + ["Describe the picture in a few words, please.", "Is there a circle?"]


def batch(kind, llm_tokenizers, bert_tokenizer, **kwargs):
    """Four prompts: decoding steps of 4 rows (greedy) or 12 (3 beams), where packing starts."""
    return two_prompts(kind, llm_tokenizers, bert_tokenizer, prompts=FOUR, **kwargs)


@pytest.fixture
def fresh(reference_pair, monkeypatch):
    """kind -> our model loaded anew (the packs and class changes stay with it), every matrix packable."""
    monkeypatch.setattr(cpu_decoding, "MIN_WEIGHT_BYTES", 0)
    return lambda kind: InstructBlipForConditionalGeneration.from_pretrained(reference_pair(kind)[2]).eval()


def decode(model, inputs, **settings):
    settings = dict(do_sample=False, max_new_tokens=8, min_new_tokens=8, output_scores=True,
                    return_dict_in_generate=True, **settings)
    return model.generate(**inputs, **settings)


def packed_names(model):
    cache = model.__dict__.get("_decode_prepacks")
    names = {module: name for name, module in model.named_modules()}
    return sorted(names[module] for module in cache.packs) if cache is not None else []


def assert_same_decoding(got, expected):
    assert torch.equal(got.sequences, expected.sequences)
    for a, b in zip(got.scores, expected.scores, strict=True):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a))
        torch.testing.assert_close(a[finite], b[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam3"])
def test_prepacked_decoding_gives_the_plain_sequences_and_scores(kind, beams, fresh, llm_tokenizers, bert_tokenizer):
    model = fresh(kind)
    inputs = batch(kind, llm_tokenizers, bert_tokenizer)
    model.decode_prepack_max_bytes = 0
    expected = decode(model, inputs, num_beams=beams)
    assert model.decode_prepack_stats().packed_calls == 0
    model.decode_prepack_max_bytes = 1 << 30
    first, second = decode(model, inputs, num_beams=beams), decode(model, inputs, num_beams=beams)
    assert_same_decoding(first, expected)
    assert_same_decoding(second, expected)
    stats = model.decode_prepack_stats()
    names = packed_names(model)
    # the per-step products, the LM head among them, ran from packs (4 or 12 rows)
    assert stats.packed_matrices == len(names) > 0 and stats.packed_calls > 0 and stats.left_for_budget == 0
    assert any("lm_head" in name for name in names)
    assert stats.packed_bytes == sum(pack.weight.nbytes for pack in model._decode_prepacks.packs.values())
    assert not any(name.startswith(("vision_model", "qformer")) for name in names)  # the LLM's only
    if kind == "t5":  # used once per call (the encoder, cross-attention keys/values): not packed
        assert not any(".encoder." in name or "EncDecAttention.k" in name or "EncDecAttention.v" in name for name in names)
        assert any("EncDecAttention.q" in name for name in names)


def test_fewer_than_four_rows_are_left_to_mkls_matrix_vector_path(fresh, llm_tokenizers, bert_tokenizer):
    model = fresh("llama")
    inputs = {k: v[:3] for k, v in batch("llama", llm_tokenizers, bert_tokenizer).items()}
    decode(model, inputs)
    assert model.decode_prepack_stats().packed_matrices == 0
    decode(model, inputs, num_beams=2)  # 6 rows
    assert model.decode_prepack_stats().packed_matrices > 0


def test_packs_follow_their_weights(fresh, llm_tokenizers, bert_tokenizer, tmp_path):
    """A pack made before the weights changed (in place, reloaded, cast) is never used after."""
    model = fresh("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    decode(model, inputs)
    with torch.no_grad():
        model.language_model.lm_head.weight.mul_(1.5)  # in place: the tensor's version moves on
    plain = copy.deepcopy(model)
    plain.decode_prepack_max_bytes = 0
    assert_same_decoding(decode(model, inputs), decode(plain, inputs))

    other = fresh("llama")
    with torch.no_grad():
        for param in other.language_model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.load_state_dict(other.state_dict())
    other.decode_prepack_max_bytes = 0
    assert_same_decoding(decode(model, inputs), decode(other, inputs))

    model.to(torch.bfloat16)  # bf16 weights: nothing to pack, and the old packs are freed
    decode(model, {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()})
    assert model.decode_prepack_stats().packed_bytes == 0


def test_packed_bytes_keep_to_the_budget(fresh, llm_tokenizers, bert_tokenizer, monkeypatch):
    inputs = batch("t5", llm_tokenizers, bert_tokenizer)
    unlimited = fresh("t5")
    expected = decode(unlimited, inputs)
    everything = unlimited.decode_prepack_stats()
    model = fresh("t5")
    model.decode_prepack_max_bytes = everything.packed_bytes // 3
    assert_same_decoding(decode(model, inputs), expected)
    partial = model.decode_prepack_stats()
    assert 0 < partial.packed_bytes <= everything.packed_bytes // 3
    assert partial.left_for_budget > 0 and partial.packed_matrices < everything.packed_matrices
    packed = []  # a matrix known not to fit is not packed again at every call
    pack = cpu_decoding._pack
    monkeypatch.setattr(cpu_decoding, "_pack", lambda weight, rows: packed.append(rows) or pack(weight, rows))
    assert_same_decoding(decode(model, inputs), expected)
    assert packed == [] and model.decode_prepack_stats().packed_bytes == partial.packed_bytes
    unlimited.decode_prepack_max_bytes = everything.packed_bytes // 3  # lowered: the next call trims
    assert_same_decoding(decode(unlimited, inputs), expected)
    assert 0 < unlimited.decode_prepack_stats().packed_bytes <= everything.packed_bytes // 3
    model.decode_prepack_max_bytes = 0  # off: the next call frees the packs
    decode(model, inputs)
    assert model.decode_prepack_stats().packed_bytes == 0


def test_training_copies_and_saving_are_unaffected(fresh, llm_tokenizers, bert_tokenizer, tmp_path):
    """After generate, the LLM's linears are PrepackedLinear: the same parameters and state dict, the
    plain gradients, and a model that copies, pickles and saves like before."""
    model, plain = fresh("llama"), fresh("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    decode(model, inputs)
    assert isinstance(model.language_model.lm_head, cpu_decoding.PrepackedLinear)
    assert model.state_dict().keys() == plain.state_dict().keys()
    train_inputs = batch("llama", llm_tokenizers, bert_tokenizer, padding_side="right")
    train_inputs["labels"] = labels_for("llama", llm_tokenizers, train_inputs)
    for m in (model, plain):
        m.language_model.requires_grad_(True)  # gradients through every PrepackedLinear, weights included
    out, grads = training_step(model, train_inputs)
    expected_out, expected_grads = training_step(plain, train_inputs)
    torch.testing.assert_close(out.loss, expected_out.loss, rtol=0, atol=0)
    assert grads.keys() == expected_grads.keys() and any("lm_head" in name for name in grads)
    for name in expected_grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=0, atol=0)

    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied.decode_prepack_stats().packed_matrices == 0  # starts without packs
        assert_same_decoding(decode(copied, inputs), decode(model, inputs))
    model.save_pretrained(tmp_path)
    reloaded = InstructBlipForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert type(reloaded.language_model.lm_head) is torch.nn.Linear
    assert_same_decoding(decode(reloaded, inputs), decode(model, inputs))


def test_threads_decoding_with_one_model_get_their_own_results(fresh, llm_tokenizers, bert_tokenizer):
    """Concurrent calls with different row counts (4 and 12) share the packs: each gets what it gets alone."""
    model = fresh("llama")
    inputs = batch("llama", llm_tokenizers, bert_tokenizer)
    plain = copy.deepcopy(model)
    plain.decode_prepack_max_bytes = 0
    settings = [dict(num_beams=1), dict(num_beams=3)] * 3
    expected = [decode(plain, inputs, **s) for s in settings[:2]]
    results, errors = [None] * len(settings), []

    def work(i):
        try:
            results[i] = decode(model, inputs, **settings[i])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(settings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, result in enumerate(results):
        assert_same_decoding(result, expected[i % 2])
    assert model.decode_prepack_stats().packed_calls > 0


def test_concurrent_calls_with_other_row_counts_do_not_take_each_others_packs(monkeypatch):
    """While another call decodes, a call with a different row count uses the plain product instead of
    repacking the matrix (each would undo the other's pack at every step); alone, it repacks."""
    monkeypatch.setattr(cpu_decoding, "MIN_WEIGHT_BYTES", 0)
    owner = torch.nn.Module()
    owner.lm = torch.nn.Sequential(torch.nn.Linear(32, 48))
    layer = owner.lm[0]
    x4, x8 = torch.randn(4, 32), torch.randn(8, 32)
    with torch.no_grad(), cpu_decoding.prepacked_decoding(owner, owner.lm, 1 << 30):
        for _ in range(3):
            torch.testing.assert_close(layer(x4), torch.nn.functional.linear(x4, layer.weight, layer.bias))
        assert owner._decode_prepacks.packs[layer].rows == 4
        with cpu_decoding.prepacked_decoding(owner, owner.lm, 1 << 30):  # a second call in flight
            for _ in range(3):
                torch.testing.assert_close(layer(x8), torch.nn.functional.linear(x8, layer.weight, layer.bias))
            assert owner._decode_prepacks.packs[layer].rows == 4
    with torch.no_grad(), cpu_decoding.prepacked_decoding(owner, owner.lm, 1 << 30):  # alone
        for _ in range(2):
            layer(x8)
        assert owner._decode_prepacks.packs[layer].rows == 8
    assert owner._decode_prepacks.in_flight == 0
