"""Packed training batches (train.py --packing, decoder-only): the collator's rows and a whole run
against the padded one."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers import STREAM_SIZES, runs_end_alike  # noqa: E402
from training import modeling  # noqa: E402
from training.data import InstructBlipCollator, pack_batch  # noqa: E402


def test_pack_batch_concatenates_the_real_tokens_and_restarts_positions():
    batch = {
        "input_ids": torch.tensor([[7, 7, 5, 6, 2, 0], [7, 7, 9, 2, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]),
        "labels": torch.tensor([[-100, -100, -100, 6, 2, -100], [-100, -100, 9, 2, -100, -100]]),
        "pixel_values": torch.zeros(2, 3, 4, 4),
    }
    packed = pack_batch(dict(batch))
    assert packed["input_ids"].tolist() == [[7, 7, 5, 6, 2, 7, 7, 9, 2]]
    assert packed["labels"].tolist() == [[-100, -100, -100, 6, 2, -100, -100, 9, 2]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert "attention_mask" not in packed and packed["pixel_values"].shape[0] == 2
    with pytest.raises(ValueError, match="first label"):
        pack_batch(dict(batch, labels=torch.tensor([[1, -100, -100, 6, 2, -100], [-100] * 6])))
    _, processor = modeling.build_tiny("t5", seed=0)
    with pytest.raises(ValueError, match="decoder-only"):
        InstructBlipCollator(processor, pack=True)


def test_a_packed_run_trains_to_the_padded_runs_weights(held_in_corpus, tmp_path):
    runs_end_alike(held_in_corpus, tmp_path, {"padded": {}, "packed": {"packing": "true"}}, save_strategy="no")


def test_packing_with_streaming_and_cached_features_trains_as_the_plain_streamed_run(held_in_corpus, tmp_path):
    """The three data paths together: a streamed mixture, cached vision features, packed batches
    (accelerate must not slice packed batches along input_ids' rows) end with the weights of the streamed
    run with padded batches that decodes every image."""
    runs = runs_end_alike(
        held_in_corpus, tmp_path,
        {"plain": {}, "packed_cached": {"packing": "true", "vision_feature_cache": str(tmp_path / "features")}},
        streaming="true", dataset_sizes=STREAM_SIZES, max_steps=3, save_strategy="no", train_augmentation="false",
    )
    assert runs["packed_cached"]["data"]["vision feature cache"]["computed"] > 0
    assert runs["packed_cached"]["train"]["skipped_records"] == runs["plain"]["train"]["skipped_records"] == 0
    assert runs["packed_cached"]["train"]["train_loss"] == pytest.approx(runs["plain"]["train"]["train_loss"], rel=1e-5)
