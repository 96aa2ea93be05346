"""Anchors and anchor labelling against the numbers printed in seed 000 (an 800 x 800 image, stride 16)."""
import torch

from frcnn.boxes import batched_box_iou
from frcnn.modeling.anchors import AnchorGenerator, anchors_inside, base_anchors
from frcnn.modeling.matcher import Matcher

# Seed 000's table, in its (y1, x1, y2, x2) order, ratio-major (0.5, 1, 2) then scale (8, 16, 32).
SEED_BASE_ANCHORS_YXYX = [
    [-37.254833, -82.50967, 53.254833, 98.50967],
    [-82.50967, -173.01933, 98.50967, 189.01933],
    [-173.01933, -354.03867, 189.01933, 370.03867],
    [-56.0, -56.0, 72.0, 72.0],
    [-120.0, -120.0, 136.0, 136.0],
    [-248.0, -248.0, 264.0, 264.0],
    [-82.50967, -37.254833, 98.50967, 53.254833],
    [-173.01933, -82.50967, 189.01933, 98.50967],
    [-354.03867, -173.01933, 370.03867, 189.01933],
]
# Seed 000's two objects, (y1, x1, y2, x2) = [20, 30, 400, 500] and [300, 400, 500, 600], here as (x1, y1, x2, y2).
SEED_GT_XYXY = torch.tensor([[30.0, 20.0, 500.0, 400.0], [400.0, 300.0, 600.0, 500.0]])


def seed_generator():
    return AnchorGenerator(stride=16, scales=(8, 16, 32), ratios=(0.5, 1, 2), offset=0.5)


def test_base_anchors_equal_seed_table():
    ours = base_anchors(16, (8, 16, 32), (0.5, 1, 2), offset=0.5)
    expected = torch.tensor(SEED_BASE_ANCHORS_YXYX)[:, [1, 0, 3, 2]]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    centres = (ours[:, :2] + ours[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.full((9, 2), 8.0))


def test_800x800_gives_22500_anchors_8940_inside():
    anchors = seed_generator()(50, 50)
    assert anchors.shape == (22500, 4)
    inside = anchors_inside(anchors, torch.tensor([[800, 800]]))
    assert int(inside.sum()) == 8940
    # Cell (row 0, column 1) is shifted by the stride along x only; anchors are ordered (row, column, anchor).
    torch.testing.assert_close(anchors[9:18] - anchors[:9], torch.tensor([[16.0, 0, 16, 0]]).expand(9, 4))


def test_anchor_cache_is_reused():
    generator = seed_generator()
    assert generator(50, 50) is generator(50, 50)
    assert generator(40, 50).shape == (40 * 50 * 9, 4)


def test_seed_best_anchor_ious_and_positive_labels():
    anchors = seed_generator()(50, 50)
    inside = anchors_inside(anchors, torch.tensor([[800, 800]]))
    iou = batched_box_iou(anchors, SEED_GT_XYXY[None])  # [1, 22500, 2]
    best = iou.masked_fill(~inside[..., None], -1).amax(dim=1)[0]
    torch.testing.assert_close(best, torch.tensor([0.6813, 0.6104]), atol=1e-4, rtol=0)

    rpn_matcher = Matcher((0.3, 0.7), (0, -1, 1), allow_low_quality_matches=True)
    _, labels, _ = rpn_matcher(iou, torch.ones(1, 2, dtype=torch.bool), candidate_valid=inside)
    best_anchors = ((iou == best.view(1, 1, 2)) & inside[..., None]).any(dim=2)
    assert bool(labels[best_anchors].eq(1).all())
    # No anchor reaches 0.7, so the positives are exactly the ties of the two best IoUs: 18 in seed 000.
    assert int(best_anchors.sum()) == 18
    assert int(labels.eq(1).sum()) == 18
    assert bool(labels[~inside].eq(-1).all())
