"""Plain containers passed between the detector's stages.

Shapes: N images, G ground-truth slots per image (padded to the batch's largest count, at least 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from torch import Tensor


@dataclass
class ImageBatch:
    """Normalised, resized and padded images on the model's device."""

    tensor: Tensor  # [N, 3, H_pad, W_pad]
    image_sizes: Tensor  # [N, 2] (height, width) of each resized image before padding, int64
    scales: Tensor  # [N, 2] (scale_y, scale_x): resized size / original size, float32
    original_sizes: List[Tuple[int, int]]  # (height, width) of each image as given

    def __len__(self) -> int:
        return self.tensor.shape[0]


@dataclass
class GroundTruth:
    """Ground truth of a batch in network-input pixels, padded so all images have G slots."""

    boxes: Tensor  # [N, G, 4] float32; padding slots hold a harmless unit box
    labels: Tensor  # [N, G] int64, 1..K; padding slots hold 0
    valid: Tensor  # [N, G] bool
