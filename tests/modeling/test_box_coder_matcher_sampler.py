"""Box coding, IoU, the matcher and the balanced sampler on hand-computed cases."""
import math

import torch

from frcnn.boxes import BoxCoder, batched_box_iou, clip_boxes
from frcnn.modeling.matcher import Matcher
from frcnn.modeling.sampling import gather_selected, sample_balanced


def test_encode_hand_computed():
    # reference centre (5, 5) size 10x10; target centre (10, 15) size 10x20.
    coder = BoxCoder.from_stds((0.1, 0.1, 0.2, 0.2))  # weights (10, 10, 5, 5)
    deltas = coder.encode(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 5, 15, 25]]))
    torch.testing.assert_close(deltas, torch.tensor([[10 * 0.5, 10 * 1.0, 0.0, 5 * math.log(2)]]))


def test_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(1000, 2, generator=generator) * 500
    reference = torch.cat([xy, xy + 10 + torch.rand(1000, 2, generator=generator) * 290], dim=1)
    xy = torch.rand(1000, 2, generator=generator) * 500
    target = torch.cat([xy, xy + 10 + torch.rand(1000, 2, generator=generator) * 290], dim=1)
    # sides in [10, 300]: scale changes stay below the decode clamp (62.5x)
    for coder in (BoxCoder(), BoxCoder.from_stds((0.1, 0.1, 0.2, 0.2))):
        decoded = coder.decode(coder.encode(reference, target), reference)
        torch.testing.assert_close(decoded, target, atol=1e-3, rtol=1e-5)


def test_decode_clamps_scale_and_stays_float32():
    coder = BoxCoder()
    boxes = coder.decode(torch.tensor([[0.0, 0, 100.0, 100.0]], dtype=torch.bfloat16), torch.tensor([[0.0, 0, 16, 16]]))
    assert boxes.dtype == torch.float32 and torch.isfinite(boxes).all()
    width = boxes[0, 2] - boxes[0, 0]
    torch.testing.assert_close(width, torch.tensor(1000.0), rtol=1e-4, atol=0)  # 16 * exp(log(1000 / 16))


def test_iou_hand_computed_and_clip():
    iou = batched_box_iou(torch.tensor([[0.0, 0, 10, 10], [0, 0, 0, 0]]), torch.tensor([[[5.0, 0, 15, 10]]]))
    torch.testing.assert_close(iou, torch.tensor([[[50 / 150], [0.0]]]))  # degenerate box: 0, not NaN
    clipped = clip_boxes(torch.tensor([[[-5.0, 3, 120, 90]]]), torch.tensor([[80, 100]]))
    torch.testing.assert_close(clipped, torch.tensor([[[0.0, 3, 100, 80]]]))


def rpn_matcher():
    return Matcher((0.3, 0.7), (0, -1, 1), allow_low_quality_matches=True)


def test_rpn_matcher_thresholds_and_low_quality():
    iou = torch.tensor([[[0.8, 0.1], [0.4, 0.2], [0.1, 0.25], [0.05, 0.0]]])
    matched, labels, max_iou = rpn_matcher()(iou, torch.tensor([[True, True]]))
    # 0.8 >= 0.7 positive; 0.4 in [0.3, 0.7) ignored; 0.25 < 0.3 but it is gt 1's best -> positive; 0.05 negative.
    assert labels.tolist() == [[1, -1, 1, 0]]
    assert matched.tolist() == [[0, 0, 1, 0]]
    torch.testing.assert_close(max_iou, torch.tensor([[0.8, 0.4, 0.25, 0.05]]))

    # The same matrix with gt 1 a padding slot: candidate 2 now only overlaps gt 0 at 0.1 -> negative.
    _, labels, _ = rpn_matcher()(iou, torch.tensor([[True, False]]))
    assert labels.tolist() == [[1, -1, 0, 0]]


def test_roi_matcher_background_interval_and_empty_image():
    matcher = Matcher((0.1, 0.5, 0.5), (-1, 0, -1, 1))
    iou = torch.tensor([[[0.6], [0.5], [0.49], [0.05]]])
    _, labels, _ = matcher(iou, torch.tensor([[True]]))
    assert labels.tolist() == [[1, 1, 0, -1]]
    # No ground truth at all: with bg_lo = 0 every candidate is background, and invalid candidates are ignored.
    matcher = Matcher((0.0, 0.5, 0.5), (-1, 0, -1, 1))
    _, labels, _ = matcher(iou, torch.tensor([[False]]), candidate_valid=torch.tensor([[True, True, True, False]]))
    assert labels.tolist() == [[0, 0, 0, -1]]


def labels_with(num_pos, num_neg, num_ignored=0):
    labels = torch.tensor([1] * num_pos + [0] * num_neg + [-1] * num_ignored)
    return labels[torch.randperm(len(labels))]


def test_sampler_counts_per_image():
    labels = torch.stack([labels_with(10, 500, 90), labels_with(300, 290, 10), labels_with(200, 20, 380)])
    positive, negative = sample_balanced(labels, batch_size_per_image=256, positive_fraction=0.5)
    assert positive.sum(1).tolist() == [10, 128, 128]
    assert negative.sum(1).tolist() == [246, 128, 20]  # negatives fill up to 256 when positives are scarce
    assert bool((labels[positive] == 1).all()) and bool((labels[negative] == 0).all())
    assert not bool((positive & negative).any())


def test_sampler_is_uniform_over_candidates():
    labels = labels_with(200, 0, 50)[None]
    counts = torch.zeros(250)
    for _ in range(300):
        positive, _ = sample_balanced(labels, batch_size_per_image=256, positive_fraction=0.5)
        counts += positive[0].float()
    frequency = counts[labels[0] == 1] / 300
    assert counts[labels[0] != 1].sum() == 0
    assert frequency.min() > 0.45 and frequency.max() < 0.85  # each expected 128 / 200 = 0.64


def test_gather_selected_packs_in_order_and_pads():
    mask = torch.tensor([[False, True, False, True, True], [False, False, False, False, True]])
    index, valid = gather_selected(mask, 3)
    assert index[0].tolist() == [1, 3, 4] and valid[0].tolist() == [True, True, True]
    assert index[1, 0].item() == 4 and valid[1].tolist() == [True, False, False]
    index, valid = gather_selected(mask, 7)  # more slots than candidates
    assert index.shape == (2, 7) and valid.sum(1).tolist() == [3, 1]
