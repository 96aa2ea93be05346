"""The one place that maps a composed config to the detector's keyword arguments."""
from __future__ import annotations

import torch

from frcnn.errors import ConfigError
from frcnn.modeling.anchors import AnchorGenerator, PyramidAnchorGenerator
from frcnn.modeling.backbones import Backbone, build_backbone, fold_frozen_batchnorm, is_fpn
from frcnn.modeling.detector import FasterRCNN
from frcnn.modeling.detector_weights import load_detector_weights
from frcnn.modeling.fpn import ROI_LEVELS, build_box_head
from frcnn.modeling.preprocess import Preprocessor
from frcnn.modeling.roi_heads import ROIHeads
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead


def build_model(cfg, *, fold_frozen_bn: bool = True, start_weights: bool = True) -> FasterRCNN:
    """Build the detector from a composed train config (``backbone``, ``model``, ``dataset.classes``).

    ``fold_frozen_bn=False`` keeps frozen BatchNorm layers as separate modules (the benchmark uses it to give
    torchvision's model the layers torchvision would have); the function is the same either way.
    ``start_weights=False`` ignores ``model.weights`` (a checkpoint's own weights are about to replace them).
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
        fold_frozen_bn=False,  # folded below, after any detector weights in torchvision's layout are loaded
        fpn_channels=m.fpn.channels,
        fpn_norm=m.fpn.norm,
    )
    if cfg.backbone.name == "vgg16" and m.roi.pool_size != 7:
        raise ConfigError(f"vgg16's fc6 takes 7x7 ROI features: set model.roi.pool_size=7 (got {m.roi.pool_size})")
    if is_fpn(cfg.backbone.name):
        backbone = _with_fpn_box_head(backbone, m)
    model = FasterRCNN(preprocessor=build_preprocessor(m), trunk=backbone.trunk,
                       rpn=build_rpn(m, backbone, build_anchors(m, backbone, cfg.backbone.name)),
                       roi_heads=build_roi_heads(m, backbone, len(classes)))
    if start_weights and m.weights:
        load_detector_weights(model, m.weights, fold_frozen_bn=fold_frozen_bn)
    elif fold_frozen_bn:
        fold_frozen_batchnorm(model)
    if m.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_anchors(m, backbone: Backbone, name: str):
    if backbone.level_strides:
        if len(m.anchor.sizes) != len(backbone.level_strides):
            raise ConfigError(f"model.anchor.sizes={list(m.anchor.sizes)}: {name} has "
                              f"{len(backbone.level_strides)} pyramid levels, give one anchor size per level")
        return PyramidAnchorGenerator(sizes=list(m.anchor.sizes), ratios=list(m.anchor.ratios))
    if m.anchor.stride != backbone.stride:
        raise ConfigError(f"model.anchor.stride={m.anchor.stride}, but {name}'s trunk has stride 16")
    return AnchorGenerator(
        stride=backbone.stride, scales=list(m.anchor.scales), ratios=list(m.anchor.ratios), offset=m.anchor.offset
    )


def _with_fpn_box_head(backbone: Backbone, m) -> Backbone:
    head = build_box_head(m.fpn.box_head, channels=backbone.trunk_channels, pool_size=m.roi.pool_size,
                          representation_size=m.fpn.representation_size, norm=m.fpn.norm)
    backbone.box_head, backbone.representation_size = head, m.fpn.representation_size
    return backbone


def _values(node, *keys: str) -> dict:
    """``{key: node.key}``: config keys passed on under their own names."""
    return {key: node[key] for key in keys}


def build_rpn(m, backbone, anchors) -> RegionProposalNetwork:
    conv_channels = backbone.trunk_channels if m.rpn.conv_channels < 0 else m.rpn.conv_channels
    head = RPNHead(in_channels=backbone.trunk_channels, conv_channels=conv_channels,
                   num_anchors=anchors.num_anchors_per_cell, conv_depth=m.rpn.conv_depth)
    top_n = {name: {"train": m.rpn[name].train, "test": m.rpn[name].test}
             for name in ("pre_nms_top_n", "post_nms_top_n")}
    return RegionProposalNetwork(
        head=head, anchor_generator=anchors, **top_n,
        **_values(m.rpn, "fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image", "positive_fraction",
                  "nms_thresh", "min_size", "allowed_border", "smooth_l1_sigma"),
    )


def build_roi_heads(m, backbone, num_classes: int) -> ROIHeads:
    return ROIHeads(
        box_head=backbone.box_head, representation_size=backbone.representation_size, num_classes=num_classes,
        spatial_scale=1.0 / backbone.stride, level_strides=backbone.level_strides[:ROI_LEVELS],
        box_target_stds=list(m.roi.box_target_stds),
        **_values(m.roi, "pooler", "pool_size", "sampling_ratio", "aligned", "class_agnostic", "batch_size_per_image",
                  "positive_fraction", "fg_iou_thresh", "bg_iou_thresh_hi", "bg_iou_thresh_lo", "smooth_l1_sigma",
                  "score_thresh", "nms_thresh", "detections_per_img"),
    )


def build_preprocessor(m) -> Preprocessor:
    return Preprocessor(min_size=list(m.input.min_size), max_size=m.input.max_size,
                        pixel_mean=list(m.input.pixel_mean), pixel_std=list(m.input.pixel_std),
                        size_divisible=m.input.size_divisible, channels_last=m.channels_last,
                        resize_rounding=m.input.resize_rounding)
