"""Anchor generation.

Shapes: A anchors per feature cell (len(scales) * len(ratios)), feature map H x W, so ``H * W * A`` anchors
in the order (row, column, anchor) -- the same order in which the RPN head's outputs are flattened.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

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

    def grid(self, feature_sizes: List[Tuple[int, int]], image_size: Tuple[int, int]) -> Tensor:
        """The RPN's call (see :class:`PyramidAnchorGenerator`): one level, the trunk's fixed stride."""
        (height, width), = feature_sizes
        return self(height, width)

    def _apply(self, fn, *args, **kwargs):
        # Moving the module (.to / .cuda) invalidates cached anchors of the old device.
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)


class PyramidAnchorGenerator(nn.Module):
    """Anchors of a feature pyramid by torchvision's rule (``AnchorGenerator`` of its FPN detectors), so that its
    trained detectors see the anchors they were trained with:

    - level l has anchors of side ``sizes[l]`` (for ratio 1) and each ratio, zero-centred halves rounded to whole
      pixels, centred on the cell corners ``(j * stride_x, i * stride_y)``;
    - a level's stride is the padded input's size // the level's size, per axis (64 for P6 only when the padded
      size is a multiple of 64: 800 // 13 = 61 for an 800-px input).

    Anchors of all levels are concatenated ``[sum_l H_l * W_l * A, 4]``, each level in (row, column, anchor) order.
    """

    def __init__(self, *, sizes: Sequence[float], ratios: Sequence[float]):
        super().__init__()
        cells = torch.stack([rounded_cell_anchors(size, ratios) for size in sizes])
        self.register_buffer("cell_anchors", cells, persistent=False)  # [L, A, 4]
        self._cache: Dict[Tuple, Tensor] = {}

    @property
    def num_anchors_per_cell(self) -> int:
        return self.cell_anchors.shape[1]

    @property
    def num_levels(self) -> int:
        return self.cell_anchors.shape[0]

    def grid(self, feature_sizes: List[Tuple[int, int]], image_size: Tuple[int, int]) -> Tensor:
        if len(feature_sizes) != self.num_levels:
            raise ValueError(f"{len(feature_sizes)} feature levels but {self.num_levels} anchor sizes "
                             "(model.anchor.sizes needs one size per level)")
        if torch.compiler.is_compiling():  # inside a compiled graph: a few fused ops, cheaper than a cache lookup
            return self._grid(feature_sizes, image_size)
        key = (tuple(map(tuple, feature_sizes)), tuple(image_size), self.cell_anchors.device)
        if key not in self._cache:
            self._cache[key] = self._grid(feature_sizes, image_size)
        return self._cache[key]

    def _grid(self, feature_sizes, image_size) -> Tensor:
        device = self.cell_anchors.device
        levels = []
        for (height, width), cells in zip(feature_sizes, self.cell_anchors):
            stride_y, stride_x = image_size[0] // height, image_size[1] // width  # symbolic when exported
            shift_x = torch.arange(width, dtype=torch.float32, device=device) * stride_x
            shift_y = torch.arange(height, dtype=torch.float32, device=device) * stride_y
            shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            levels.append((shifts + cells.view(1, -1, 4)).reshape(-1, 4))
        return torch.cat(levels)

    def _apply(self, fn, *args, **kwargs):
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)


def rounded_cell_anchors(size: float, ratios: Sequence[float]) -> Tensor:
    """``[A, 4]`` zero-centred anchors of side ``size`` (ratio 1), ratio = height / width, in float32 with the
    half-sides rounded to whole pixels: torchvision's ``AnchorGenerator.generate_anchors``, operation for operation."""
    ratios_t = torch.as_tensor(list(ratios), dtype=torch.float32)
    height_factors = torch.sqrt(ratios_t)
    widths = (1 / height_factors) * size
    heights = height_factors * size
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


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
