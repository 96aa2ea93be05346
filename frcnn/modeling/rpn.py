"""Region proposal network: head, anchor targets and losses, proposal layer -- all images of a batch at once.

Shapes: N images, C trunk channels, L feature levels (1 for C4 trunks, 5 for FPN ones) of H_l x W_l cells,
A anchors per cell, T = sum of H_l * W_l * A anchors per image, G ground-truth slots per image, P = post-NMS
proposals per image.
Naming: ``pred_*`` are network outputs, ``gt_*`` ground truth, ``*_per_image`` tensors with a leading N.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.boxes import BoxCoder, batched_box_iou, clip_boxes
from frcnn.modeling.anchors import AnchorGenerator, PyramidAnchorGenerator, anchors_inside
from frcnn.modeling.losses import batch_count, masked_mean, smooth_l1
from frcnn.modeling.matcher import Matcher
from frcnn.modeling.nms import nms_keep
from frcnn.modeling.sampling import gather_selected, sample_balanced
from frcnn.modeling.structures import GroundTruth, ImageBatch


class RPNHead(nn.Module):
    """3x3 conv + ReLU (``conv_depth`` of them), then per anchor one objectness logit and four box deltas (1x1
    convs), shared by every level of a feature pyramid.

    One logit with a sigmoid instead of the paper's two-way softmax: the paper notes both are equivalent, and one
    channel per anchor halves the head and the loss work.
    """

    def __init__(self, *, in_channels: int, conv_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size=3, padding=1)
        # torchvision's v2 FPN detector has two (conv_depth=2); separate names keep one-conv checkpoints loading.
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(conv_channels, conv_channels, kernel_size=3, padding=1) for _ in range(conv_depth - 1)
        )
        self.objectness = nn.Conv2d(conv_channels, num_anchors, kernel_size=1)
        self.deltas = nn.Conv2d(conv_channels, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, *self.extra_convs, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, levels: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """``levels``: feature maps ``[N, C, H_l, W_l]`` -> ``pred_objectness [N, T]``, ``pred_deltas [N, T, 4]``
        in anchor order (level by level), T = sum of H_l * W_l * A."""
        outputs = [self._one_level(features) for features in levels]
        if len(outputs) == 1:
            return outputs[0]
        return torch.cat([o for o, _ in outputs], dim=1), torch.cat([d for _, d in outputs], dim=1)

    def _one_level(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        hidden = F.relu(self.conv(features))
        for conv in self.extra_convs:
            hidden = F.relu(conv(hidden))
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
        anchor_generator: Union[AnchorGenerator, PyramidAnchorGenerator],
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
        self, features: Union[Tensor, List[Tensor]], batch: ImageBatch, gt: Optional[GroundTruth] = None
    ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """Proposals ``[N, P, 4]`` (network-input pixels), their validity ``[N, P]`` and, in training, the losses.

        ``features``: one map (C4 trunks) or a list of levels (FPN trunks)."""
        levels = list(features) if isinstance(features, (list, tuple)) else [features]
        with record_function("frcnn.rpn.head"):
            pred_objectness, pred_deltas = self.head(levels)
        with record_function("frcnn.rpn.anchors"):
            feature_sizes = [tuple(level.shape[-2:]) for level in levels]
            anchors = self.anchor_generator.grid(feature_sizes, tuple(batch.tensor.shape[-2:]))
        level_counts = [h * w * self.anchor_generator.num_anchors_per_cell for h, w in feature_sizes]
        mode = "train" if self.training else "test"
        with record_function("frcnn.rpn.proposals"):
            proposals, valid = self.propose(pred_objectness.detach(), pred_deltas.detach(), anchors, batch, mode,
                                            level_counts)
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
        self, pred_objectness: Tensor, pred_deltas: Tensor, anchors: Tensor, batch: ImageBatch, mode: str,
        level_counts: Optional[List[int]] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Per level: keep the top-N, decode, clip, drop small boxes, NMS; then the best P over all levels.

        The levels of a pyramid compete only after NMS, as in torchvision's RPN (per-level top-N and per-level NMS);
        a C4 trunk has one level. All images and levels at once. Returns ``proposals [N, P, 4]`` sorted by score
        within each image and ``valid [N, P]`` (False where an image has fewer than P surviving boxes).
        """
        pre_nms, post_nms = self.pre_nms_top_n[mode], self.post_nms_top_n[mode]
        scores, top = top_per_level(pred_objectness.float(), level_counts or [anchors.shape[0]], pre_nms)  # [N,L,k]
        num_images, num_levels, per_level = scores.shape
        top = top.view(num_images, -1)
        deltas = pred_deltas.gather(1, top.unsqueeze(-1).expand(-1, -1, 4))
        boxes = clip_boxes(self.box_coder.decode(deltas, anchors[top]), batch.image_sizes)  # [N, L * k, 4]

        # min_size is in original-image pixels (jwyang's RPN_MIN_SIZE * im_scale); small boxes get score -inf
        # instead of being removed so shapes stay static; they sort last and are dropped below.
        min_w = self.min_size * batch.scales[:, 1:2]
        min_h = self.min_size * batch.scales[:, 0:1]
        big_enough = ((boxes[..., 2] - boxes[..., 0]) >= min_w) & ((boxes[..., 3] - boxes[..., 1]) >= min_h)
        scores = scores.view(num_images, -1).masked_fill(~big_enough, float("-inf"))

        # One NMS group per (image, level), each sorted by score: [N * L, k].
        keep = nms_keep(boxes.view(-1, per_level, 4), scores.view(-1, per_level), self.nms_thresh, post_nms)
        if num_levels == 1:  # one level: already in score order, the first P keeps are the best P
            index, valid = gather_selected(keep.view(num_images, -1), post_nms)
        else:
            kept_scores = scores.masked_fill(~keep.view(num_images, -1), float("-inf"))
            best_scores, index = kept_scores.topk(min(post_nms, kept_scores.shape[1]), dim=1)
            valid = torch.isfinite(best_scores)
        proposals = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        # Padding slots hold an empty box, not whatever box filled them: after a diverged step that box can be NaN,
        # and torchvision's CPU ROI pooling crashes on NaN coordinates.
        return torch.where(valid.unsqueeze(-1), proposals, torch.zeros_like(proposals)), valid


def top_per_level(scores: Tensor, level_counts: List[int], count: int) -> Tuple[Tensor, Tensor]:
    """Each level's best ``count`` scores (fewer where a level has fewer anchors: padded with -inf) and their
    anchor indices: ``[N, L, k]`` each, k = min(count, largest level), sorted within each level."""
    per_level = min(count, max(level_counts))
    all_scores, all_indices, start = [], [], 0
    for level_count in level_counts:
        level_scores, index = scores[:, start:start + level_count].topk(min(count, level_count), dim=1)
        missing = per_level - index.shape[1]
        if missing:
            level_scores = F.pad(level_scores, (0, missing), value=float("-inf"))
            index = F.pad(index, (0, missing))  # anchor 0 of the level: a harmless box with score -inf
        all_scores.append(level_scores)
        all_indices.append(index + start)
        start += level_count
    return torch.stack(all_scores, dim=1), torch.stack(all_indices, dim=1)
