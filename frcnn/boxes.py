"""Box coding and small box utilities.

Boxes are (x1, y1, x2, y2) float pixels in the continuous convention: width = x2 - x1 (no "+1").
Shapes: ``[..., 4]``: any number of leading dimensions, so the same code serves anchors ``[A, 4]``, batched
proposals ``[N, R, 4]`` and per-class predictions ``[R, K, 4]``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

# Largest log-scale change a predicted delta may apply: exp(4.135) ~ 62.5x (1000 / 16), as in detectron2 and
# torchvision. Without it an early, untrained regression head can produce inf boxes and NaN losses.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes relative to reference boxes as (dx, dy, dw, dh) and back (Girshick et al., R-CNN).

    ``weights`` (wx, wy, ww, wh) multiply the targets: (10, 10, 5, 5) is the same as dividing the targets by the
    standard deviations (0.1, 0.1, 0.2, 0.2) of the seed code. Both directions compute in float32 whatever the
    input dtype, so coding stays exact under autocast.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    @classmethod
    def from_stds(cls, stds: Sequence[float]) -> "BoxCoder":
        return cls(tuple(1.0 / s for s in stds))

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas that turn ``reference`` boxes into ``target`` boxes; both ``[..., 4]``, same shape."""
        reference, target = reference.float(), target.float()
        wx, wy, ww, wh = self.weights
        ref_w, ref_h, ref_cx, ref_cy = _size_and_centre(reference)
        tgt_w, tgt_h, tgt_cx, tgt_cy = _size_and_centre(target)
        return torch.stack(
            (
                wx * (tgt_cx - ref_cx) / ref_w,
                wy * (tgt_cy - ref_cy) / ref_h,
                ww * torch.log(tgt_w / ref_w),
                wh * torch.log(tgt_h / ref_h),
            ),
            dim=-1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes obtained by applying ``deltas [..., 4]`` to ``reference [..., 4]`` (broadcastable)."""
        deltas, reference = deltas.float(), reference.float()
        wx, wy, ww, wh = self.weights
        ref_w, ref_h, ref_cx, ref_cy = _size_and_centre(reference)
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        cx, cy = dx * ref_w + ref_cx, dy * ref_h + ref_cy
        half_w, half_h = 0.5 * torch.exp(dw) * ref_w, 0.5 * torch.exp(dh) * ref_h
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


def _size_and_centre(boxes: Tensor):
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return widths, heights, boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights


def clip_boxes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip ``boxes [N, R, 4]`` to each image: ``image_sizes [N, 2]`` holds (height, width)."""
    heights = image_sizes[:, 0].to(boxes.dtype).view(-1, 1)
    widths = image_sizes[:, 1].to(boxes.dtype).view(-1, 1)
    x1 = torch.minimum(boxes[..., 0].clamp(min=0), widths)
    y1 = torch.minimum(boxes[..., 1].clamp(min=0), heights)
    x2 = torch.minimum(boxes[..., 2].clamp(min=0), widths)
    y2 = torch.minimum(boxes[..., 3].clamp(min=0), heights)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU between ``boxes1 [N, M, 4]`` (or ``[M, 4]``, shared) and ``boxes2 [N, G, 4]``: ``[N, M, G]``.

    torchvision's ``box_iou`` is per image; this is the same formula broadcast over the batch so the matching
    of all images runs as one kernel sequence. Computed in float32; degenerate boxes give IoU 0, never NaN.
    """
    boxes1, boxes2 = boxes1.float(), boxes2.float()
    if boxes1.dim() == 2:
        boxes1 = boxes1.unsqueeze(0)
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0)
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / union.clamp(min=torch.finfo(torch.float32).tiny)
