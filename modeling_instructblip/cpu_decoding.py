"""Faster decoding on a CPU: the LLM's per-token matrix products from MKL-prepacked weights.

A decoding step multiplies a few rows (batch x beams) by every weight matrix of the LLM, and is bound
by reading the weights. From 4 rows on, MKL's fp32 GEMM packs the weight into its blocked layout on
every call: 4 rows take twice the time of 1-3 (a 512 x 32128 LM head on 2 cores: 8.6 ms against 4.7
ms, MKL's matrix-vector path). Packed once per (matrix, row count) and reused by every later step, the
same products take 0.45-0.8 of the time for 4 to 256 rows (weights streaming from memory as in a
step, matrices of 16-64 MB); for 1-3 rows packing gains nothing (0.9-1.15) and is not done.
The packed copy costs memory, ~1.1-1.8x the matrix at the real models' sizes;
so matrices under 4 MiB, which stay in cache between calls and would pack into 3-9x their size, are
left alone, the packed bytes are capped (`max_bytes`), a matrix is packed the second time one
decoding call uses it with the same row count (those used once, like T5's cross-attention keys and
values, never are), and packs that no longer match their weight (trained, reloaded, cast, moved)
are dropped.

Used by `InstructBlipForConditionalGeneration.generate` only. The products are the same up to
rounding (MKL's blocking): the tests check that generated sequences equal those of plain
`nn.Linear` and that the scores agree to rounding. Everywhere else (training, gradients,
torch.compile, GPUs, other dtypes) `PrepackedLinear` is `nn.Linear`.
"""

import contextlib
import contextvars
import functools
import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from transformers.utils import logging


logger = logging.get_logger(__name__)

MIN_ROWS, MAX_ROWS = 4, 256  # 1-3 rows: MKL's matrix-vector path gains nothing; beyond 256 rows little is left
MIN_WEIGHT_BYTES = 4 << 20  # smaller matrices stay in cache between calls and pack into 3-9x their size
_CALL = contextvars.ContextVar("instructblip_prepacked_decoding", default=None)


@functools.cache
def mkl_prepacking_available() -> bool:
    """This torch build has MKL's packed fp32 GEMM (x86 builds do; ARM builds do not)."""
    try:
        return bool(torch.backends.mkl.is_available()) and all(
            hasattr(torch.ops.mkl, name) for name in ("_mkl_linear", "_mkl_reorder_linear_weight")
        )
    except (AttributeError, RuntimeError):
        return False


def _pack(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` [out, in] in MKL's blocked layout for products with `rows` rows."""
    return torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)


@dataclass
class _Pack:
    rows: int
    version: int
    data_ptr: int
    weight: torch.Tensor

    def matches(self, module: nn.Linear) -> bool:
        weight = module.weight
        return (
            weight.dtype == torch.float32 and weight.device.type == "cpu"
            and weight.data_ptr() == self.data_ptr and weight._version == self.version
        )


@dataclass
class PrepackStats:
    """What the packed weights of one model hold and did (`model.decode_prepack_stats()`)."""

    packed_matrices: int = 0
    packed_bytes: int = 0
    packed_calls: int = 0  # products served from a packed weight
    left_for_budget: int = 0  # matrices a decoding call used repeatedly but the budget could not hold


class PrepackCache:
    """The packed weights of one model, shared by its decoding calls (and threads)."""

    def __init__(self):
        self.packs: dict[nn.Linear, _Pack] = {}
        self.lock = threading.Lock()
        self.sizes: dict[tuple[nn.Linear, int], int] = {}  # (matrix, rows) -> bytes its pack takes
        self.packed_calls = 0
        self.left_for_budget: set[nn.Linear] = set()
        self.in_flight = 0  # decoding calls running now (threads)

    def __reduce__(self):  # a copied or pickled model starts without packs (a lock cannot be copied)
        return (PrepackCache, ())

    @property
    def nbytes(self) -> int:
        return sum(pack.weight.nbytes for pack in self.packs.values())

    def prune(self, max_bytes: int):
        """Drop the packs that no longer match their weights, then, past `max_bytes`, the most recent."""
        with self.lock:
            for module in [m for m, pack in self.packs.items() if not pack.matches(m)]:
                del self.packs[module]
            while self.packs and self.nbytes > max_bytes:
                del self.packs[next(reversed(self.packs))]
            self.left_for_budget.clear()

    def stats(self) -> PrepackStats:
        with self.lock:
            return PrepackStats(len(self.packs), self.nbytes, self.packed_calls, len(self.left_for_budget))


@dataclass
class _DecodingCall:
    cache: PrepackCache
    max_bytes: int
    uses: dict = field(default_factory=dict)  # module -> (rows, calls with those rows) in this call

    def packed_weight(self, module: nn.Linear, rows: int) -> torch.Tensor | None:
        pack = self.cache.packs.get(module)
        if pack is not None and pack.rows == rows and pack.matches(module):
            self.cache.packed_calls += 1
            return pack.weight
        if module in self.cache.left_for_budget:  # found not to fit at this call's start or since: plain product
            return None
        last_rows, calls = self.uses.get(module, (rows, 0))
        calls = calls + 1 if last_rows == rows else 1
        self.uses[module] = (rows, calls)
        if calls < 2:  # used once (cross-attention keys/values, a prompt): packing would not pay
            return None
        with self.cache.lock:
            current = self.cache.packs.get(module)
            if current is not None and current.matches(module) and self.cache.in_flight > 1:
                return None  # another call may be decoding with the pack's row count: no packing back and forth
            self.cache.packs.pop(module, None)  # one pack per matrix: the latest row count's
            held = self.cache.nbytes
            size = self.cache.sizes.get((module, rows))  # MKL's packed size, known once packed
            if size is not None and held + size > self.max_bytes:
                self.cache.left_for_budget.add(module)
                return None
            packed = _pack(module.weight.detach().contiguous(), rows)
            self.cache.sizes[(module, rows)] = packed.nbytes
            if held + packed.nbytes > self.max_bytes:
                self.cache.left_for_budget.add(module)
                return None
            self.cache.packs[module] = _Pack(rows, module.weight._version, module.weight.data_ptr(), packed)
            self.cache.packed_calls += 1
        return packed


class PrepackedLinear(nn.Linear):
    """`nn.Linear`; inside `prepacked_decoding`, without gradients, on fp32 CPU tensors, 4-256 rows are
    multiplied with an MKL-prepacked copy of the weight."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            call = _CALL.get()
            if call is not None and not torch.is_grad_enabled() and input.dtype == torch.float32 and input.device.type == "cpu":
                rows = input.numel() // input.shape[-1] if input.shape[-1] else 0
                if MIN_ROWS <= rows <= MAX_ROWS and self.weight.dtype == torch.float32 and (
                    self.bias is None or self.bias.dtype == torch.float32
                ):
                    packed = call.packed_weight(self, rows)
                    if packed is not None:
                        return torch.ops.mkl._mkl_linear(input, packed, self.weight, self.bias, rows)
        return super().forward(input)


def _use_prepacked_linears(module: nn.Module):
    """Turn the plain `nn.Linear`s under `module` into `PrepackedLinear`s (same parameters, same state
    dict; subclasses such as LoRA or quantised layers are left as they are)."""
    for child in module.modules():
        if type(child) is nn.Linear and child.weight.numel() * 4 >= MIN_WEIGHT_BYTES:
            child.__class__ = PrepackedLinear


@contextlib.contextmanager
def prepacked_decoding(owner: nn.Module, language_model: nn.Module, max_bytes: int):
    """Decode with `language_model`'s linears served from packed weights, which `owner` keeps between
    calls (in `owner._decode_prepacks`) within `max_bytes`. A no-op off the CPU, without MKL, or when
    `max_bytes` <= 0 (which also frees what earlier calls packed)."""
    cache = owner.__dict__.get("_decode_prepacks")
    parameter = next(language_model.parameters(), None)
    if max_bytes <= 0 or not mkl_prepacking_available() or parameter is None or parameter.device.type != "cpu":
        if cache is not None:  # turned off, or the model moved: free the packs
            cache.prune(0)
        yield
        return
    if cache is None:
        cache = owner.__dict__["_decode_prepacks"] = PrepackCache()
    _use_prepacked_linears(language_model)
    cache.prune(max_bytes)
    with cache.lock:
        cache.in_flight += 1
    token = _CALL.set(_DecodingCall(cache, max_bytes))
    try:
        yield
    finally:
        _CALL.reset(token)
        with cache.lock:
            cache.in_flight -= 1
    stats = cache.stats()
    if stats.left_for_budget:
        logger.info_once(
            f"prepacked decoding: {stats.packed_matrices} weight matrices packed ({stats.packed_bytes / 2**20:.0f} MiB); "
            f"{stats.left_for_budget} more did not fit `decode_prepack_max_bytes` ({max_bytes / 2**20:.0f} MiB)"
        )
