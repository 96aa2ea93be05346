"""Feature pyramid (FPN) backbones, as torchvision builds its ``fasterrcnn_resnet50_fpn`` models.

- trunk: a ResNet's stem and layer1..layer4 (torchvision's ``IntermediateLayerGetter``, as ``trunk.body``) and
  torchvision's ``FeaturePyramidNetwork`` with a max-pooled extra level (``trunk.fpn``): ``[N, 3, H, W]`` -> the
  five levels P2..P6, ``[N, C, H / s, W / s]`` for s = 4, 8, 16, 32, 64 (C = ``model.fpn.channels``, 256).
- box head: torchvision's ``TwoMLPHead`` (fc6, fc7; the v1 model) or ``FastRCNNConvFCHead`` (four 3x3 convs with
  a norm, then one fc; the v2 model), on 7x7 ROI features pooled from P2..P5 (see
  :func:`frcnn.modeling.pooling.pool_rois_by_level`).

Module names follow torchvision's, so that its detectors' state dicts map onto ours by a plain prefix rename
(:mod:`frcnn.modeling.detector_weights`).
"""
from __future__ import annotations

from typing import List, Optional

from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.errors import ConfigError

LEVEL_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
ROI_LEVELS = 4  # ROIs are pooled from P2..P5; P6 (a max-pooled P5) only serves the RPN, as in the FPN paper
FPN_NORMS = ("none", "bn", "sync_bn", "frozen_bn")  # sync_bn: bn, synchronised over the ranks of a torchrun job
BOX_HEADS = ("two_fc", "conv4_fc")  # torchvision's v1 and v2 box heads


class FPNTrunk(nn.Module):
    """``[N, 3, H, W]`` -> ``[P2, P3, P4, P5, P6]``."""

    def __init__(self, resnet: nn.Module, *, in_channels: List[int], channels: int, norm: str):
        """``in_channels``: the output channels of the ResNet's layer1..layer4."""
        super().__init__()
        stages = {f"layer{i + 1}": str(i) for i in range(4)}
        self.body = IntermediateLayerGetter(resnet, return_layers=stages)
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelMaxPool(),
                                         norm_layer=norm_layer(norm))
        self.channels = channels
        self.level_strides = LEVEL_STRIDES

    def forward(self, images: Tensor) -> List[Tensor]:
        return list(self.fpn(self.body(images)).values())


def norm_layer(norm: str) -> Optional[type]:
    if norm not in FPN_NORMS:
        raise ConfigError(f"unknown model.fpn.norm {norm!r}; choose one of: {', '.join(FPN_NORMS)}")
    # sync_bn: made SyncBatchNorm when a job has several ranks (frcnn.engine.launch.synchronised_batchnorm)
    return {"none": None, "bn": nn.BatchNorm2d, "sync_bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}[norm]


def build_box_head(kind: str, *, channels: int, pool_size: int, representation_size: int, norm: str) -> nn.Module:
    """``[R, C, p, p] -> [R, representation_size]``."""
    if kind == "two_fc":
        return TwoMLPHead(channels * pool_size * pool_size, representation_size)
    if kind == "conv4_fc":
        return FastRCNNConvFCHead((channels, pool_size, pool_size), [256, 256, 256, 256], [representation_size],
                                  norm_layer=norm_layer(norm))
    raise ConfigError(f"unknown model.fpn.box_head {kind!r}; choose one of: {', '.join(BOX_HEADS)}")

