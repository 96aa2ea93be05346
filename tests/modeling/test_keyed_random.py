"""Keyed random numbers (frcnn.modeling.keyed_random) and what uses them: an image draws the same samples and the
same flip whatever batch, position or process it is in."""
from __future__ import annotations

import torch

from frcnn.data.transforms import TrainTransform
from frcnn.modeling.keyed_random import combine_key, keyed_uniform, mix
from frcnn.modeling.sampling import sample_balanced

MASK = (1 << 64) - 1


def splitmix64_finaliser(x: int) -> int:
    """The reference, on Python's unbounded integers (Steele, Lea and Flood; the constants of Vigna's splitmix64)."""
    x &= MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def test_the_tensor_mix_is_splitmix64_bit_for_bit():
    values = [0, 1, 2, 12345, (1 << 63) - 1, 1 << 63, MASK]
    as_int64 = [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    mixed = mix(torch.tensor(as_int64, dtype=torch.int64)).tolist()
    assert [m & MASK for m in mixed] == [splitmix64_finaliser(v) for v in values]
    # splitmix64 seeded with 0 (state += golden ratio, then the finaliser) starts 0xe220a8397b1dcdaf,
    # 0x6e789e6aa1b965f4: the published reference outputs.
    golden = torch.tensor([0x9E3779B97F4A7C15 - (1 << 64), 2 * 0x9E3779B97F4A7C15 - (1 << 64)], dtype=torch.int64)
    assert [m & MASK for m in mix(golden).tolist()] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


def test_a_row_depends_on_its_key_alone():
    keys = torch.tensor([combine_key(0, 7, p) for p in range(4)])
    batch = keyed_uniform(keys, 1000)
    assert torch.equal(keyed_uniform(keys[2:3], 1000), batch[2:3])  # the same key in a batch of one
    assert torch.equal(keyed_uniform(keys.flip(0), 1000), batch.flip(0))  # and at another position
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(keyed_uniform(keys, 1000, stream=1), batch)


def test_the_numbers_are_uniform_in_the_unit_interval():
    numbers = keyed_uniform(torch.tensor([combine_key(3, 1, 0)]), 200_000)[0]
    assert numbers.min() >= 0 and numbers.max() < 1
    assert abs(numbers.mean().item() - 0.5) < 0.005 and abs(numbers.var().item() - 1 / 12) < 0.002
    counts = torch.histc(numbers, bins=20, min=0, max=1)
    assert (counts - 10_000).abs().max() < 500  # each twentieth within 5 % (about 5 standard deviations)


def test_keyed_sampling_picks_the_same_candidates_for_an_image_in_any_batch():
    labels = torch.zeros(3, 500, dtype=torch.int64)
    labels[:, :40] = 1  # 40 foreground candidates per image
    keys = torch.tensor([combine_key(0, 1, p) for p in range(3)])
    positive, negative = sample_balanced(labels, 64, 0.25, keyed_uniform(keys, 500))
    alone_positive, alone_negative = sample_balanced(labels[1:2], 64, 0.25, keyed_uniform(keys[1:2], 500))
    assert torch.equal(positive[1:2], alone_positive) and torch.equal(negative[1:2], alone_negative)
    assert positive.sum(dim=1).tolist() == [16] * 3 and negative.sum(dim=1).tolist() == [48] * 3
    assert not torch.equal(positive[0], positive[1])


def test_a_keyed_flip_follows_the_key_and_leaves_the_generator_alone():
    transform = TrainTransform(hflip_prob=0.5)
    image = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(1, 2, 12).expand(3, 2, 12).clone()
    boxes = torch.tensor([[1.0, 0.0, 4.0, 2.0]])
    flips = []
    for key in range(20):
        state = torch.get_rng_state()
        _, first = transform(image, boxes, key=key)
        torch.manual_seed(key + 1000)  # another generator state: the flip must not change
        _, second = transform(image, boxes, key=key)
        assert torch.equal(first, second)
        flips.append(bool(first[0, 0] != 1.0))
        torch.set_rng_state(state)
    assert 3 < sum(flips) < 17  # about half of the keys flip
    state = torch.get_rng_state()
    transform(image, boxes, key=5)
    assert torch.equal(torch.get_rng_state(), state)  # the loading process's generator did not move
