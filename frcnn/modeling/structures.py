"""Plain containers passed between the detector's stages.

Shapes: N images, G ground-truth slots per image (padded to the batch's largest count, at least 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

from frcnn.modeling.keyed_random import keyed_uniform


@dataclass
class ImageBatch:
    """Normalised, resized and padded images on the model's device."""

    tensor: Tensor  # [N, 3, H_pad, W_pad]
    image_sizes: Tensor  # [N, 2] (height, width) of each resized image before padding, int64
    scales: Tensor  # [N, 2] (scale_y, scale_x): resized size / original size, float32
    original_sizes: Tensor  # [N, 2] (height, width) of each image as given, int64

    def __post_init__(self):
        if not isinstance(self.original_sizes, Tensor):  # a list of (height, width) pairs
            self.original_sizes = torch.tensor(self.original_sizes, dtype=torch.int64, device=self.scales.device)

    def __len__(self) -> int:
        return self.tensor.shape[0]


@dataclass
class GroundTruth:
    """Ground truth of a batch in network-input pixels, padded so all images have G slots."""

    boxes: Tensor  # [N, G, 4] float32; padding slots hold a harmless unit box
    labels: Tensor  # [N, G] int64, 1..K; padding slots hold 0
    valid: Tensor  # [N, G] bool
    keys: Optional[Tensor] = None  # [N] int64: each image's sampling key (frcnn.modeling.keyed_random)

    def uniform(self, count: int, stream: int) -> Tensor:
        """``[N, count]`` numbers in [0, 1) for the samplers: keyed per image when the targets carried keys (the
        trainer's batches do), else from torch's generator."""
        if self.keys is None:
            return torch.rand(self.boxes.shape[0], count, device=self.boxes.device)
        return keyed_uniform(self.keys, count, stream)


@dataclass
class Detections:
    """Each image's best D detections, padded to a static shape: valid ones first, by decreasing score."""

    boxes: Tensor  # [N, D, 4] float32
    scores: Tensor  # [N, D] float32, -inf where not valid
    labels: Tensor  # [N, D] int64, 1..K
    valid: Tensor  # [N, D] bool

    def per_image(self) -> List[Dict[str, Tensor]]:
        """torchvision's result format: one dict of ``boxes``, ``scores``, ``labels`` per image. One host read (the
        number of detections of each image)."""
        counts = self.valid.sum(dim=1).tolist()
        return [
            {"boxes": self.boxes[i, :n], "scores": self.scores[i, :n], "labels": self.labels[i, :n]}
            for i, n in enumerate(counts)
        ]
