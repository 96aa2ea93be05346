"""Greedy NMS three ways (frcnn.modeling.nms): the CPU prefix trick, the sync-free fixed point, torchvision's kernel."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from frcnn.modeling.nms import nms_fixed_point, nms_keep, nms_prefix


def chain(length: int):
    """``length`` unit-height boxes, each shifted 0.2 to the right of the one before, scores falling: IoU of
    neighbours 0.667, of boxes two apart 0.429. At threshold 0.5 each box would suppress the next: greedy NMS keeps
    every other box, and the fixed point needs one round per link to settle the last one."""
    x = torch.arange(length, dtype=torch.float32) * 0.2
    boxes = torch.stack([x, torch.zeros(length), x + 1.0, torch.ones(length)], dim=1)
    scores = torch.linspace(1.0, 0.5, length)
    return boxes[None], scores[None]


def test_a_chain_keeps_every_other_box():
    boxes, scores = chain(6)
    expected = [True, False, True, False, True, False]
    assert nms_prefix(boxes, scores, 0.5, count=6)[0].tolist() == expected
    assert nms_fixed_point(boxes, scores, 0.5)[0].tolist() == expected
    assert sorted(nms(boxes[0], scores[0], 0.5).tolist()) == [0, 2, 4]


def test_an_unfinished_fixed_point_keeps_a_subset_never_a_duplicate():
    boxes, scores = chain(8)  # 7 links
    exact = nms_fixed_point(boxes, scores, 0.5, rounds=9)[0]
    assert exact.tolist() == [True, False] * 4
    for rounds in (1, 3, 5):
        early = nms_fixed_point(boxes, scores, 0.5, rounds=rounds)[0]
        assert not (early & ~exact).any(), f"{rounds} rounds kept a box greedy NMS suppresses"
        assert early.sum() < exact.sum()  # it is unfinished: boxes deep in the chain are still missing
    # Rounds settle one link each, so a block boundary (earlier blocks are final) shortens the chain.
    assert nms_fixed_point(boxes, scores, 0.5, rounds=3, block=4)[0].tolist() == exact.tolist()


def random_boxes(generator, images: int, count: int, size: float = 200.0):
    centres = torch.rand(images, count, 2, generator=generator) * size
    sides = 10 + torch.rand(images, count, 2, generator=generator) * 40
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=-1)
    scores = torch.rand(images, count, generator=generator).sort(dim=1, descending=True).values
    return boxes, scores


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_all_three_agree_with_torchvision_on_random_boxes(threshold):
    generator = torch.Generator().manual_seed(int(threshold * 10))
    boxes, scores = random_boxes(generator, images=3, count=700)
    scores[1, 650:] = float("-inf")  # boxes too small for the RPN: never kept, never suppress
    for i in range(3):
        finite = torch.isfinite(scores[i])
        expected = torch.zeros(700, dtype=torch.bool)
        expected[nms(boxes[i][finite], scores[i][finite], threshold)] = True
        assert torch.equal(nms_fixed_point(boxes, scores, threshold)[i], expected)
        assert torch.equal(nms_keep(boxes, scores, threshold)[i], expected)  # eager CPU: torchvision on all
        # The prefix trick is exact over the boxes it looked at, which hold at least the first `count` keeps.
        prefix = nms_prefix(boxes, scores, threshold, count=50)[i]
        assert prefix.sum() >= 50 and not (prefix & ~expected).any()
        first_keeps = expected.nonzero()[:50, 0]
        assert prefix[first_keeps].all()


def test_the_fixed_point_traces_into_one_graph():
    generator = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(generator, images=2, count=300)
    compiled = torch.compile(lambda b, s: nms_keep(b, s, 0.5, count=20), fullgraph=True, backend="eager")
    assert torch.equal(compiled(boxes, scores), nms_fixed_point(boxes, scores, 0.5))
