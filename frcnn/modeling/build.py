"""The one place that maps a composed config to the detector's keyword arguments."""
from __future__ import annotations

import torch

from frcnn.errors import ConfigError
from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.backbones import build_backbone
from frcnn.modeling.detector import FasterRCNN
from frcnn.modeling.preprocess import Preprocessor
from frcnn.modeling.roi_heads import ROIHeads
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead


def build_model(cfg, *, fold_frozen_bn: bool = True) -> FasterRCNN:
    """Build the detector from a composed train config (``backbone``, ``model``, ``dataset.classes``).

    ``fold_frozen_bn=False`` keeps frozen BatchNorm layers as separate modules (the benchmark uses it to give
    torchvision's model the layers torchvision would have); the function is the same either way.
    """
    classes = list(cfg.dataset.classes)
    if not classes:
        raise ConfigError(
            "dataset.classes is empty: set it in the dataset config, or let the data layer read it from the "
            "annotations first (frcnn.data.build.resolve_classes)"
        )
    m = cfg.model
    backbone = build_backbone(
        cfg.backbone.name,
        pretrained=cfg.backbone.pretrained,
        weights=cfg.backbone.weights,
        norm=cfg.backbone.norm,
        freeze_at=cfg.backbone.freeze_at,
        width=cfg.backbone.width,
        fold_frozen_bn=fold_frozen_bn,
    )
    if cfg.backbone.name == "vgg16" and m.roi.pool_size != 7:
        raise ConfigError(f"vgg16's fc6 takes 7x7 ROI features: set model.roi.pool_size=7 (got {m.roi.pool_size})")
    anchors = AnchorGenerator(
        stride=backbone.stride, scales=list(m.anchor.scales), ratios=list(m.anchor.ratios), offset=m.anchor.offset
    )
    if m.anchor.stride != backbone.stride:
        raise ConfigError(f"model.anchor.stride={m.anchor.stride}, but {cfg.backbone.name}'s trunk has stride 16")
    conv_channels = backbone.trunk_channels if m.rpn.conv_channels < 0 else m.rpn.conv_channels
    rpn = RegionProposalNetwork(
        head=RPNHead(
            in_channels=backbone.trunk_channels,
            conv_channels=conv_channels,
            num_anchors=anchors.num_anchors_per_cell,
        ),
        anchor_generator=anchors,
        fg_iou_thresh=m.rpn.fg_iou_thresh,
        bg_iou_thresh=m.rpn.bg_iou_thresh,
        batch_size_per_image=m.rpn.batch_size_per_image,
        positive_fraction=m.rpn.positive_fraction,
        nms_thresh=m.rpn.nms_thresh,
        min_size=m.rpn.min_size,
        pre_nms_top_n={"train": m.rpn.pre_nms_top_n.train, "test": m.rpn.pre_nms_top_n.test},
        post_nms_top_n={"train": m.rpn.post_nms_top_n.train, "test": m.rpn.post_nms_top_n.test},
        allowed_border=m.rpn.allowed_border,
        smooth_l1_sigma=m.rpn.smooth_l1_sigma,
    )
    roi_heads = ROIHeads(
        box_head=backbone.box_head,
        representation_size=backbone.representation_size,
        num_classes=len(classes),
        spatial_scale=1.0 / backbone.stride,
        pooler=m.roi.pooler,
        pool_size=m.roi.pool_size,
        sampling_ratio=m.roi.sampling_ratio,
        class_agnostic=m.roi.class_agnostic,
        batch_size_per_image=m.roi.batch_size_per_image,
        positive_fraction=m.roi.positive_fraction,
        fg_iou_thresh=m.roi.fg_iou_thresh,
        bg_iou_thresh_hi=m.roi.bg_iou_thresh_hi,
        bg_iou_thresh_lo=m.roi.bg_iou_thresh_lo,
        box_target_stds=list(m.roi.box_target_stds),
        smooth_l1_sigma=m.roi.smooth_l1_sigma,
        score_thresh=m.roi.score_thresh,
        nms_thresh=m.roi.nms_thresh,
        detections_per_img=m.roi.detections_per_img,
    )
    preprocessor = Preprocessor(
        min_size=list(m.input.min_size),
        max_size=m.input.max_size,
        pixel_mean=list(m.input.pixel_mean),
        pixel_std=list(m.input.pixel_std),
        size_divisible=m.input.size_divisible,
        channels_last=m.channels_last,
    )
    model = FasterRCNN(preprocessor=preprocessor, trunk=backbone.trunk, rpn=rpn, roi_heads=roi_heads)
    if m.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
