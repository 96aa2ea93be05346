"""Greedy non-maximum suppression of score-sorted boxes, batched over images, with a static-shape result.

Every function here takes ``boxes [N, k, 4]`` and ``scores [N, k]`` already sorted by decreasing score within each
image (boxes to ignore at ``-inf``) and returns ``keep [N, k]``: the boxes greedy NMS keeps (IoU > threshold with a
kept, higher-ranked box suppresses). A mask rather than a list of indices, so the caller's shapes never depend on the
data. Two ways to compute it, chosen per device by :func:`nms_keep`:

- :func:`nms_prefix` (eager CPU): torchvision's NMS on each image's best boxes only, widened until every image has
  ``count`` keeps. Exact and cheapest on a CPU, but its loop reads results on the host: on a GPU each round would be a
  device sync, and a compiler cannot trace it.
- :func:`nms_keep_op` (exported graphs: ``torch.export``, ONNX): the eager CPU way as one custom operator, which
  the ONNX export maps to the standard ``NonMaxSuppression``.
- :func:`nms_fixed_point` (CUDA and compiled graphs): no host round trip, static shapes. Greedy NMS is the unique fixed
  point of ``keep[j] = valid[j] and no kept i < j suppresses j``; iterating that map from "all valid" reaches it after
  as many rounds as the longest chain of suppressions (box a suppresses b, which would have suppressed c, ...).
  The map reverses inclusion, so after an odd number of rounds the result is a subset of greedy NMS's: when a chain
  is longer than the rounds, boxes are missing, never a duplicate kept. The trained demo model's proposals (1000 per
  image, 40 test images) settled in at most 14 rounds, the 100 kept in 11; ``NMS_ROUNDS`` leaves a margin.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torchvision.ops import nms

from frcnn.boxes import batched_box_iou

NMS_ROUNDS = 21  # odd: an unfinished iteration then keeps a subset of greedy NMS's boxes (see above)
# Boxes settled together: as many as keep a block's [N, k, block] overlap matrix under this many entries (at least
# 256). Fewer, larger blocks mean fewer kernel launches (each round is a few small kernels per block).
NMS_BLOCK_ENTRIES = 2**27
NMS_MIN_BLOCK = 256

# nms_prefix first runs on this many times `count` of each image's best boxes; when that keeps too few, on as many
# as the keep rate seen so far says are needed (with this margin, and at least 1.5x more), up to all of them.
NMS_FIRST_PREFIX = 2
NMS_PREFIX_MARGIN = 1.25


def host_reads_are_free(tensor: Tensor) -> bool:
    """True in eager code on the CPU: reading a value on the host waits for no device and breaks no compiled graph."""
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def nms_keep(boxes: Tensor, scores: Tensor, iou_thresh: float, count: Optional[int] = None) -> Tensor:
    """Greedy NMS keep mask ``[N, k]`` (exact for at least each image's first ``count`` keeps, all when ``None``),
    by the method that suits the device: torchvision's kernel in eager CPU code (on a prefix when ``count`` is
    given), the sync-free fixed point on CUDA and under compile."""
    if torch.compiler.is_exporting():  # one operator, which frcnn-export maps to ONNX NonMaxSuppression
        return nms_keep_op(boxes, scores, iou_thresh, count or 0)
    if not host_reads_are_free(boxes):
        return nms_fixed_point(boxes, scores, iou_thresh)
    if count is None:
        return _nms_on_prefix(boxes, scores, iou_thresh, scores.shape[1])
    return nms_prefix(boxes, scores, iou_thresh, count)


@torch.library.custom_op("frcnn::nms_keep", mutates_args=())
def nms_keep_op(boxes: Tensor, scores: Tensor, iou_thresh: float, count: int) -> Tensor:
    """:func:`nms_keep` as one operator with a static result shape, for exported graphs: an exported program runs it
    with torchvision's kernel, ONNX as ``NonMaxSuppression`` (frcnn.export.onnx_ops). ``count`` 0 means all keeps.
    The fixed point would export too, but its rounds over a [k, k] matrix made onnxruntime 4x slower than PyTorch."""
    if count <= 0:
        return _nms_on_prefix(boxes, scores, iou_thresh, scores.shape[1])
    return nms_prefix(boxes, scores, iou_thresh, count)


@nms_keep_op.register_fake
def _(boxes: Tensor, scores: Tensor, iou_thresh: float, count: int) -> Tensor:
    return torch.empty_like(scores, dtype=torch.bool)


def nms_fixed_point(boxes: Tensor, scores: Tensor, iou_thresh: float, rounds: int = NMS_ROUNDS,
                    block: Optional[int] = None) -> Tensor:
    """Greedy NMS by fixed-point iteration: batched matrix steps, no data-dependent shape or host read.

    The boxes are taken in blocks of ``block`` ranks. A block's boxes are first suppressed by the final keeps of the
    blocks before it (one batched IoU, ``[N, before, block]``), then ``rounds`` steps settle the block itself. So a
    chain of suppressions needs the rounds only where it runs inside one block, and the matrices stay small
    (``[N, k, block]`` at most; by default the largest block under ``NMS_BLOCK_ENTRIES`` entries).
    """
    num_images, k = scores.shape
    block = block or min(k, max(NMS_MIN_BLOCK, NMS_BLOCK_ENTRIES // max(num_images * k, 1)))
    valid = torch.isfinite(scores)
    keeps = []
    for start in range(0, k, block):
        block_boxes = boxes[:, start:start + block]
        candidates = valid[:, start:start + block]
        if keeps:
            kept_before = torch.cat(keeps, dim=1)
            overlaps = batched_box_iou(boxes[:, :start], block_boxes) > iou_thresh  # [N, start, b]
            candidates = candidates & ~(overlaps & kept_before[:, :, None]).any(dim=1)
        keeps.append(_settle_block(block_boxes, candidates, iou_thresh, rounds))
    return torch.cat(keeps, dim=1)


def _settle_block(boxes: Tensor, candidates: Tensor, iou_thresh: float, rounds: int) -> Tensor:
    """Greedy NMS among one block's ``candidates [N, b]`` (boxes no earlier block suppressed), by iteration."""
    ranks = torch.arange(boxes.shape[1], device=boxes.device)
    # suppresses[n, i, j]: candidate i ranks above box j and overlaps it by more than the threshold.
    suppresses = (batched_box_iou(boxes, boxes) > iou_thresh) & (ranks[:, None] < ranks[None, :])
    suppresses &= candidates[:, :, None]
    keep = candidates
    for _ in range(rounds):
        keep = candidates & ~(suppresses & keep[:, :, None]).any(dim=1)
    return keep


def nms_prefix(boxes: Tensor, scores: Tensor, iou_thresh: float, count: int) -> Tensor:
    """Greedy NMS found cheaply for each image's first ``count`` keeps (eager code only: it reads on the host).

    Greedy NMS decides about a box from the boxes ranked above it only. So NMS over each image's best ``m`` boxes
    keeps exactly what NMS over all ``k`` keeps among them; once every image has ``count`` keeps there, its first
    ``count`` are final. The prefix grows until that holds or covers all ``k``. torchvision's NMS compares each kept
    box with every box after it, so the cost grows with the square of the boxes (the README's Speed section has the
    figures). The mask is False beyond the prefix.
    """
    num_images, k = scores.shape
    prefix = min(k, NMS_FIRST_PREFIX * count)
    while True:
        keep = _nms_on_prefix(boxes, scores, iou_thresh, prefix)
        if prefix == k:
            return keep
        fewest_kept = int(keep.sum(dim=1).min())
        if fewest_kept >= count:
            return keep
        needed = NMS_PREFIX_MARGIN * prefix * count / max(fewest_kept, 1)
        prefix = min(k, max(int(1.5 * prefix), math.ceil(needed)))


def _grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """Indices that torchvision's NMS keeps within each group, by decreasing score within a group. One kernel call
    per group present (as torchvision's ``batched_nms`` does for large inputs): its other way, moving the groups
    apart by coordinate offsets, rounds the coordinates (to 1/32 px at 200 groups of 1333 px) and so decides
    near-threshold overlaps differently."""
    kept = [torch.empty(0, dtype=torch.int64, device=boxes.device)]
    for group in torch.unique(groups).tolist():
        members = (groups == group).nonzero().squeeze(1)
        kept.append(members[nms(boxes[members], scores[members], iou_thresh)])
    return torch.cat(kept)


def _nms_on_prefix(boxes: Tensor, scores: Tensor, iou_thresh: float, prefix: int) -> Tensor:
    """Keep mask ``[N, k]`` of torchvision's NMS over each image's first ``prefix`` boxes (valid ones only)."""
    num_images, k = scores.shape
    prefix_scores = scores[:, :prefix].reshape(-1)
    # Only the boxes to decide go to the kernel (a host read: eager code), as torchvision's own heads filter by
    # score first: with many classes most per-class scores are below the threshold, -inf here.
    candidates = torch.isfinite(prefix_scores).nonzero().squeeze(1)
    kept = candidates[_grouped_nms(boxes[:, :prefix].reshape(-1, 4)[candidates], prefix_scores[candidates],
                                   candidates // prefix, iou_thresh)]
    keep = torch.zeros(num_images, k, dtype=torch.bool, device=boxes.device)
    keep[kept // prefix, kept % prefix] = True
    return keep
