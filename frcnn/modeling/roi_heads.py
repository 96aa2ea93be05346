"""The detection (R-CNN) head: ROI sampling, ROI pooling, box head, losses and inference.

Shapes: N images, P proposals per image, G ground-truth slots, S sampled ROIs per image (training),
R = N * S (or N * P at inference) pooled regions, K object classes (labels 1..K, 0 = background).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.boxes import BoxCoder, batched_box_iou, clip_boxes
from frcnn.modeling.losses import batch_count, masked_mean, smooth_l1
from frcnn.modeling.matcher import Matcher
from frcnn.modeling.nms import host_reads_are_free, nms_keep
from frcnn.modeling.pooling import POOLERS, pool_rois, pool_rois_by_level
from frcnn.modeling.sampling import gather_selected, sample_balanced
from frcnn.modeling.structures import Detections, GroundTruth, ImageBatch


class BoxPredictor(nn.Module):
    """Class scores ``[R, K + 1]`` and box deltas ``[R, K, 4]`` (``[R, 1, 4]`` when class-agnostic)."""

    def __init__(self, *, in_features: int, num_classes: int, class_agnostic: bool):
        super().__init__()
        self.num_box_outputs = 1 if class_agnostic else num_classes
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, self.num_box_outputs * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x).view(x.shape[0], self.num_box_outputs, 4)


class ROIHeads(nn.Module):
    def __init__(
        self,
        *,
        box_head: nn.Module,
        representation_size: int,
        num_classes: int,
        spatial_scale: float,
        level_strides: Sequence[int] = (),
        pooler: str = "align",
        pool_size: int = 7,
        sampling_ratio: int = 2,
        aligned: bool = True,
        class_agnostic: bool = False,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh_hi: float = 0.5,
        bg_iou_thresh_lo: float = 0.0,
        box_target_stds=(0.1, 0.1, 0.2, 0.2),
        smooth_l1_sigma: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
    ):
        super().__init__()
        if pooler not in POOLERS:
            raise ValueError(f"model.roi.pooler must be one of {', '.join(POOLERS)}, got {pooler!r}")
        if not bg_iou_thresh_lo <= bg_iou_thresh_hi <= fg_iou_thresh:
            raise ValueError(
                "ROI thresholds must satisfy bg_iou_thresh_lo <= bg_iou_thresh_hi <= fg_iou_thresh, got "
                f"{bg_iou_thresh_lo}, {bg_iou_thresh_hi}, {fg_iou_thresh}"
            )
        self.box_head = box_head
        self.predictor = BoxPredictor(
            in_features=representation_size, num_classes=num_classes, class_agnostic=class_agnostic
        )
        self.num_classes = num_classes
        self.spatial_scale = spatial_scale
        self.level_strides = tuple(level_strides)  # FPN: ROIs pooled from these levels (the trunk's first ones)
        self.pooler, self.pool_size, self.sampling_ratio, self.aligned = pooler, pool_size, sampling_ratio, aligned
        # [lo, hi) -> background, >= fg -> foreground, the rest (below lo, or between hi and fg) ignored.
        self.matcher = Matcher(
            (bg_iou_thresh_lo, bg_iou_thresh_hi, fg_iou_thresh), (-1, 0, -1, 1), allow_low_quality_matches=False
        )
        self.box_coder = BoxCoder.from_stds(box_target_stds)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.smooth_l1_sigma = smooth_l1_sigma
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def forward(
        self,
        features: Tensor,
        proposals: Tensor,
        proposal_valid: Tensor,
        batch: ImageBatch,
        gt: Optional[GroundTruth] = None,
    ) -> Tuple[Optional[Detections], Dict[str, Tensor]]:
        """Training: ``(None, losses)``. Inference: ``(padded detections in network-input pixels, {})``."""
        if self.training:
            if gt is None:
                raise ValueError("the ROI head needs ground truth in training mode")
            return None, self.losses(features, proposals, proposal_valid, gt)
        return self.detect(features, proposals, proposal_valid, batch), {}

    # ------------------------------------------------------------------------------------------------- shared
    def pool(self, features: Union[Tensor, List[Tensor]], rois: Tensor) -> Tensor:
        """ROI features ``[N * S, C, pool, pool]`` for ``rois [N, S, 4]`` (network-input pixels), from one feature
        map or, for a pyramid, from the level each ROI's size selects."""
        num_images, per_image = rois.shape[:2]
        image_index = torch.arange(num_images, device=rois.device, dtype=rois.dtype).repeat_interleave(per_image)
        rois_with_index = torch.cat([image_index[:, None], rois.reshape(-1, 4)], dim=1)
        options = dict(pooler=self.pooler, output_size=self.pool_size, sampling_ratio=self.sampling_ratio,
                       aligned=self.aligned)
        if isinstance(features, (list, tuple)):
            levels = features[: len(self.level_strides)]
            return pool_rois_by_level(levels, rois_with_index, strides=self.level_strides, **options)
        return pool_rois(features, rois_with_index, spatial_scale=self.spatial_scale, **options)

    def predict(self, features: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
        with record_function("frcnn.roi.pool"):
            pooled = self.pool(features, rois)
        with record_function("frcnn.roi.box_head"):  # box head and predictor
            pred_logits, pred_deltas = self.predictor(self.box_head(pooled))
            return pred_logits.float(), pred_deltas.float()

    # ------------------------------------------------------------------------------------------------ training
    def sample(self, proposals: Tensor, proposal_valid: Tensor, gt: GroundTruth):
        """Choose S ROIs per image among proposals + ground truth; returns ROIs and their targets."""
        candidates = torch.cat([proposals, gt.boxes], dim=1)  # ground truth joins the proposals (paper, jwyang)
        candidate_valid = torch.cat([proposal_valid, gt.valid], dim=1)
        iou = batched_box_iou(candidates, gt.boxes)  # [N, P + G, G]
        matched_gt, labels, _ = self.matcher(iou, gt.valid, candidate_valid)
        positive, negative = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction,
                                             gt.uniform(labels.shape[1], stream=1))
        slots = min(self.batch_size_per_image, candidates.shape[1])  # S: never more ROIs than candidates
        index, sampled = gather_selected(positive | negative, slots)  # [N, S]

        rois = candidates.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        roi_gt = matched_gt.gather(1, index)
        foreground = positive.gather(1, index) & sampled
        gt_labels = gt.labels.gather(1, roi_gt)
        roi_labels = torch.where(foreground, gt_labels, torch.zeros_like(gt_labels))
        gt_boxes = gt.boxes.gather(1, roi_gt.unsqueeze(-1).expand(-1, -1, 4))
        return rois, sampled, roi_labels, foreground, self.box_coder.encode(rois, gt_boxes)

    def losses(self, features: Tensor, proposals: Tensor, proposal_valid: Tensor, gt: GroundTruth):
        with record_function("frcnn.roi.sample"):
            rois, sampled, roi_labels, foreground, target_deltas = self.sample(proposals, proposal_valid, gt)
        pred_logits, pred_deltas = self.predict(features, rois.detach())
        with record_function("frcnn.roi.losses"):
            sampled, roi_labels, foreground = sampled.reshape(-1), roi_labels.reshape(-1), foreground.reshape(-1)
            # Regression of the ground-truth class only (or of the single class-agnostic box).
            box_slot = (roi_labels - 1).clamp(min=0) if pred_deltas.shape[1] > 1 else torch.zeros_like(roi_labels)
            pred_box = pred_deltas.gather(1, box_slot.view(-1, 1, 1).expand(-1, 1, 4)).squeeze(1)
            num_sampled = batch_count(sampled.sum())  # both losses averaged over sampled ROIs (jwyang, detectron2)
            cls_loss = F.cross_entropy(pred_logits, roi_labels, reduction="none")
            box_loss = smooth_l1(pred_box, target_deltas.reshape(-1, 4), self.smooth_l1_sigma)
            return {
                "loss_rcnn_cls": masked_mean(cls_loss, sampled, num_sampled),
                "loss_rcnn_box": masked_mean(box_loss, foreground, num_sampled),
            }

    # ------------------------------------------------------------------------------------------------ inference
    def detect(self, features: Tensor, proposals: Tensor, proposal_valid: Tensor, batch: ImageBatch) -> Detections:
        if host_reads_are_free(proposals):  # eager CPU: skip proposal columns no image fills (a host read)
            proposals, proposal_valid = drop_empty_columns(proposals, proposal_valid)
        pred_logits, pred_deltas = self.predict(features, proposals)
        with record_function("frcnn.roi.detect"):  # score filter, per-class NMS, the best D per image
            return self._detections(pred_logits, pred_deltas, proposals, proposal_valid, batch)

    def _detections(self, pred_logits: Tensor, pred_deltas: Tensor, proposals: Tensor, proposal_valid: Tensor,
                    batch: ImageBatch) -> Detections:
        """The best ``detections_per_img`` per image after per-class NMS, padded: static shapes, no host read."""
        num_images, per_image = proposals.shape[:2]
        num_classes = self.num_classes
        scores = F.softmax(pred_logits, dim=1)[:, 1:].reshape(num_images, per_image, num_classes)
        boxes = self.box_coder.decode(pred_deltas, proposals.reshape(-1, 1, 4))  # [N * P, K or 1, 4]
        boxes = boxes.expand(-1, num_classes, 4).reshape(num_images, per_image * num_classes, 4)
        boxes = clip_boxes(boxes, batch.image_sizes).reshape(num_images, per_image, num_classes, 4)
        widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        usable = (scores > self.score_thresh) & proposal_valid[..., None] & (widths >= 1e-2) & (heights >= 1e-2)
        scores = scores.masked_fill(~usable, float("-inf"))

        # One NMS group per (image, class): [N * K, P] boxes, each group sorted by its class score.
        group_scores, order = scores.permute(0, 2, 1).reshape(-1, per_image).sort(dim=1, descending=True)
        group_boxes = boxes.permute(0, 2, 1, 3).reshape(-1, per_image, 4).gather(1, order[..., None].expand(-1, -1, 4))
        keep = nms_keep(group_boxes, group_scores, self.nms_thresh)
        kept_scores = group_scores.masked_fill(~keep, float("-inf")).view(num_images, -1)  # [N, K * P]
        count = min(self.detections_per_img, kept_scores.shape[1])
        best_scores, best = kept_scores.topk(count, dim=1)
        return Detections(
            boxes=group_boxes.view(num_images, -1, 4).gather(1, best[..., None].expand(-1, -1, 4)),
            scores=best_scores,
            labels=best // per_image + 1,
            valid=torch.isfinite(best_scores),
        )


def drop_empty_columns(proposals: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
    """Drop the proposal columns no image fills (valid ones come first in each row), so the box head -- the
    costliest part of inference -- never runs on padding. Reads on the host: for eager CPU code only."""
    filled = max(1, int(valid.sum(dim=1).max()))
    return proposals[:, :filled], valid[:, :filled]
