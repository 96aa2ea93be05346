"""torchvision's FasterRCNN made "the same" as ours, the baseline of scripts/benchmark.py.

Everything comes from the same composed config and our model's modules:

- trunk: a deep copy of our trunk (same weights, same frozen layers; its BatchNorm layers not folded), wrapped to
  expose ``out_channels``;
- box head: a deep copy of our box head (VGG16 fc6/fc7, or ResNet layer4 + average pooling), which takes the
  ``[R, C, 7, 7]`` pooled features directly, like torchvision's ``TwoMLPHead``;
- RPN head: torchvision's ``RPNHead`` with its 3x3 conv widened/narrowed to our ``model.rpn.conv_channels``
  (torchvision's own uses the trunk's channels: 512 for VGG16 as ours, 1024 for ResNet C4 against our 512),
  and our RPN head's initial weights copied in; box predictor: our initial weights copied in;
- anchors: ``AnchorGenerator(sizes=stride * scales, aspect_ratios=ratios)`` (both ratio = height / width, both
  ordered ratio-major, (row, column, anchor)); RPN fg/bg IoU, anchors per image and positive fraction, NMS
  threshold, pre/post-NMS top-N for train and test; torchvision's RPN ``min_size`` is set to our
  ``model.rpn.min_size`` in network-input pixels;
- ROI: ``MultiScaleRoIAlign(["0"], pool_size, sampling_ratio)``, ROIs per image, positive fraction, fg IoU, bg IoU,
  box coder weights 1 / box_target_stds, score threshold, NMS threshold, detections per image;
- ``GeneralizedRCNNTransform`` with the same min_size / max_size / mean / std / size_divisible;
- classes: K = len(dataset.classes) for us, K + 1 (with background) for torchvision.

Differences that remain (none changes the amount of work by more than a few percent): torchvision's anchors are
centred at (0, 0) of each cell and rounded, ours at (stride / 2, stride / 2); its RPN does not ignore anchors that
cross the image border; its box predictor also regresses a box for the background class; its ROI align uses
``aligned=False``; its ROI box loss is smooth L1 with beta 1/9 summed over foreground / sampled ROIs; its RPN
``score_thresh`` is 0; it resizes with ``scale_factor`` where we resize to an explicit size (same padded batch).

torchvision's model runs as it ships and as its detection reference trains it: contiguous memory,
``FrozenBatchNorm2d`` layers, its single-threaded ``MultiScaleRoIAlign``, ``torch.optim.SGD`` (the default foreach
kernel). ``tv_with`` gives it any of our speed-ups as well (:data:`TV_WITH`), to show what each one is worth.
"""
from __future__ import annotations

import copy
import functools
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.modeling.backbones import fold_frozen_batchnorm

# Speed-ups of ours that torchvision's model can be given as well.
TV_WITH = ("channels_last", "fused_sgd", "folded_bn", "threaded_pooling")


def build_models(cfg, images: List[Tensor], device: torch.device, *, tv_with: Sequence[str] = (),
                 calibrate: bool = True) -> Tuple[nn.Module, nn.Module]:
    """Ours as ``frcnn-train`` builds it and torchvision's with the same weights, for inputs like ``images``
    (frozen BatchNorm calibrated on them first unless ``calibrate`` is False: see :func:`calibrate_frozen_batchnorm`).
    """
    import frcnn
    from frcnn.modeling.backbones import is_fpn

    if is_fpn(cfg.backbone.name):  # torchvision's own FPN detector, and ours with its weights
        from frcnn.bench.baseline_fpn import build_fpn_models

        return build_fpn_models(cfg, images, device, tv_with=tv_with, calibrate=calibrate)
    ours = frcnn.build_model(cfg, fold_frozen_bn=False).to(device)  # folded below, after torchvision's copy
    if calibrate:
        calibrate_frozen_batchnorm(ours, images)
    tv = add_stage_scopes(build_torchvision(cfg, ours, tuple(images[0].shape[-2:]), device, tv_with))
    fold_frozen_batchnorm(ours.trunk)  # what frcnn.build_model does by default
    fold_frozen_batchnorm(ours.roi_heads.box_head)
    return ours, tv


def build_torchvision(cfg, ours: nn.Module, image_size: Tuple[int, int], device: torch.device,
                      tv_with: Sequence[str] = ()) -> nn.Module:
    """torchvision's FasterRCNN with our trunk, box head, initial head weights and settings (see the module doc).

    ``ours`` must not have its frozen BatchNorm folded yet: torchvision's copy keeps separate layers, as
    torchvision's own ResNet backbones do, unless ``tv_with`` names ``folded_bn``.
    """
    from torchvision.models.detection import FasterRCNN

    stride = ours.rpn.anchor_generator.stride
    in_channels = ours.rpn.head.conv.in_channels
    model = FasterRCNN(
        TorchvisionTrunk(copy.deepcopy(ours.trunk), in_channels, "channels_last" in tv_with),
        num_classes=None, rpn_head=_rpn_head(ours.rpn.head, ours.rpn.anchor_generator.num_anchors_per_cell),
        box_head=copy.deepcopy(ours.roi_heads.box_head), box_predictor=_box_predictor(ours.roi_heads),
        **_settings(cfg.model, stride),
    )
    # Our RPN min_size is in original-image pixels, torchvision's in network-input pixels (and 1e-3 by default).
    resized_height, _ = ours.preprocessor.resized_size(*image_size, ours.preprocessor.min_size[-1])
    model.rpn.min_size = cfg.model.rpn.min_size * resized_height / image_size[0]
    if "threaded_pooling" in tv_with:
        model.roi_heads.box_roi_pool = ThreadedRoIAlign(cfg.model.roi.pool_size, 1.0 / stride,
                                                        cfg.model.roi.sampling_ratio)
    if "folded_bn" in tv_with:
        fold_frozen_batchnorm(model.backbone)
        fold_frozen_batchnorm(model.roi_heads.box_head)
    # The trunk and head were copied from ours, so their weights are in our memory format; PyTorch's CPU
    # convolution follows the weight's format as well as the input's. Put them back as torchvision has them.
    layout = torch.channels_last if "channels_last" in tv_with else torch.contiguous_format
    return model.to(device=device, memory_format=layout)


def _settings(m, stride: int) -> dict:
    """torchvision's FasterRCNN keyword arguments for our ``model`` config section."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    return dict(
        min_size=tuple(m.input.min_size), max_size=m.input.max_size, image_mean=list(m.input.pixel_mean),
        image_std=list(m.input.pixel_std), size_divisible=m.input.size_divisible,
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(stride * s for s in m.anchor.scales),),
                                             aspect_ratios=(tuple(m.anchor.ratios),)),
        rpn_pre_nms_top_n_train=m.rpn.pre_nms_top_n.train, rpn_pre_nms_top_n_test=m.rpn.pre_nms_top_n.test,
        rpn_post_nms_top_n_train=m.rpn.post_nms_top_n.train, rpn_post_nms_top_n_test=m.rpn.post_nms_top_n.test,
        rpn_nms_thresh=m.rpn.nms_thresh, rpn_fg_iou_thresh=m.rpn.fg_iou_thresh,
        rpn_bg_iou_thresh=m.rpn.bg_iou_thresh, rpn_batch_size_per_image=m.rpn.batch_size_per_image,
        rpn_positive_fraction=m.rpn.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0"], m.roi.pool_size, sampling_ratio=m.roi.sampling_ratio),
        box_score_thresh=m.roi.score_thresh, box_nms_thresh=m.roi.nms_thresh,
        box_detections_per_img=m.roi.detections_per_img, box_fg_iou_thresh=m.roi.fg_iou_thresh,
        box_bg_iou_thresh=m.roi.bg_iou_thresh_hi, box_batch_size_per_image=m.roi.batch_size_per_image,
        box_positive_fraction=m.roi.positive_fraction,
        bbox_reg_weights=tuple(1.0 / s for s in m.roi.box_target_stds),
    )  # fmt: skip


class TorchvisionTrunk(nn.Module):
    """Our trunk for torchvision's GeneralizedRCNN: exposes ``out_channels``, honours channels_last input."""

    def __init__(self, trunk: nn.Module, out_channels: int, channels_last: bool = False):
        super().__init__()
        self.body = trunk
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)


class ThreadedRoIAlign(nn.Module):
    """``MultiScaleRoIAlign`` for one feature level, pooled by ``frcnn.modeling.pooling`` (split over CPU threads),
    with torchvision's ``aligned=False``."""

    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.output_size, self.spatial_scale, self.sampling_ratio = output_size, spatial_scale, sampling_ratio

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes) -> Tensor:
        from torchvision.ops._utils import convert_boxes_to_roi_format

        from frcnn.modeling.pooling import pool_rois

        return pool_rois(features["0"], convert_boxes_to_roi_format(boxes), pooler="align",
                         output_size=self.output_size, spatial_scale=self.spatial_scale,
                         sampling_ratio=self.sampling_ratio, aligned=False)


def _rpn_head(ours: nn.Module, num_anchors: int) -> nn.Module:
    """torchvision's RPNHead with our 3x3 conv width and our initial weights."""
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops.misc import Conv2dNormActivation

    in_channels, conv_channels = ours.conv.in_channels, ours.conv.out_channels
    head = RPNHead(in_channels, num_anchors)
    head.conv = nn.Sequential(Conv2dNormActivation(in_channels, conv_channels, kernel_size=3, norm_layer=None))
    head.cls_logits = nn.Conv2d(conv_channels, num_anchors, kernel_size=1)
    head.bbox_pred = nn.Conv2d(conv_channels, num_anchors * 4, kernel_size=1)
    for source, target in ((ours.conv, head.conv[0][0]), (ours.objectness, head.cls_logits),
                           (ours.deltas, head.bbox_pred)):
        with torch.no_grad():
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
    return head


def _box_predictor(roi_heads: nn.Module) -> nn.Module:
    """torchvision's FastRCNNPredictor (K + 1 classes, a box for each) with our initial weights."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    source, num_classes = roi_heads.predictor, roi_heads.num_classes
    target = FastRCNNPredictor(source.cls_score.in_features, num_classes + 1)
    with torch.no_grad():
        target.cls_score.load_state_dict(source.cls_score.state_dict())
        weight = source.bbox_pred.weight.view(-1, 4, source.bbox_pred.in_features)
        bias = source.bbox_pred.bias.view(-1, 4)
        weight = weight.expand(num_classes, -1, -1).reshape(-1, weight.shape[-1])  # class-agnostic: tile
        bias = bias.expand(num_classes, -1).reshape(-1)
        target.bbox_pred.weight.zero_()
        target.bbox_pred.bias.zero_()
        target.bbox_pred.weight[4:].copy_(weight)  # rows 0..3: the background class, ours has none
        target.bbox_pred.bias[4:].copy_(bias)
    return target


def calibrate_frozen_batchnorm(model: nn.Module, images: List[Tensor]) -> int:
    """Set every FrozenBatchNorm2d's statistics from its input in one inference pass; returns how many.

    A data-dependent init: each layer is calibrated before the next one runs, so the whole trunk and box head end
    with roughly unit-scale activations, as trained weights give. With torchvision's identity statistics a random
    ResNet's C4 features reach |x| ~ 16, the random RPN then regresses nearly every anchor to the whole image,
    NMS leaves a few dozen proposals, and the ROI stages do far less work than with a trained model.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    def set_statistics(module: FrozenBatchNorm2d, inputs) -> None:
        x = inputs[0].detach().float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    layers = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    handles = [layer.register_forward_pre_hook(set_statistics) for layer in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return len(layers)


def torchvision_optimizer(model: nn.Module, train_cfg, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of torchvision's detection reference (references/detection/train.py): plain SGD, one weight
    decay for every parameter; ``fused`` gives it our fused kernel."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=float(train_cfg.lr), momentum=float(train_cfg.momentum),
                           weight_decay=float(train_cfg.weight_decay), fused=fused or None)


# Stages of our model (frcnn/modeling's scopes) -> what computes them in torchvision's FasterRCNN.
TORCHVISION_STAGES = {
    "preprocess": ("transform.forward",),
    "trunk": ("backbone.forward",),
    "rpn": ("rpn.forward",),
    "rpn.head": ("rpn.head.forward",),
    "rpn.anchors": ("rpn.anchor_generator.forward",),
    "rpn.proposals": ("rpn.box_coder.decode", "rpn.filter_proposals"),
    "rpn.losses": ("rpn.assign_targets_to_anchors", "rpn.box_coder.encode", "rpn.compute_loss"),
    "roi": ("roi_heads.forward",),  # includes its ROI losses: fastrcnn_loss is a module function, not scoped
    "roi.sample": ("roi_heads.select_training_samples",),
    "roi.pool": ("roi_heads.box_roi_pool.forward",),
    "roi.box_head": ("roi_heads.box_head.forward", "roi_heads.box_predictor.forward"),
    "roi.detect": ("roi_heads.postprocess_detections",),
    "postprocess": ("transform.postprocess",),
}


def add_stage_scopes(model: nn.Module) -> nn.Module:
    """Open a ``torchvision.<stage>`` profiler scope around each call that computes a stage (see
    :data:`TORCHVISION_STAGES`). The calls are wrapped on this instance only and still do their own work: a scope
    around torchvision's code, the way our model opens them around its own."""
    for stage, paths in TORCHVISION_STAGES.items():
        for path in paths:
            owner_path, _, name = path.rpartition(".")
            owner = functools.reduce(getattr, owner_path.split("."), model)
            setattr(owner, name, _scoped(f"torchvision.{stage}", getattr(owner, name)))
    return model


def _scoped(scope: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_function(scope):
            return fn(*args, **kwargs)

    return wrapper
