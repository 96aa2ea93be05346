"""Anchor generation.

Shapes: A anchors per feature cell (len(scales) * len(ratios)), feature map H x W, so ``H * W * A`` anchors
in the order (row, column, anchor) -- the same order in which the RPN head's outputs are flattened.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
from torch import Tensor, nn


def base_anchors(stride: int, scales: Sequence[float], ratios: Sequence[float], offset: float = 0.5) -> Tensor:
    """The A anchors of the first cell, ratio-major as in seed 000: ``[A, 4]`` (x1, y1, x2, y2).

    A ratio is height / width; the area of every anchor of one scale is (stride * scale) ** 2. With
    ``offset=0.5`` the cell's centre is (stride / 2, stride / 2), e.g. (8, 8) at stride 16.
    """
    centre = stride * offset
    anchors = []
    for ratio in ratios:
        for scale in scales:
            height = stride * scale * math.sqrt(ratio)
            width = stride * scale * math.sqrt(1.0 / ratio)
            anchors.append([centre - width / 2, centre - height / 2, centre + width / 2, centre + height / 2])
    return torch.tensor(anchors, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """All anchors of a feature map, cached per (feature size, device): generated once, reused every step."""

    def __init__(self, *, stride: int, scales: Sequence[float], ratios: Sequence[float], offset: float = 0.5):
        super().__init__()
        self.stride = stride
        self.register_buffer("cell_anchors", base_anchors(stride, scales, ratios, offset), persistent=False)
        self._cache: Dict[Tuple[int, int, torch.device], Tensor] = {}

    @property
    def num_anchors_per_cell(self) -> int:
        return self.cell_anchors.shape[0]

    def forward(self, feature_height: int, feature_width: int) -> Tensor:
        """Anchors ``[H * W * A, 4]`` in input-image pixels."""
        if torch.compiler.is_compiling():  # inside a compiled graph: a few fused ops, cheaper than a cache lookup
            return self._grid_anchors(feature_height, feature_width)
        device = self.cell_anchors.device
        key = (feature_height, feature_width, device)
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = self._grid_anchors(feature_height, feature_width)
            self._cache[key] = anchors
        return anchors

    def _grid_anchors(self, height: int, width: int) -> Tensor:
        device = self.cell_anchors.device
        shift_x = torch.arange(width, dtype=torch.float32, device=device) * self.stride
        shift_y = torch.arange(height, dtype=torch.float32, device=device) * self.stride
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
        return (shifts + self.cell_anchors.view(1, -1, 4)).reshape(-1, 4)

    def _apply(self, fn, *args, **kwargs):
        # Moving the module (.to / .cuda) invalidates cached anchors of the old device.
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)


def anchors_inside(anchors: Tensor, image_sizes: Tensor, allowed_border: float = 0.0) -> Tensor:
    """``[N, A]`` mask of anchors lying inside each image (by at most ``allowed_border`` pixels outside).

    ``image_sizes [N, 2]`` holds (height, width) of each image before padding. A negative border disables the
    filter (every anchor counts as inside).
    """
    if allowed_border < 0:
        return torch.ones(image_sizes.shape[0], anchors.shape[0], dtype=torch.bool, device=anchors.device)
    heights = image_sizes[:, 0:1].to(anchors.dtype)
    widths = image_sizes[:, 1:2].to(anchors.dtype)
    return (
        (anchors[None, :, 0] >= -allowed_border)
        & (anchors[None, :, 1] >= -allowed_border)
        & (anchors[None, :, 2] <= widths + allowed_border)
        & (anchors[None, :, 3] <= heights + allowed_border)
    )
