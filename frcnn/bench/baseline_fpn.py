"""torchvision's FPN Faster R-CNN as the benchmark's baseline for our ``resnet*_fpn`` models: the same weights.

torchvision's model is built as torchvision builds ``fasterrcnn_resnet50_fpn`` for fine-tuning (a ResNet with
``FrozenBatchNorm2d`` and layer1 and the stem frozen, ``resnet_fpn_backbone``, its ``TwoMLPHead`` box head), with
the settings of our composed config; its frozen BatchNorm statistics are calibrated on the benchmark's images (see
:func:`~frcnn.bench.baseline.calibrate_frozen_batchnorm`), and ours loads its state dict through the same key map
as ``model.weights`` does (:mod:`frcnn.modeling.detector_weights`). The two then compute the same detections
(tests/modeling/test_torchvision_detector_weights.py); what differs is only how.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from frcnn.bench.baseline import _settings, add_stage_scopes, calibrate_frozen_batchnorm
from frcnn.errors import ConfigError
from frcnn.modeling.backbones import fold_frozen_batchnorm
from frcnn.modeling.detector_weights import from_torchvision, load_matching
from frcnn.modeling.fpn import LEVEL_STRIDES, ROI_LEVELS


def build_fpn_models(cfg, images: List[Tensor], device: torch.device, *, tv_with: Sequence[str] = (),
                     calibrate: bool = True) -> Tuple[nn.Module, nn.Module]:
    import frcnn

    if cfg.model.fpn.box_head != "two_fc" or cfg.model.fpn.norm != "none" or cfg.model.rpn.conv_depth != 1:
        raise ConfigError("the FPN benchmark compares torchvision's fasterrcnn_resnet50_fpn (v1) architecture: "
                          "model.fpn.box_head=two_fc, model.fpn.norm=none, model.rpn.conv_depth=1")
    tv = torchvision_fpn(cfg)
    if calibrate:
        calibrate_frozen_batchnorm(tv, images)
    ours = frcnn.build_model(cfg, fold_frozen_bn=False, start_weights=False)
    load_matching(ours, from_torchvision(tv.state_dict()), "torchvision's model")
    fold_frozen_batchnorm(ours)
    if "threaded_pooling" in tv_with:
        tv.roi_heads.box_roi_pool = ThreadedMultiScaleRoIAlign(cfg.model.roi.pool_size, cfg.model.roi.sampling_ratio)
    if "folded_bn" in tv_with:
        fold_frozen_batchnorm(tv.backbone)
    layout = torch.channels_last if "channels_last" in tv_with else torch.contiguous_format
    return ours.to(device), add_stage_scopes(tv.to(device=device, memory_format=layout))


def torchvision_fpn(cfg) -> nn.Module:
    """torchvision's FasterRCNN on ``resnet_fpn_backbone`` with our config's settings (random weights)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.misc import FrozenBatchNorm2d

    m, name = cfg.model, cfg.backbone.name[: -len("_fpn")]
    backbone = resnet_fpn_backbone(backbone_name=name, weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=5 - 2)  # stem + layer1 frozen, as ours (backbone.freeze_at)
    settings = _settings(m, stride=16)
    settings.update(
        rpn_anchor_generator=AnchorGenerator(sizes=tuple((size,) for size in m.anchor.sizes),
                                             aspect_ratios=(tuple(m.anchor.ratios),) * len(m.anchor.sizes)),
        box_roi_pool=MultiScaleRoIAlign([str(i) for i in range(ROI_LEVELS)], m.roi.pool_size,
                                        sampling_ratio=m.roi.sampling_ratio),
    )
    model = FasterRCNN(backbone, num_classes=len(cfg.dataset.classes) + 1, **settings)
    model.rpn.min_size = 1e-3  # what our config's min_size (0.001 original pixels) amounts to, torchvision's default
    return model


class ThreadedMultiScaleRoIAlign(nn.Module):
    """``MultiScaleRoIAlign`` over P2..P5 pooled by our :func:`~frcnn.modeling.pooling.pool_rois_by_level` (the
    same level rule, split over CPU threads), with torchvision's ``aligned=False``."""

    def __init__(self, output_size: int, sampling_ratio: int):
        super().__init__()
        self.output_size, self.sampling_ratio = output_size, sampling_ratio

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes) -> Tensor:
        from torchvision.ops._utils import convert_boxes_to_roi_format

        from frcnn.modeling.pooling import pool_rois_by_level

        levels = [features[str(i)] for i in range(ROI_LEVELS)]
        return pool_rois_by_level(levels, convert_boxes_to_roi_format(boxes), strides=LEVEL_STRIDES[:ROI_LEVELS],
                                  pooler="align", output_size=self.output_size, sampling_ratio=self.sampling_ratio,
                                  aligned=False)
