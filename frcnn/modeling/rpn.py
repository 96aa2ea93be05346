"""Region proposal network: head, anchor targets and losses, proposal layer -- all images of a batch at once.

Shapes: N images, C trunk channels, H x W feature map, A anchors per cell, T = H * W * A anchors per image,
G ground-truth slots per image, P = post-NMS proposals per image.
Naming: ``pred_*`` are network outputs, ``gt_*`` ground truth, ``*_per_image`` tensors with a leading N.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.boxes import BoxCoder, batched_box_iou, clip_boxes
from frcnn.modeling.anchors import AnchorGenerator, anchors_inside
from frcnn.modeling.losses import batch_count, masked_mean, smooth_l1
from frcnn.modeling.matcher import Matcher
from frcnn.modeling.nms import nms_keep
from frcnn.modeling.sampling import gather_selected, sample_balanced
from frcnn.modeling.structures import GroundTruth, ImageBatch


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then per anchor one objectness logit and four box deltas (1x1 convs).

    One logit with a sigmoid instead of the paper's two-way softmax: the paper notes both are equivalent, and one
    channel per anchor halves the head and the loss work.
    """

    def __init__(self, *, in_channels: int, conv_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size=3, padding=1)
        self.objectness = nn.Conv2d(conv_channels, num_anchors, kernel_size=1)
        self.deltas = nn.Conv2d(conv_channels, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """``features [N, C, H, W]`` -> ``pred_objectness [N, T]``, ``pred_deltas [N, T, 4]`` in anchor order."""
        hidden = F.relu(self.conv(features))
        objectness = self.objectness(hidden)  # [N, A, H, W]
        deltas = self.deltas(hidden)  # [N, A * 4, H, W]
        n, a, h, w = objectness.shape
        objectness = objectness.permute(0, 2, 3, 1).reshape(n, h * w * a)
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4)
        return objectness, deltas


class RegionProposalNetwork(nn.Module):
    def __init__(
        self,
        *,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        nms_thresh: float,
        min_size: float,
        pre_nms_top_n: Dict[str, int],
        post_nms_top_n: Dict[str, int],
        allowed_border: float = 0.0,
        smooth_l1_sigma: float = 3.0,
    ):
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        # (IoU < bg) -> background, [bg, fg) -> ignored, >= fg -> foreground; each object's best anchors too.
        self.matcher = Matcher((bg_iou_thresh, fg_iou_thresh), (0, -1, 1), allow_low_quality_matches=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.pre_nms_top_n = dict(pre_nms_top_n)
        self.post_nms_top_n = dict(post_nms_top_n)
        self.allowed_border = allowed_border
        self.smooth_l1_sigma = smooth_l1_sigma

    def forward(
        self, features: Tensor, batch: ImageBatch, gt: Optional[GroundTruth] = None
    ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """Proposals ``[N, P, 4]`` (network-input pixels), their validity ``[N, P]`` and, in training, the losses."""
        with record_function("frcnn.rpn.head"):
            pred_objectness, pred_deltas = self.head(features)
        with record_function("frcnn.rpn.anchors"):
            anchors = self.anchor_generator(features.shape[-2], features.shape[-1])
        mode = "train" if self.training else "test"
        with record_function("frcnn.rpn.proposals"):
            proposals, valid = self.propose(pred_objectness.detach(), pred_deltas.detach(), anchors, batch, mode)
        losses: Dict[str, Tensor] = {}
        if self.training:
            if gt is None:
                raise ValueError("the RPN needs ground truth in training mode")
            with record_function("frcnn.rpn.losses"):  # anchor targets, sampling and the two losses
                losses = self.losses(pred_objectness, pred_deltas, anchors, batch, gt)
        return proposals, valid, losses

    # ------------------------------------------------------------------------------------------------- training
    def losses(
        self, pred_objectness: Tensor, pred_deltas: Tensor, anchors: Tensor, batch: ImageBatch, gt: GroundTruth
    ) -> Dict[str, Tensor]:
        inside = anchors_inside(anchors, batch.image_sizes, self.allowed_border)  # [N, T]
        iou = batched_box_iou(anchors, gt.boxes)  # [N, T, G]
        matched_gt, labels, _ = self.matcher(iou, gt.valid, candidate_valid=inside)
        positive, negative = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction,
                                             gt.uniform(labels.shape[1], stream=0))
        sampled = positive | negative
        # Both losses are averaged over the anchors sampled in the whole batch (<= 256 per image), so an image
        # contributes the same weight whatever its number of objects.
        num_sampled = batch_count(sampled.sum())
        objectness_loss = F.binary_cross_entropy_with_logits(
            pred_objectness.float(), positive.float(), reduction="none"
        )
        matched_boxes = gt.boxes.gather(1, matched_gt.unsqueeze(-1).expand(-1, -1, 4))  # [N, T, 4]
        target_deltas = self.box_coder.encode(anchors.expand_as(matched_boxes), matched_boxes)
        box_loss = smooth_l1(pred_deltas, target_deltas, self.smooth_l1_sigma)
        return {
            "loss_rpn_cls": masked_mean(objectness_loss, sampled, num_sampled),
            "loss_rpn_box": masked_mean(box_loss, positive, num_sampled),
        }

    # ------------------------------------------------------------------------------------------------ proposals
    def propose(
        self, pred_objectness: Tensor, pred_deltas: Tensor, anchors: Tensor, batch: ImageBatch, mode: str
    ) -> Tuple[Tensor, Tensor]:
        """Decode, clip, drop small boxes, keep the top-N, NMS, keep the top-N again; per image, all at once.

        Returns ``proposals [N, P, 4]`` sorted by score within each image and ``valid [N, P]`` (False where an
        image has fewer than P surviving boxes).
        """
        num_images, num_anchors = pred_objectness.shape
        pre_nms = min(self.pre_nms_top_n[mode], num_anchors)
        post_nms = self.post_nms_top_n[mode]
        scores, top = pred_objectness.float().topk(pre_nms, dim=1)  # [N, k], sorted
        deltas = pred_deltas.gather(1, top.unsqueeze(-1).expand(-1, -1, 4))
        boxes = clip_boxes(self.box_coder.decode(deltas, anchors[top]), batch.image_sizes)  # [N, k, 4]

        # min_size is in original-image pixels (jwyang's RPN_MIN_SIZE * im_scale); small boxes get score -inf
        # instead of being removed so shapes stay static; they sort last and are dropped below.
        min_w = self.min_size * batch.scales[:, 1:2]
        min_h = self.min_size * batch.scales[:, 0:1]
        big_enough = ((boxes[..., 2] - boxes[..., 0]) >= min_w) & ((boxes[..., 3] - boxes[..., 1]) >= min_h)
        scores = scores.masked_fill(~big_enough, float("-inf"))

        keep = nms_keep(boxes, scores, self.nms_thresh, post_nms)  # [N, k]
        index, valid = gather_selected(keep, post_nms)  # each image's first post_nms keeps, by score
        proposals = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        # Padding slots hold an empty box, not whatever box filled them: after a diverged step that box can be NaN,
        # and torchvision's CPU ROI pooling crashes on NaN coordinates.
        return torch.where(valid.unsqueeze(-1), proposals, torch.zeros_like(proposals)), valid
