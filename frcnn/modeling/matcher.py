"""Matching of predictions (anchors or proposals) to ground truth by IoU, batched over images.

Shapes: N images, M candidates (anchors or proposals) per image, G ground-truth slots per image (padded; padding
slots are marked invalid). Labels: 1 = foreground, 0 = background, -1 = ignored.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

IGNORE, BACKGROUND, FOREGROUND = -1, 0, 1


class Matcher:
    """Labels each candidate by its best IoU with any ground truth, interval by interval.

    ``thresholds`` split [0, 1] into ``len(thresholds) + 1`` intervals, each ``[t_i, t_{i+1})`` labelled by
    ``labels[i]``. The RPN uses thresholds (0.3, 0.7) with labels (0, -1, 1); the ROI head (lo, hi, fg) with
    labels (-1, 0, -1, 1). With ``allow_low_quality_matches`` every ground truth's best candidates (all ties)
    are foreground even below the top threshold, so no object is left without a positive anchor.
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        thresholds = list(thresholds)
        if thresholds != sorted(thresholds):
            raise ValueError(f"matcher thresholds must be increasing, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"need {len(thresholds) + 1} labels for thresholds {thresholds}, got {list(labels)}")
        self.thresholds = thresholds
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(
        self, iou: Tensor, gt_valid: Tensor, candidate_valid: Tensor | None = None
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Match ``iou [N, M, G]``.

        ``gt_valid [N, G]`` marks real ground-truth slots; ``candidate_valid [N, M]`` (optional) marks candidates
        that may take part (others get label -1 and never count as a ground truth's best match).
        Returns ``matched_gt [N, M]`` (index of the best ground truth, 0 where there is none), ``labels [N, M]``
        and ``max_iou [N, M]`` (0 for images without ground truth).
        """
        iou = iou.masked_fill(~gt_valid[:, None, :], -1.0)
        if candidate_valid is not None:
            iou = iou.masked_fill(~candidate_valid[:, :, None], -1.0)
        max_iou, matched_gt = iou.max(dim=2)
        # An image without ground truth has max IoU -1 everywhere: it overlaps nothing, so it counts as IoU 0.
        max_iou = max_iou.clamp(min=0.0)

        labels = torch.full_like(matched_gt, self.labels[-1])
        for threshold, label in zip(reversed(self.thresholds), reversed(self.labels[:-1])):
            labels = torch.where(max_iou < threshold, torch.full_like(labels, label), labels)

        if self.allow_low_quality_matches:
            labels = torch.where(self._best_for_some_gt(iou), torch.full_like(labels, FOREGROUND), labels)
        if candidate_valid is not None:
            labels = labels.masked_fill(~candidate_valid, IGNORE)
        return matched_gt, labels, max_iou

    @staticmethod
    def _best_for_some_gt(iou: Tensor) -> Tensor:
        """``[N, M]``: candidates whose IoU equals some ground truth's best IoU (that best being > 0)."""
        best_per_gt = iou.max(dim=1, keepdim=True).values  # [N, 1, G]
        return ((iou == best_per_gt) & (best_per_gt > 0)).any(dim=2)
