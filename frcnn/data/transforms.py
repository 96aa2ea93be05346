"""Training-time augmentation of (uint8 image [3, H, W], boxes [M, 4] xyxy) pairs.

Resizing is the model's job (it resizes on the device), so nothing here changes the image size. Training uses
a random horizontal flip (``x1' = W - x2``, ``x2' = W - x1``: exact in float32 for the continuous box
convention) and, only when ``color_jitter > 0``, a cheap brightness/contrast/saturation jitter (no hue: it costs
five times as much). Both come from torchvision.transforms.v2, with the boxes wrapped in ``tv_tensors``.
Randomness is torch's: seeded per DataLoader worker from the loader's generator (see loader.py).
"""
from __future__ import annotations

from typing import Optional

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class TrainTransform:
    """Random horizontal flip with probability ``hflip_prob``, then photometric jitter of strength
    ``color_jitter`` (0 = off). Call with ``(image uint8 [3,H,W], boxes float32 [M,4])``."""

    def __init__(self, *, hflip_prob: float = 0.5, color_jitter: float = 0.0) -> None:
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f"loader.hflip_prob must be in [0, 1], got {hflip_prob}")
        if color_jitter < 0:
            raise ValueError(f"loader.color_jitter must be >= 0, got {color_jitter}")
        self.hflip_prob = float(hflip_prob)
        self.color_jitter = float(color_jitter)
        self._flip = v2.RandomHorizontalFlip(p=self.hflip_prob) if self.hflip_prob > 0 else None
        s = self.color_jitter
        self._jitter = v2.ColorJitter(brightness=s, contrast=s, saturation=s) if s > 0 else None

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, key: Optional[int] = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``key`` (a training loader's sample key) the random choices follow from it alone, not from the
        loading process's generator (which it leaves untouched): an image flips the same on 1 or N processes."""
        if key is None:
            return self._apply(image, boxes)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(key & ((1 << 63) - 1))  # the CPU generator only, not CUDA's
            return self._apply(image, boxes)

    def _apply(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._flip is not None:
            height, width = image.shape[-2:]
            wrapped = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))
            image, wrapped = self._flip(tv_tensors.Image(image), wrapped)
            image = image.as_subclass(torch.Tensor)
            boxes = wrapped.as_subclass(torch.Tensor) + 0.0  # + 0.0 turns W - W = -0.0 into 0.0
        if self._jitter is not None:
            image = self._jitter(image)
        return image, boxes

    def __repr__(self) -> str:
        return f"TrainTransform(hflip_prob={self.hflip_prob}, color_jitter={self.color_jitter})"
