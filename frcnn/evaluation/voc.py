"""Pascal VOC detection metric, reproducing the official devkit (VOCevaldet.m / VOCap.m).

Coordinates: frcnn boxes are continuous 0-based (x1, y1, x2, y2) with width = x2 - x1. The devkit works on the
XML's 1-based inclusive pixels, so boxes are converted back (x1 + 1, y1 + 1, x2, y2) and overlaps use inclusive
areas (width = x2 - x1 + 1), exactly as VOCevaldet.m. (For boxes converted this way the inclusive IoU equals
the continuous IoU of the original boxes; the conversion is kept explicit so that the code reads like the devkit.)

Matching rules (VOCevaldet.m):
- detections of a class are sorted by decreasing score over the whole set (a stable sort, like MATLAB's
  ``sort``: ties keep image order, then the order within an image);
- each detection takes the ground-truth box of its class in its image with the highest overlap (the first one
  on ties), whether or not that box was already detected;
- overlap >= ``iou_thresh`` (the devkit's ``ovmax >= minoverlap``; py-faster-rcnn uses ``>``): if that box is
  ``difficult`` the detection is ignored (neither TP nor FP), else the first such detection is a TP and later
  ones are FPs (duplicates); overlap below the threshold is an FP;
- ``difficult`` boxes do not count in the number of positives.

Classes with no (non-difficult) ground truth: the devkit divides by zero there (its recall is NaN/Inf and the
result depends on the AP rule); we return NaN for such a class and leave it out of the mean, as pycocotools does
for categories without ground truth. If no class has ground truth, ``mAP`` is NaN. A class with ground truth but
no detections gets AP 0.

2007 11-point rule: the thresholds are exactly k/10 (py-faster-rcnn's ``np.arange(0., 1.1, 0.1)`` yields
0.30000000000000004, 0.6000000000000001, ... and so drops a point whose recall is exactly 0.3, 0.6 or 0.7).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from frcnn.evaluation._common import as_numpy

__all__ = ["voc_ap", "evaluate_voc"]

_THRESHOLDS_07 = np.arange(11, dtype=np.float64) / 10.0


def voc_ap(recall, precision, use_07_metric: bool) -> float:
    """Average precision from cumulative recall/precision arrays (detections sorted by decreasing score).

    ``use_07_metric=True``: VOC2007's 11-point rule, mean over t in {0, 0.1, ..., 1} of the maximum precision
    at recall >= t (0 where no point reaches t). Otherwise the VOC2010+ area rule: the area under the
    monotone (non-increasing) envelope of the precision/recall curve.
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall and precision differ in length: {rec.shape[0]} vs {prec.shape[0]}")
    if use_07_metric:
        reached = rec[None, :] >= _THRESHOLDS_07[:, None]  # [11, N]
        best = np.where(reached, prec[None, :], -np.inf).max(axis=1, initial=-np.inf)
        return float(np.where(np.isfinite(best), best, 0.0).sum() / 11.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: max precision at any higher recall
    change = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1  # points where recall changes
    return float(np.sum((mrec[change] - mrec[change - 1]) * mpre[change]))


def _to_devkit(boxes: np.ndarray) -> np.ndarray:
    """Continuous 0-based (x1, y1, x2, y2) -> VOC 1-based inclusive pixels."""
    return boxes + np.array([1.0, 1.0, 0.0, 0.0])


def _pairwise_inclusive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise devkit overlap of 1-based inclusive boxes a[i], b[i]; -inf where they do not intersect."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0
    inter = iw * ih
    union = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0) + (b[:, 2] - b[:, 0] + 1.0) * (
        b[:, 3] - b[:, 1] + 1.0
    ) - inter
    ok = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, union, 1.0), -np.inf)


def _gather(items: Sequence[dict], kind: str, num_classes: int):
    """Concatenate per-image dicts into flat arrays plus the image index of each row."""
    boxes, labels, extra, image = [], [], [], []
    for i, item in enumerate(items):
        b = as_numpy(item["boxes"], np.float64, (4,))
        lab = as_numpy(item["labels"], np.int64)
        if kind == "gt":
            e = item.get("difficult")
            e = np.zeros(len(lab), bool) if e is None else as_numpy(e, bool)
        else:
            e = as_numpy(item["scores"], np.float64)
        if not (len(b) == len(lab) == len(e)):
            raise ValueError(f"{kind} of image {i}: boxes, labels and {'difficult' if kind == 'gt' else 'scores'} "
                             f"differ in length ({len(b)}, {len(lab)}, {len(e)})")
        if len(lab) and (lab.min() < 1 or lab.max() > num_classes):
            raise ValueError(f"{kind} of image {i}: labels must lie in 1..{num_classes}, "
                             f"got {sorted(set(lab.tolist()))}")
        boxes.append(b)
        labels.append(lab)
        extra.append(e)
        image.append(np.full(len(lab), i, np.int64))
    if not items:
        return np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool if kind == "gt" else np.float64), \
            np.zeros(0, np.int64)
    return np.concatenate(boxes), np.concatenate(labels), np.concatenate(extra), np.concatenate(image)


def _best_overlaps(det_boxes, det_key, gt_boxes, gt_key):
    """For each detection, the best devkit overlap with a gt of the same (image, class) key and that gt's index.

    All (detection, gt) pairs sharing a key are enumerated at once (no Python loop); ties go to the first gt
    in the input order, as the devkit's ``if ov > ovmax``. Detections with no such gt get (-inf, -1).
    """
    num_det = len(det_key)
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key_sorted = gt_key[gt_order]
    start = np.searchsorted(gt_key_sorted, det_key, side="left")
    counts = np.searchsorted(gt_key_sorted, det_key, side="right") - start
    pair_det = np.repeat(np.arange(num_det), counts)  # sorted by detection
    seg_start = np.cumsum(counts) - counts
    within = np.arange(len(pair_det)) - np.repeat(seg_start, counts)
    pair_gt = gt_order[np.repeat(start, counts) + within]
    iou = _pairwise_inclusive_iou(_to_devkit(det_boxes[pair_det]), _to_devkit(gt_boxes[pair_gt]))
    ovmax = np.full(num_det, -np.inf)
    np.maximum.at(ovmax, pair_det, iou)
    jmax = np.full(num_det, -1, np.int64)
    is_max = iou == ovmax[pair_det]
    dets, first = np.unique(pair_det[is_max], return_index=True)
    jmax[dets] = pair_gt[is_max][first]
    return ovmax, jmax


def _tp_fp(ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, iou_thresh: float):
    """Greedy devkit matching of score-sorted detections of one class, vectorised.

    The gt a detection takes does not depend on earlier matches, so the sequential loop reduces to: among the
    detections whose best overlap passes the threshold, the first one on each non-difficult gt is a TP, later
    ones are FPs; those on a difficult gt are ignored; the rest are FPs.
    """
    hit = ovmax >= iou_thresh
    tp = np.zeros(len(ovmax))
    fp = (~hit).astype(np.float64)
    hit_idx = np.flatnonzero(hit)
    hit_gt = jmax[hit_idx]
    keep = ~gt_difficult[hit_gt]
    hit_idx, hit_gt = hit_idx[keep], hit_gt[keep]
    _, first = np.unique(hit_gt, return_index=True)
    is_first = np.zeros(len(hit_idx), bool)
    is_first[first] = True
    tp[hit_idx[is_first]] = 1.0
    fp[hit_idx[~is_first]] = 1.0
    return tp, fp


def evaluate_voc(
    ground_truth: Sequence[dict],
    detections: Sequence[dict],
    classes: Sequence[str],
    *,
    use_07_metric: bool,
    iou_thresh: float = 0.5,
) -> dict:
    """Pascal VOC AP per class and its mean, with the official devkit's rules (see the module docstring).

    ``ground_truth[i]``: dict with ``boxes`` [M, 4], ``labels`` [M] (1..K) and optionally ``difficult`` [M];
    ``detections[i]``: dict with ``boxes`` [D, 4], ``labels`` [D], ``scores`` [D] (torch or numpy), both in
    continuous 0-based pixels of image i. Returns ``{"mAP": float, "per_class": {name: ap}}`` (fractions;
    NaN for a class without ground truth, left out of the mean).
    """
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth entries but {len(detections)} detection entries")
    num_classes = len(classes)
    gt_boxes, gt_labels, gt_difficult, gt_image = _gather(ground_truth, "gt", num_classes)
    det_boxes, det_labels, det_scores, det_image = _gather(detections, "det", num_classes)

    stride = num_classes + 1
    ovmax, jmax = _best_overlaps(det_boxes, det_image * stride + det_labels, gt_boxes, gt_image * stride + gt_labels)

    per_class: dict[str, float] = {}
    for label, name in enumerate(classes, start=1):
        npos = int(np.count_nonzero((gt_labels == label) & ~gt_difficult))
        if npos == 0:
            per_class[name] = math.nan
            continue
        sel = np.flatnonzero(det_labels == label)
        order = sel[np.argsort(-det_scores[sel], kind="stable")]
        tp, fp = _tp_fp(ovmax[order], jmax[order], gt_difficult, iou_thresh)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / npos
        # Leading ignored (difficult) detections give 0/0: the devkit's NaN there is skipped by MATLAB's max,
        # which the 0 from the eps guard reproduces.
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[name] = voc_ap(recall, precision, use_07_metric)

    valid = [ap for ap in per_class.values() if not math.isnan(ap)]
    mean_ap = float(np.mean(valid)) if valid else math.nan
    return {"mAP": mean_ap, "per_class": per_class}
