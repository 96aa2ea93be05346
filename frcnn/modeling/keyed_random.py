"""Random numbers that depend on a key, not on a generator's history: the same image draws the same samples
whichever process, batch or position it is trained in.

Under torchrun one global batch is split over the ranks. Draws from a shared generator would then depend on the
split (one process draws [4, M] numbers, two draw [2, M] each), so N processes would train a different model than
one. Instead each image of a global batch gets a key from (seed, batch number, position in the global batch) (see
``frcnn.data.loader``), and its numbers are a hash of (key, stream, index): splitmix64's finaliser, computed with
int64 tensor ops (they wrap), so it runs on any device, inside a compiled graph, and never touches torch's RNG.
"""
from __future__ import annotations

import torch
from torch import Tensor

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` keeps the sign)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors: a bijection that scatters neighbouring inputs."""
    x = x ^ _shift_right(x, 30)
    x = x * _signed(_MIX1)
    x = x ^ _shift_right(x, 27)
    x = x * _signed(_MIX2)
    return x ^ _shift_right(x, 31)


def keyed_uniform(keys: Tensor, count: int, stream: int = 0) -> Tensor:
    """``[N, count]`` float32 numbers in [0, 1): row n depends only on ``keys[n]`` (int64), ``stream`` and the
    column. Different streams of one key are independent draws."""
    counter = torch.arange(count, device=keys.device, dtype=torch.int64)
    seed = mix(keys.to(torch.int64) * _signed(_GOLDEN) + stream)
    bits = mix(seed[:, None] + counter[None, :] * _signed(_GOLDEN))
    return _shift_right(bits, 40).to(torch.float32) * (1.0 / (1 << 24))


def combine_key(*parts: int) -> int:
    """One int64 key from integers (e.g. seed, batch number, position): a hash, so nearby tuples get unrelated
    keys."""
    key = torch.zeros((), dtype=torch.int64)
    for part in parts:
        key = mix(key * _signed(_GOLDEN) + int(part))
    return int(key)
