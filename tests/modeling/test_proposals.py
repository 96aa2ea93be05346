"""The batched proposal layer against a slow per-image reference."""
import pytest
import torch
from torchvision.ops import box_iou

import frcnn.modeling.nms
from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from frcnn.modeling.structures import ImageBatch

PRE, POST, NMS, MIN_SIZE = 200, 40, 0.7, 12.0


def make_rpn():
    generator = AnchorGenerator(stride=16, scales=(2, 4, 8), ratios=(0.5, 1, 2))
    return RegionProposalNetwork(
        head=RPNHead(in_channels=8, conv_channels=8, num_anchors=9),
        anchor_generator=generator,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        nms_thresh=NMS,
        min_size=MIN_SIZE,
        pre_nms_top_n={"train": PRE, "test": PRE},
        post_nms_top_n={"train": POST, "test": POST},
    )


def reference_proposals(rpn, objectness, deltas, anchors, image_size, scale, post=POST):
    """One image, written the slow obvious way: sort, top-N, drop small, greedy NMS one box at a time."""
    order = objectness.argsort(descending=True)[:PRE]
    boxes = rpn.box_coder.decode(deltas[order], anchors[order])
    height, width = image_size
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    sizes = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(sizes[:, 0] >= MIN_SIZE * scale[1]) & (sizes[:, 1] >= MIN_SIZE * scale[0])]
    kept = []
    for candidate in boxes:
        if all(box_iou(candidate[None], k[None]).item() <= NMS for k in kept):
            kept.append(candidate)
        if len(kept) == post:
            break
    return torch.stack(kept) if kept else torch.zeros(0, 4)


# post_nms_top_n 5: the first NMS prefix (10 boxes) is enough for every image; 40: the prefix grows (80, 200);
# 150: some images never have 150 boxes left, so NMS ends up running on all 200.
# static: what CUDA and compiled code run (fixed-point NMS over all boxes, no host read).
@pytest.mark.parametrize("path", ["eager_cpu", "static"])
@pytest.mark.parametrize("post", [5, POST, 150])
def test_batched_proposals_equal_reference(post, path, monkeypatch):
    if path == "static":
        monkeypatch.setattr(frcnn.modeling.nms, "host_reads_are_free", lambda tensor: False)
    rpn = make_rpn()
    rpn.post_nms_top_n = {"train": post, "test": post}
    generator = torch.Generator().manual_seed(1)
    feature_h, feature_w = 8, 10
    anchors = rpn.anchor_generator(feature_h, feature_w)
    num = anchors.shape[0]
    objectness = torch.randn(3, num, generator=generator)
    deltas = torch.randn(3, num, 4, generator=generator) * 0.5
    batch = ImageBatch(
        tensor=torch.zeros(3, 3, 128, 160),
        image_sizes=torch.tensor([[128, 160], [100, 150], [128, 90]]),
        scales=torch.tensor([[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]]),
        original_sizes=[(128, 160), (200, 300), (64, 45)],
    )
    proposals, valid = rpn.propose(objectness, deltas, anchors, batch, "test")
    assert proposals.shape == (3, post, 4) and valid.shape == (3, post)
    for i in range(3):
        expected = reference_proposals(rpn, objectness[i], deltas[i], anchors, batch.image_sizes[i].tolist(),
                                       batch.scales[i], post)
        got = proposals[i][valid[i]]
        assert got.shape == expected.shape, f"image {i}: {got.shape} vs {expected.shape}"
        torch.testing.assert_close(got, expected)
        # Valid proposals come first; the rest is padding, with empty boxes.
        assert valid[i].tolist() == sorted(valid[i].tolist(), reverse=True)
        assert not proposals[i][~valid[i]].any()
        height, width = batch.image_sizes[i].tolist()
        assert bool((got[:, 0] >= 0).all() and (got[:, 2] <= width).all() and (got[:, 3] <= height).all())


def test_all_boxes_too_small_gives_no_valid_proposal():
    rpn = make_rpn()
    anchors = rpn.anchor_generator(4, 4)
    batch = ImageBatch(torch.zeros(1, 3, 64, 64), torch.tensor([[64, 64]]), torch.tensor([[1.0, 1.0]]), [(64, 64)])
    deltas = torch.zeros(1, anchors.shape[0], 4)
    deltas[..., 2:] = -6.0  # shrink every box far below min_size
    _, valid = rpn.propose(torch.randn(1, anchors.shape[0]), deltas, anchors, batch, "train")
    assert not bool(valid.any())


def test_a_diverged_head_gives_no_nan_proposal():
    """After a diverged step (NaN deltas) the proposals stay finite: torchvision's CPU ROI pooling crashes on NaN."""
    rpn = make_rpn()
    anchors = rpn.anchor_generator(4, 4)
    batch = ImageBatch(torch.zeros(1, 3, 64, 64), torch.tensor([[64, 64]]), torch.tensor([[1.0, 1.0]]), [(64, 64)])
    deltas = torch.zeros(1, anchors.shape[0], 4)
    deltas[0, 4:] = float("nan")  # 4 usable boxes for 40 slots
    proposals, valid = rpn.propose(torch.randn(1, anchors.shape[0]), deltas, anchors, batch, "train")
    assert torch.isfinite(proposals).all() and 0 < valid.sum() < valid.numel()
