"""Detections drawn onto an image (TensorBoard's pictures, frcnn-predict's output)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")


def draw_detections(image: torch.Tensor, detection: Dict[str, torch.Tensor], classes: Sequence[str], *,
                    score_thresh: float = 0.5, width: int = 2) -> torch.Tensor:
    """uint8 [3, H, W] image with the detections at or above ``score_thresh`` drawn, labelled "class score"."""
    from torchvision.utils import draw_bounding_boxes

    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    keep = detection["scores"] >= score_thresh
    boxes = detection["boxes"][keep].float()
    kept_labels = [int(label) for label in detection["labels"][keep]]
    labels: List[str] = [
        f"{classes[label - 1] if 0 < label <= len(classes) else label} {float(score):.2f}"
        for label, score in zip(kept_labels, detection["scores"][keep])
    ]
    if len(boxes) == 0:
        return image
    colors = [PALETTE[(label - 1) % len(PALETTE)] for label in kept_labels]
    return draw_bounding_boxes(image, boxes, labels=labels, colors=colors, width=width)
