"""Fixed-value RPN and ROI-head losses on hand-made inputs, each expectation worked out by hand below.

No random seed is involved: every image has fewer foreground/background candidates than its sample size, so the
balanced sampler takes all of them whatever its random keys are. The conventions checked against the code's own
comments and the design notes: smooth L1 is 0.5 (sigma x)^2 for |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2
(sigma 3 for the RPN, 1 for the head); both losses of a stage are divided by the number of candidates sampled in
the whole batch (not per image); the head regresses the ground-truth class's deltas only; an image without
objects adds nothing to the box losses.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.roi_heads import ROIHeads
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from frcnn.modeling.structures import GroundTruth, ImageBatch

PAD = [0.0, 0.0, 1.0, 1.0]  # the preprocessor's padding slot for images with fewer objects
JUNK = 9.0  # predictions that must not reach a loss: counting any of them would move the value by far more than 1e-6


# ------------------------------------------------------------------------------------------------ arithmetic
def softplus(x: float) -> float:
    """Binary cross-entropy of logit x: log(1 + e^x) for a background anchor; softplus(-x) for a foreground one."""
    return math.log1p(math.exp(x))


def cross_entropy(logits, label: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def smooth_l1(diffs, sigma: float) -> float:
    """The seed code's smooth L1 summed over the 4 coordinates (Fast R-CNN with sigma; beta = 1 / sigma^2)."""
    total = 0.0
    for x in diffs:
        total += 0.5 * (sigma * x) ** 2 if abs(x) < 1.0 / sigma**2 else abs(x) - 0.5 / sigma**2
    return total


def minus(a, b):
    return [x - y for x, y in zip(a, b)]


def image_batch(sizes) -> ImageBatch:
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    return ImageBatch(
        tensor=torch.zeros(len(sizes), 3, height, width),
        image_sizes=torch.tensor(sizes),
        scales=torch.ones(len(sizes), 2),
        original_sizes=list(sizes),
    )


def ground_truth(boxes_per_image, labels_per_image) -> GroundTruth:
    """Pad to the largest object count with the preprocessor's unit box, as the detector does."""
    slots = max(1, max(len(b) for b in boxes_per_image))
    boxes = [b + [PAD] * (slots - len(b)) for b in boxes_per_image]
    labels = [lab + [0] * (slots - len(lab)) for lab in labels_per_image]
    valid = [[True] * len(b) + [False] * (slots - len(b)) for b in boxes_per_image]
    return GroundTruth(boxes=torch.tensor(boxes), labels=torch.tensor(labels), valid=torch.tensor(valid))


# ------------------------------------------------------------------------------------------------------- RPN
def make_rpn(*, scales=(1,)) -> RegionProposalNetwork:
    return RegionProposalNetwork(
        head=RPNHead(in_channels=1, conv_channels=1, num_anchors=1),
        anchor_generator=AnchorGenerator(stride=16, scales=scales, ratios=(1.0,)),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        nms_thresh=0.7,
        min_size=0.0,
        pre_nms_top_n={"train": 10, "test": 10},
        post_nms_top_n={"train": 5, "test": 5},
        smooth_l1_sigma=3.0,
    )


# Five hand-placed anchors in a 64 x 64 image; one object g = (0, 0, 16, 20), area 320.
RPN_ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 16.0, 16.0],  # a0: inter 256, union 320 -> IoU 0.8 >= 0.7: foreground
        [0.0, 0.0, 16.0, 32.0],  # a1: inter 320, union 512 -> IoU 0.625 in [0.3, 0.7), not g's best: ignored
        [32.0, 32.0, 48.0, 48.0],  # a2: IoU 0 < 0.3: background
        [40.0, 0.0, 72.0, 16.0],  # a3: crosses the right border (x2 72 > 64): ignored (allowed_border 0)
        [0.0, 40.0, 16.0, 56.0],  # a4: IoU 0: background
    ]
)
RPN_GT = [0.0, 0.0, 16.0, 20.0]
# Image 0 (the object): a0 positive; a2, a4 negative -> 3 sampled. Image 1 (no object): a0, a1, a2, a4 negative
# (a3 still outside) -> 4 sampled. Both fewer than 256 (128 positives at most): the sampler takes them all.
RPN_LOGITS = [[2.0, 5.0, -1.0, 5.0, 0.0], [1.0, -2.0, 0.0, 7.0, 3.0]]
A0_DELTAS = [0.1, 0.125, -0.5, 0.0]
# a0 -> g with weights (1, 1, 1, 1): a0 is 16 x 16 centred (8, 8), g 16 x 20 centred (8, 10):
# dx = 0 / 16, dy = (10 - 8) / 16 = 0.125, dw = log(16 / 16) = 0, dh = log(20 / 16).
A0_TARGET = [0.0, 0.125, 0.0, math.log(20 / 16)]


def rpn_inputs(num_images: int):
    logits = torch.tensor(RPN_LOGITS[:num_images])
    deltas = torch.full((num_images, 5, 4), JUNK)  # only a0 of image 0 is a positive: everything else is junk
    deltas[0, 0] = torch.tensor(A0_DELTAS)
    gt = ground_truth([[RPN_GT], []][:num_images], [[1], []][:num_images])
    return logits, deltas, RPN_ANCHORS, image_batch([(64, 64)] * num_images), gt


def test_rpn_losses_equal_the_hand_computed_values_normalised_by_the_batch_sample_count():
    rpn = make_rpn()
    # Image 0 alone: a0 positive (logit 2), a2 and a4 negative (logits -1 and 0); the ignored a1 and a3 have
    # logit 5, which would add ~5 each if they were counted.
    image0_cls = softplus(-2.0) + softplus(-1.0) + softplus(0.0)
    # Smooth L1, sigma 3 (beta 1/9): dx 0.1 < 1/9 -> 0.5 * 9 * 0.01 = 0.045; dy 0 -> 0; dw 0.5 -> 0.5 - 1/18;
    # dh log(1.25) = 0.2231 -> 0.2231 - 1/18. Sum ~0.6570.
    image0_box = smooth_l1(minus(A0_DELTAS, A0_TARGET), sigma=3.0)
    assert image0_box == pytest.approx(0.045 + (0.5 - 1 / 18) + (math.log(1.25) - 1 / 18), abs=1e-12)

    losses = rpn.losses(*rpn_inputs(1))
    assert losses["loss_rpn_cls"].item() == pytest.approx(image0_cls / 3, abs=1e-6)
    assert losses["loss_rpn_box"].item() == pytest.approx(image0_box / 3, abs=1e-6)

    # With the empty image: its four negatives (logits 1, -2, 0, 3) join, and both losses are divided by the 7
    # anchors sampled in the batch -- not averaged per image ((x / 3 + y / 4) / 2).
    image1_cls = softplus(1.0) + softplus(-2.0) + softplus(0.0) + softplus(3.0)
    losses = rpn.losses(*rpn_inputs(2))
    assert losses["loss_rpn_cls"].item() == pytest.approx((image0_cls + image1_cls) / 7, abs=1e-6)
    assert losses["loss_rpn_box"].item() == pytest.approx(image0_box / 7, abs=1e-6)
    assert losses["loss_rpn_cls"].item() != pytest.approx((image0_cls / 3 + image1_cls / 4) / 2, abs=1e-3)


def test_rpn_forward_with_constant_head_outputs_on_a_2x2_feature_map():
    # A 2 x 2 map at stride 16, one 16 x 16 anchor per cell (scale 1), in (row, column) order:
    # (0, 0, 16, 16), (16, 0, 32, 16), (0, 16, 16, 32), (16, 16, 32, 32); the image is 32 x 32.
    rpn = make_rpn().train()
    head = rpn.head
    for layer in (head.conv, head.objectness, head.deltas):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    # Zero weights: every anchor's objectness logit and deltas are the biases.
    head.objectness.bias.data.fill_(0.5)
    head.deltas.bias.data.copy_(torch.tensor([0.2, -0.1, 0.3, 0.1]))
    gt = ground_truth([[RPN_GT]], [[1]])
    _, _, losses = rpn(torch.zeros(1, 1, 2, 2), image_batch([(32, 32)]), gt)

    # IoU with g = (0, 0, 16, 20): 0.8 (positive), 0, 64 / 512 = 0.125, 0 (three negatives): 4 sampled.
    expected_cls = (softplus(-0.5) + 3 * softplus(0.5)) / 4
    # Diffs to A0_TARGET: 0.2 -> 0.2 - 1/18; -0.225 -> 0.225 - 1/18; 0.3 -> 0.3 - 1/18; 0.1 - log(1.25) = -0.1231
    # -> 0.1231 - 1/18.
    expected_box = smooth_l1(minus([0.2, -0.1, 0.3, 0.1], A0_TARGET), sigma=3.0) / 4
    assert losses["loss_rpn_cls"].item() == pytest.approx(expected_cls, abs=1e-6)
    assert losses["loss_rpn_box"].item() == pytest.approx(expected_box, abs=1e-6)


def test_rpn_image_without_objects_gives_exactly_zero_box_loss():
    rpn = make_rpn()
    logits, deltas, anchors, _, _ = rpn_inputs(2)
    # Image 1 of rpn_inputs alone (no object): four negatives, no positive; its deltas are all junk.
    losses = rpn.losses(logits[1:], deltas[1:], anchors, image_batch([(64, 64)]), ground_truth([[]], [[]]))
    assert losses["loss_rpn_box"].item() == 0.0
    expected_cls = (softplus(1.0) + softplus(-2.0) + softplus(0.0) + softplus(3.0)) / 4
    assert losses["loss_rpn_cls"].item() == pytest.approx(expected_cls, abs=1e-6)


# -------------------------------------------------------------------------------------------------- ROI head
NUM_CLASSES = 2
STDS = (0.1, 0.1, 0.2, 0.2)  # targets multiplied by (10, 10, 5, 5)

# Image 0 (64 x 64): g0 = (0, 0, 20, 20) class 2, g1 = (40, 40, 60, 60) class 1, both area 400.
# Proposals (the last one invalid: the RPN had fewer boxes than slots), then the ground truth the head appends:
ROI_GT = [[[0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 60.0, 60.0]], []]
ROI_GT_LABELS = [[2, 1], []]
ROI_PROPOSALS = [
    [
        [0.0, 0.0, 20.0, 24.0],  # p0: IoU with g0 400 / 480 = 0.833 >= 0.5: foreground, class 2
        [0.0, 0.0, 40.0, 40.0],  # p1: IoU with g0 400 / 1600 = 0.25, none with g1: background
        [40.0, 40.0, 60.0, 70.0],  # p2: IoU with g1 400 / 600 = 0.667: foreground, class 1
        [8.0, 44.0, 24.0, 60.0],  # p3: invalid proposal: never sampled
    ],
    [  # image 1: no objects; with bg_iou_thresh_lo 0 the valid proposals (IoU 0) are all background
        [4.0, 4.0, 30.0, 30.0],
        [10.0, 20.0, 50.0, 60.0],
        [30.0, 0.0, 60.0, 30.0],
        [0.0, 0.0, 8.0, 8.0],  # invalid
    ],
]
ROI_PROPOSAL_VALID = [[True, True, True, False], [True, True, True, False]]
# Sampled: image 0 p0, p1, p2, g0, g1 (4 foreground <= round(128 * 0.25) = 32, 1 background); image 1 q0, q1, q2
# (3 background) -> 8 ROIs in the batch, all of them taken whatever the sampler's random keys.

# Class scores (background, class 1, class 2) and class-specific deltas per candidate, in candidate order
# (proposals, then the image's ground-truth slots). None = junk: the loss must not read it.
ROI_LOGITS = [
    [[0.0, 1.0, 2.0], [3.0, 0.0, -1.0], [1.0, 2.0, 0.0], None, [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]],
    [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.0], None, None, None],
]
ROI_LABELS = [[2, 0, 1, None, 2, 1], [0, 0, 0, None, None, None]]
ROI_DELTAS = {  # (image, candidate) -> (class-1 deltas, class-2 deltas) of the foreground ROIs
    (0, 0): (None, [0.5, -0.8, 0.0, -0.4]),
    (0, 2): ([1.5, -1.0, 0.2, -2.0], None),
    (0, 4): (None, [0.0, 0.0, 0.0, 2.0]),
    (0, 5): ([0.3, 0.0, 0.0, 0.0], None),
}
ROI_TARGETS = {
    # p0 (20 x 24 centred (10, 12)) -> g0 (20 x 20 centred (10, 10)): (10 * 0 / 20, 10 * -2 / 24, 5 log 1, 5 log 20/24)
    (0, 0): [0.0, 10 * (10 - 12) / 24, 0.0, 5 * math.log(20 / 24)],
    # p2 (20 x 30 centred (50, 55)) -> g1 (20 x 20 centred (50, 50)): (0, 10 * -5 / 30, 0, 5 log 20/30)
    (0, 2): [0.0, 10 * (50 - 55) / 30, 0.0, 5 * math.log(20 / 30)],
    (0, 4): [0.0, 0.0, 0.0, 0.0],  # a ground-truth box regresses to itself
    (0, 5): [0.0, 0.0, 0.0, 0.0],
}


def make_roi_heads(*, class_agnostic=False, channels=2) -> ROIHeads:
    return ROIHeads(
        box_head=nn.Flatten(),  # 1 x 1 pooling: the pooled features themselves are the representation
        representation_size=channels,
        num_classes=NUM_CLASSES,
        spatial_scale=1.0 / 16,
        pool_size=1,
        class_agnostic=class_agnostic,
        box_target_stds=STDS,
        smooth_l1_sigma=1.0,
    ).train()


def roi_inputs(num_images: int):
    gt = ground_truth(ROI_GT[:num_images], ROI_GT_LABELS[:num_images])
    proposals = torch.tensor(ROI_PROPOSALS[:num_images])
    valid = torch.tensor(ROI_PROPOSAL_VALID[:num_images])
    features = torch.zeros(num_images, 2, 4, 4)
    return features, proposals, valid, gt


def table_predict(candidates, logits, deltas):
    """Stand-in for ``ROIHeads.predict``: each ROI gets the outputs listed for its own box in ``candidates``.

    ``candidates [N, C, 4]``, ``logits [N, C, K + 1]``, ``deltas [N, C, B, 4]``; the ROIs come as ``[N, S, 4]``.
    Looking outputs up by box rather than by position keeps the test independent of the order of the sample.
    """

    def predict(features, rois):
        same = (rois[:, :, None, :] == candidates[:, None, :, :]).all(dim=-1)  # [N, S, C]
        assert bool(same.any(dim=-1).all()), "an ROI that is neither a proposal nor a ground-truth box"
        row = same.float().argmax(dim=-1)  # [N, S]
        picked_logits = logits.gather(1, row[..., None].expand(-1, -1, logits.shape[-1]))
        picked_deltas = deltas.gather(1, row[..., None, None].expand(-1, -1, *deltas.shape[2:]))
        return picked_logits.flatten(0, 1), picked_deltas.flatten(0, 1)

    return predict


def roi_tables(num_images: int, *, class_agnostic=False, junk=JUNK):
    """Candidates, logits and deltas of ``num_images`` images as tensors; junk where the loss must not look."""
    gt = ground_truth(ROI_GT[:num_images], ROI_GT_LABELS[:num_images])
    candidates = torch.cat([torch.tensor(ROI_PROPOSALS[:num_images]), gt.boxes], dim=1)
    # Junk logits favour whatever a wrongly counted ROI would be scored against: background -10, classes +10.
    logits = [[row if row is not None else [-10.0, 10.0, 10.0] for row in image] for image in ROI_LOGITS]
    slots = 1 if class_agnostic else NUM_CLASSES
    deltas = torch.full((num_images, candidates.shape[1], slots, 4), junk)
    for (image, candidate), per_class in ROI_DELTAS.items():
        if image < num_images:
            label = ROI_LABELS[image][candidate]
            slot = 0 if class_agnostic else label - 1
            deltas[image, candidate, slot] = torch.tensor(per_class[label - 1])
    return candidates, torch.tensor(logits[:num_images]), deltas


def expected_roi_losses(num_images: int):
    """Sum of the hand-computed per-ROI losses of the sampled ROIs, and their number."""
    cls, box, count = 0.0, 0.0, 0
    for image in range(num_images):
        for candidate, label in enumerate(ROI_LABELS[image]):
            if label is None:  # invalid proposal or padding slot: not sampled
                continue
            count += 1
            cls += cross_entropy(ROI_LOGITS[image][candidate], label)
            if label > 0:  # the ground-truth class's deltas against the target, smooth L1 with sigma 1
                pred = ROI_DELTAS[(image, candidate)][label - 1]
                box += smooth_l1(minus(pred, ROI_TARGETS[(image, candidate)]), sigma=1.0)
    return cls, box, count


def test_roi_targets_match_the_box_coder():
    heads = make_roi_heads()
    _, proposals, _, gt = roi_inputs(1)
    # p0 -> g0 and p2 -> g1, written out by hand above.
    encoded = heads.box_coder.encode(proposals[0, [0, 2]], gt.boxes[0, [0, 1]])
    assert torch.allclose(encoded, torch.tensor([ROI_TARGETS[(0, 0)], ROI_TARGETS[(0, 2)]]), atol=1e-6)


def test_roi_losses_equal_the_hand_computed_values(monkeypatch):
    heads = make_roi_heads()
    features, proposals, valid, gt = roi_inputs(2)
    monkeypatch.setattr(heads, "predict", table_predict(*roi_tables(2)))
    cls, box, count = expected_roi_losses(2)
    assert count == 8
    # By hand: CE = logsumexp - chosen logit. p0 (0, 1, 2) class 2: log(1 + e + e^2) - 2 = 0.4076; p1 (3, 0, -1)
    # background: 0.0659; p2 (1, 2, 0) class 1: 0.4076; g0 (0, 0, 0): log 3 = 1.0986; g1 (-1, 1, 0) class 1:
    # 0.4076; q0 (2, 0, 0): 0.2395; q1: log 3; q2 (-1, 0.5, 0): 2.1041.
    # Box (sigma 1: 0.5 x^2 below 1, |x| - 0.5 above): p0 diffs (0.5, 0.0333, 0, 0.5116) -> 0.125 + 0.00056 +
    # 0.1309; p2 diffs (1.5, 0.6667, 0.2, 0.0273) -> 1.0 + 0.2222 + 0.02 + 0.00037; g0 (0, 0, 0, 2) -> 1.5;
    # g1 (0.3, 0, 0, 0) -> 0.045. Both divided by the 8 ROIs sampled in the batch.
    assert cls == pytest.approx(0.4076 + 0.0659 + 0.4076 + math.log(3) + 0.4076 + 0.2395 + math.log(3) + 2.1041,
                                abs=1e-3)
    assert box == pytest.approx(0.125 + 0.00056 + 0.1309 + 1.0 + 0.2222 + 0.02 + 0.00037 + 1.5 + 0.045, abs=1e-3)

    _, losses = heads(features, proposals, valid, image_batch([(64, 64)] * 2), gt)
    assert losses["loss_rcnn_cls"].item() == pytest.approx(cls / count, abs=1e-6)
    assert losses["loss_rcnn_box"].item() == pytest.approx(box / count, abs=1e-6)


def test_roi_class_specific_regression_reads_the_ground_truth_class_deltas_only(monkeypatch):
    heads = make_roi_heads()
    features, proposals, valid, gt = roi_inputs(1)
    batch = image_batch([(64, 64)])
    box_losses = []
    for junk in (JUNK, -3.0):  # the other class's deltas (and all non-foreground deltas) change...
        monkeypatch.setattr(heads, "predict", table_predict(*roi_tables(1, junk=junk)))
        box_losses.append(heads(features, proposals, valid, batch, gt)[1]["loss_rcnn_box"].item())
    _, box, count = expected_roi_losses(1)
    assert box_losses[0] == box_losses[1] == pytest.approx(box / count, abs=1e-6)  # ...the loss does not

    # Swapping the two classes' deltas makes every foreground ROI read junk: the loss must change.
    candidates, logits, deltas = roi_tables(1)
    monkeypatch.setattr(heads, "predict", table_predict(candidates, logits, deltas.flip(2)))
    swapped = heads(features, proposals, valid, batch, gt)[1]["loss_rcnn_box"].item()
    assert swapped > box / count + 1.0


def test_roi_class_agnostic_regression_uses_its_one_box_for_every_class(monkeypatch):
    heads = make_roi_heads(class_agnostic=True)
    features, proposals, valid, gt = roi_inputs(1)
    monkeypatch.setattr(heads, "predict", table_predict(*roi_tables(1, class_agnostic=True)))
    _, losses = heads(features, proposals, valid, image_batch([(64, 64)]), gt)
    cls, box, count = expected_roi_losses(1)  # the same deltas, now in the single class-agnostic slot
    assert count == 5
    assert losses["loss_rcnn_cls"].item() == pytest.approx(cls / count, abs=1e-6)
    assert losses["loss_rcnn_box"].item() == pytest.approx(box / count, abs=1e-6)


def test_roi_forward_with_a_constant_predictor():
    # The real pooling and predictor: with zero weights every ROI's scores and deltas are the biases.
    heads = make_roi_heads()
    nn.init.zeros_(heads.predictor.cls_score.weight)
    nn.init.zeros_(heads.predictor.bbox_pred.weight)
    bias_logits = [0.5, -0.5, 1.0]
    bias_deltas = [[0.1, -0.2, 0.0, 0.3], [-0.4, 0.0, 0.2, 0.0]]  # class 1, class 2
    heads.predictor.cls_score.bias.data.copy_(torch.tensor(bias_logits))
    heads.predictor.bbox_pred.bias.data.copy_(torch.tensor(bias_deltas).reshape(-1))
    features, proposals, valid, gt = roi_inputs(2)
    _, losses = heads(features + 1.0, proposals, valid, image_batch([(64, 64)] * 2), gt)

    labels = [label for image in ROI_LABELS for label in image if label is not None]  # 2, 0, 1, 2, 1, 0, 0, 0
    cls = sum(cross_entropy(bias_logits, label) for label in labels)
    box = sum(
        smooth_l1(minus(bias_deltas[ROI_LABELS[0][candidate] - 1], target), sigma=1.0)
        for (_, candidate), target in ROI_TARGETS.items()
    )
    assert losses["loss_rcnn_cls"].item() == pytest.approx(cls / 8, abs=1e-6)
    assert losses["loss_rcnn_box"].item() == pytest.approx(box / 8, abs=1e-6)


def test_roi_image_without_objects_gives_exactly_zero_box_loss(monkeypatch):
    heads = make_roi_heads()
    features, proposals, valid, _ = roi_inputs(2)
    # Image 1 alone: three background proposals, every delta junk.
    candidates, logits, deltas = roi_tables(2)
    monkeypatch.setattr(heads, "predict", table_predict(candidates[1:, :5], logits[1:, :5], deltas[1:, :5]))
    gt = ground_truth([[]], [[]])
    _, losses = heads(features[1:], proposals[1:], valid[1:], image_batch([(64, 64)]), gt)
    assert losses["loss_rcnn_box"].item() == 0.0
    expected_cls = sum(cross_entropy(ROI_LOGITS[1][i], 0) for i in range(3)) / 3
    assert losses["loss_rcnn_cls"].item() == pytest.approx(expected_cls, abs=1e-6)
