#!/usr/bin/env python
"""Speed benchmark: frcnn's batched Faster R-CNN against torchvision's FasterRCNN with the same settings.

Usage (from the repository root)::

    .venv/bin/python scripts/benchmark.py --quick                        # small images, few repetitions
    .venv/bin/python scripts/benchmark.py --device cuda --backbone vgg16,resnet50 --batch-size 1,4 --amp off,fp16
    .venv/bin/python scripts/benchmark.py --size 600x1000 --reps 3 --warmup 1 --amp bf16 --json bench.json

What it measures, in one process, alternating between the two models every repetition (and alternating which
model goes first) so that machine noise hits both alike:

(a) a training step: forward, backward and an SGD step (momentum 0.9, weight decay 5e-4);
(b) inference on a batch: eval mode, ``torch.no_grad()``, detections mapped back to the input images;
(c) a breakdown of each step into stages. Our model is driven stage by stage through its own submodules
    (``preprocessor``, ``trunk``, ``rpn.head``/``anchor_generator``/``losses``/``propose``,
    ``roi_heads.sample``/``pool``/``box_head``/``predictor``/``losses``/``detect``); torchvision's
    GeneralizedRCNN is driven the same way through its own (``transform``, ``backbone``, ``rpn.head``,
    ``filter_proposals``, ``assign_targets_to_anchors``, ``compute_loss``, ``select_training_samples``,
    ``box_roi_pool``, ``box_head``, ``box_predictor``, ``fastrcnn_loss``, ``postprocess_detections``,
    ``transform.postprocess``). To time ``ROIHeads.losses`` and ``ROIHeads.detect`` without the work they
    delegate, their ``sample``/``predict`` calls are answered, on the instance and only for that call, with the
    results of the stages timed just before; no model code is modified.

On a CPU shared with other jobs, prefer ``--threads 1``: with 2 threads on 2 busy cores the timings swung by 2-4x
between repetitions (OMP_WAIT_POLICY=PASSIVE, set here by default, helps).

Medians over ``--reps`` repetitions after ``--warmup`` untimed ones; on CUDA ``torch.cuda.synchronize()`` brackets
every timed region and the peak memory is ``torch.cuda.max_memory_allocated`` per model and step kind (on CPU
memory is reported as n/a). ``--sync-debug`` (CUDA) counts the host synchronisations of one training step and one
inference step with ``torch.cuda.set_sync_debug_mode("warn")``.

Inputs are synthetic and identical for both models: random float images in [0, 1] of ``--size HxW`` with a few
random boxes and labels each, from a fixed seed. Unless ``--override`` says otherwise, ``model.input.min_size``
and ``max_size`` are set to the image's sides, so the network input is exactly ``--size`` (padded to a multiple
of 32) and no resize is timed beyond a same-size interpolation in both models.

Each model is run as its own trainer runs it. Ours as ``frcnn-train`` builds it: ``model.channels_last`` (on by
default), frozen BatchNorm folded into the convolutions (``FrozenBNConv2d``), ROI pooling split over the CPU's
threads (``frcnn.modeling.pooling``), and ``frcnn.engine.optim``'s SGD (the fused kernel). torchvision's as it
ships and as its detection reference trains it: contiguous memory, ``FrozenBatchNorm2d`` layers, its single-threaded
``MultiScaleRoIAlign``, ``torch.optim.SGD`` (the default foreach kernel). ``--tv-with
channels_last,fused_sgd,folded_bn,threaded_pooling`` (or ``all``) gives torchvision's model any of those as well,
which shows what each one is worth and what remains of the difference without them.

How torchvision's model is made "the same" (everything comes from the same composed config):

- trunk: a deep copy of our trunk (same weights, same frozen layers; its BatchNorm layers not folded), wrapped to
  expose ``out_channels``;
- box head: a deep copy of our box head (VGG16 fc6/fc7, or ResNet layer4 + average pooling), which takes the
  ``[R, C, 7, 7]`` pooled features directly, like torchvision's ``TwoMLPHead``;
- RPN head: torchvision's ``RPNHead`` with its 3x3 conv widened/narrowed to our ``model.rpn.conv_channels``
  (torchvision's own uses the trunk's channels: 512 for VGG16 as ours, 1024 for ResNet C4 against our 512),
  and our RPN head's initial weights copied in; box predictor: our initial weights copied in;
- anchors: ``AnchorGenerator(sizes=stride * scales, aspect_ratios=ratios)`` (both ratio = height / width, both
  ordered ratio-major, (row, column, anchor)); RPN fg/bg IoU, 256 anchors / 0.5 positive, NMS threshold,
  pre/post-NMS top-N for train and test; torchvision's RPN ``min_size`` attribute is set to our
  ``model.rpn.min_size`` in network-input pixels;
- ROI: ``MultiScaleRoIAlign(["0"], pool_size, sampling_ratio)``, 128 ROIs / 0.25 positive, fg IoU 0.5, bg IoU
  0.5, box coder weights 1 / box_target_stds, score threshold, NMS threshold, detections per image;
- ``GeneralizedRCNNTransform`` with the same min_size / max_size / mean / std / size_divisible 32;
- classes: K = len(dataset.classes) for us, K + 1 (with background) for torchvision.

Differences that remain (none changes the amount of work by more than a few percent):

- torchvision's anchors are centred at (0, 0) of each cell and rounded, ours at (stride / 2, stride / 2);
- torchvision's RPN does not ignore anchors that cross the image border (ours: ``model.rpn.allowed_border=0``);
- torchvision's box predictor also regresses a box for the background class ((K + 1) * 4 outputs against K * 4);
- torchvision's ROI align uses ``aligned=False``, ours ``aligned=True``;
- torchvision's ROI box loss is smooth L1 with beta 1/9 summed over foreground / sampled ROIs; ours sigma 1;
- torchvision's RPN objectness threshold ``score_thresh`` is 0 (no effect on the work either);
- torchvision resizes with ``scale_factor`` (recompute_scale_factor=True), we resize to an explicit size: the
  padded batch is the same size.

Random weights: a random ResNet with frozen BatchNorm (identity statistics) produces huge activations (|x| ~ 16
at the C4 features), and the random RPN then regresses nearly every anchor to the whole image: NMS leaves a few
dozen proposals and the ROI stages do unrepresentatively little work. So, before torchvision's copy is made, the
FrozenBatchNorm statistics are set from one inference pass on the synthetic batch (``calibrate_frozen_batchnorm``;
``--no-calibrate`` skips it); both models share the result. The SGD learning rate is tiny (1e-6) so repeated
steps stay finite; a non-finite loss is flagged in the table rather than raised. The breakdown header gives the
number of ROIs through the box head and how many of them are real (ours pads to a static shape).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Spinning OpenMP threads make CPU timings erratic (several times slower) when other processes share the cores;
# passive waiting costs nothing measurable on idle cores. Must be set before torch starts its thread pool (so it
# only acts when this file runs as a script); an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
QUICK = {"size": "224x320", "reps": 3, "warmup": 1}
FULL = {"size": "600x1000", "reps": 5, "warmup": 2}
# Speed-ups of ours that --tv-with can give torchvision's model as well.
TV_WITH = ("channels_last", "fused_sgd", "folded_bn", "threaded_pooling")
LEARNING_RATE = 1e-6  # tiny: random-init weights must stay finite over many steps; the work is the same

# Stages of the breakdown, in order, with the coarse group each belongs to.
TRAIN_STAGES = (
    ("preprocess", "preprocess"),
    ("trunk", "trunk"),
    ("RPN head + anchors", "RPN"),
    ("anchor targets + RPN losses", "RPN"),
    ("proposals", "RPN"),
    ("ROI sampling", "ROI heads"),
    ("ROI pooling", "ROI heads"),
    ("box head + predictor", "ROI heads"),
    ("ROI losses", "ROI heads"),
    ("backward", "backward"),
    ("optimizer step", "optimizer"),
)
INFER_STAGES = (
    ("preprocess", "preprocess"),
    ("trunk", "trunk"),
    ("RPN head + anchors", "RPN"),
    ("proposals", "RPN"),
    ("ROI pooling", "ROI heads"),
    ("box head + predictor", "ROI heads"),
    ("detections (score filter, NMS)", "ROI heads"),
    ("to original coordinates", "postprocess"),
)


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class Case:
    """One benchmarked configuration."""

    backbone: str
    batch_size: int
    amp: str  # off | fp16 | bf16


@dataclass
class Timing:
    """Median wall time of one kind of step for both models (milliseconds)."""

    backbone: str
    batch_size: int
    amp: str
    what: str  # "train step" | "inference"
    ours_ms: float
    tv_ms: float
    ours_samples_ms: List[float]
    tv_samples_ms: List[float]
    ours_peak_mb: Optional[float] = None
    tv_peak_mb: Optional[float] = None
    ours_syncs: Optional[int] = None
    tv_syncs: Optional[int] = None
    ours_finite: bool = True  # losses finite in every timed training step
    tv_finite: bool = True

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.tv_ms

    @property
    def ratio_of_best(self) -> float:
        """ours/tv of the fastest repetitions: steadier than the medians on a machine shared with other jobs."""
        return min(self.ours_samples_ms) / min(self.tv_samples_ms)

    @property
    def ours_images_per_s(self) -> float:
        return 1000.0 * self.batch_size / self.ours_ms

    @property
    def tv_images_per_s(self) -> float:
        return 1000.0 * self.batch_size / self.tv_ms

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "ratio": self.ratio,
            "ratio_of_best": self.ratio_of_best,
            "ours_images_per_s": self.ours_images_per_s,
            "tv_images_per_s": self.tv_images_per_s,
        }


@dataclass
class StageTiming:
    backbone: str
    batch_size: int
    amp: str
    mode: str  # "train" | "inference"
    stage: str
    group: str
    ours_ms: float
    tv_ms: float


@dataclass
class StageCounts:
    """Work done in the breakdown step: ROIs through the box head, and how many of them were real (not padding)."""

    backbone: str
    batch_size: int
    amp: str
    mode: str
    ours: Dict[str, int]
    tv: Dict[str, int]


# ------------------------------------------------------------------------------------------------- utilities
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Accumulates wall time per named stage; synchronises the device around each one."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ms: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}  # e.g. how many ROIs went through the box head (read after the step)

    def count(self, name: str, value) -> None:
        self.counts[name] = value  # a tensor or an int; turned into an int outside the timed regions

    @contextlib.contextmanager
    def __call__(self, name: str):
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


@contextlib.contextmanager
def answered(obj: object, name: str, value):
    """Make ``obj.name(...)`` return ``value`` (an instance attribute shadowing the method) for a moment."""
    setattr(obj, name, lambda *args, **kwargs: value)
    try:
        yield
    finally:
        delattr(obj, name)


def autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[amp])


def parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HxW, e.g. 600x1000, got {text!r}") from None
    return height, width


def comma_list(values: Sequence[str]) -> List[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


# -------------------------------------------------------------------------------------------------- models
def compose_config(backbone: str, size: Tuple[int, int], classes: Sequence[str], overrides: Sequence[str]):
    import frcnn  # noqa: F401  (registers the config schemas with Hydra)
    from hydra import compose, initialize_config_dir

    base = [
        f"backbone={backbone}",
        f"dataset.classes=[{','.join(classes)}]",
        f"model.input.min_size=[{min(size)}]",
        f"model.input.max_size={max(size)}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=[*base, *overrides])


def build_ours_unfolded(cfg, device: torch.device) -> nn.Module:
    """Our model as ``frcnn-train`` builds it, but with frozen BatchNorm layers not yet folded into the convolutions
    (so they can be calibrated and copied into torchvision's model first: see ``build_models``)."""
    import frcnn

    return frcnn.build_model(cfg, fold_frozen_bn=False).to(device)


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


def build_torchvision(
    cfg, ours: nn.Module, image_size: Tuple[int, int], device: torch.device, tv_with: Sequence[str] = ()
) -> nn.Module:
    """torchvision's FasterRCNN with our trunk, box head, initial head weights and settings (see module doc).

    ``ours`` must not have its frozen BatchNorm folded yet: torchvision's copy keeps separate layers, as
    torchvision's own ResNet backbones do, unless ``tv_with`` names ``folded_bn``; ``channels_last`` in
    ``tv_with`` runs it in that memory format.
    """
    from frcnn.modeling.backbones import fold_frozen_batchnorm

    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.misc import Conv2dNormActivation

    m = cfg.model
    stride = ours.rpn.anchor_generator.stride
    our_head = ours.rpn.head
    in_channels, conv_channels = our_head.conv.in_channels, our_head.conv.out_channels
    num_anchors = ours.rpn.anchor_generator.num_anchors_per_cell
    num_classes = ours.roi_heads.num_classes

    rpn_head = RPNHead(in_channels, num_anchors)
    rpn_head.conv = nn.Sequential(Conv2dNormActivation(in_channels, conv_channels, kernel_size=3, norm_layer=None))
    rpn_head.cls_logits = nn.Conv2d(conv_channels, num_anchors, kernel_size=1)
    rpn_head.bbox_pred = nn.Conv2d(conv_channels, num_anchors * 4, kernel_size=1)
    _copy_conv(our_head.conv, rpn_head.conv[0][0])
    _copy_conv(our_head.objectness, rpn_head.cls_logits)
    _copy_conv(our_head.deltas, rpn_head.bbox_pred)

    representation_size = ours.roi_heads.predictor.cls_score.in_features
    predictor = FastRCNNPredictor(representation_size, num_classes + 1)
    _copy_predictor(ours.roi_heads.predictor, predictor, num_classes)

    model = FasterRCNN(
        TorchvisionTrunk(copy.deepcopy(ours.trunk), in_channels, "channels_last" in tv_with),
        num_classes=None,
        min_size=tuple(m.input.min_size),
        max_size=m.input.max_size,
        image_mean=list(m.input.pixel_mean),
        image_std=list(m.input.pixel_std),
        size_divisible=m.input.size_divisible,
        rpn_anchor_generator=AnchorGenerator(
            sizes=(tuple(stride * s for s in m.anchor.scales),), aspect_ratios=(tuple(m.anchor.ratios),)
        ),
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=m.rpn.pre_nms_top_n.train,
        rpn_pre_nms_top_n_test=m.rpn.pre_nms_top_n.test,
        rpn_post_nms_top_n_train=m.rpn.post_nms_top_n.train,
        rpn_post_nms_top_n_test=m.rpn.post_nms_top_n.test,
        rpn_nms_thresh=m.rpn.nms_thresh,
        rpn_fg_iou_thresh=m.rpn.fg_iou_thresh,
        rpn_bg_iou_thresh=m.rpn.bg_iou_thresh,
        rpn_batch_size_per_image=m.rpn.batch_size_per_image,
        rpn_positive_fraction=m.rpn.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0"], m.roi.pool_size, sampling_ratio=m.roi.sampling_ratio),
        box_head=copy.deepcopy(ours.roi_heads.box_head),
        box_predictor=predictor,
        box_score_thresh=m.roi.score_thresh,
        box_nms_thresh=m.roi.nms_thresh,
        box_detections_per_img=m.roi.detections_per_img,
        box_fg_iou_thresh=m.roi.fg_iou_thresh,
        box_bg_iou_thresh=m.roi.bg_iou_thresh_hi,
        box_batch_size_per_image=m.roi.batch_size_per_image,
        box_positive_fraction=m.roi.positive_fraction,
        bbox_reg_weights=tuple(1.0 / s for s in m.roi.box_target_stds),
    )
    # Our RPN min_size is in original-image pixels, torchvision's in network-input pixels (and 1e-3 by default).
    resized_height, _ = ours.preprocessor.resized_size(*image_size, ours.preprocessor.min_size[-1])
    model.rpn.min_size = m.rpn.min_size * resized_height / image_size[0]
    if "threaded_pooling" in tv_with:
        model.roi_heads.box_roi_pool = ThreadedRoIAlign(m.roi.pool_size, 1.0 / stride, m.roi.sampling_ratio)
    if "folded_bn" in tv_with:
        fold_frozen_batchnorm(model.backbone)
        fold_frozen_batchnorm(model.roi_heads.box_head)
    # The trunk and head were copied from ours, so their weights are in our memory format; PyTorch's CPU
    # convolution follows the weight's format as well as the input's. Put them back as torchvision has them.
    layout = torch.channels_last if "channels_last" in tv_with else torch.contiguous_format
    return model.to(device=device, memory_format=layout)


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


def build_models(cfg, images: List[Tensor], device: torch.device, args) -> Tuple[nn.Module, nn.Module]:
    """Ours as frcnn-train builds it and torchvision's with the same weights (frozen BatchNorm calibrated first)."""
    from frcnn.modeling.backbones import fold_frozen_batchnorm

    ours = build_ours_unfolded(cfg, device)
    if args.calibrate:
        calibrate_frozen_batchnorm(ours, images)
    tv = build_torchvision(cfg, ours, args.size, device, args.tv_with)
    fold_frozen_batchnorm(ours.trunk)  # what frcnn.build_model does by default
    fold_frozen_batchnorm(ours.roi_heads.box_head)
    return ours, tv


def _copy_conv(source: nn.Conv2d, target: nn.Conv2d) -> None:
    with torch.no_grad():
        target.weight.copy_(source.weight)
        target.bias.copy_(source.bias)


def _copy_predictor(source: nn.Module, target: nn.Module, num_classes: int) -> None:
    with torch.no_grad():
        target.cls_score.weight.copy_(source.cls_score.weight)
        target.cls_score.bias.copy_(source.cls_score.bias)
        weight = source.bbox_pred.weight.view(-1, 4, source.bbox_pred.in_features)
        bias = source.bbox_pred.bias.view(-1, 4)
        weight = weight.expand(num_classes, -1, -1).reshape(-1, weight.shape[-1])  # class-agnostic: tile
        bias = bias.expand(num_classes, -1).reshape(-1)
        target.bbox_pred.weight.zero_()
        target.bbox_pred.bias.zero_()
        target.bbox_pred.weight[4:].copy_(weight)  # rows 0..3: the background class, ours has none
        target.bbox_pred.bias[4:].copy_(bias)


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


# -------------------------------------------------------------------------------------------------- inputs
def make_inputs(
    batch_size: int, size: Tuple[int, int], num_classes: int, boxes_per_image: int, device: torch.device, seed: int = 0
) -> Tuple[List[Tensor], List[Dict[str, Tensor]]]:
    """Random images in [0, 1] and ``boxes_per_image`` random boxes (10..60 % of each side) per image."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, height, width, generator=generator).to(device))
        extent = torch.tensor([width, height], dtype=torch.float32)
        box_size = (0.1 + 0.5 * torch.rand(boxes_per_image, 2, generator=generator)) * extent
        corner = torch.rand(boxes_per_image, 2, generator=generator) * (extent - box_size)
        boxes = torch.cat([corner, corner + box_size], dim=1)
        labels = torch.randint(1, num_classes + 1, (boxes_per_image,), generator=generator)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


# ------------------------------------------------------------------------------------------------- runners
class Runner:
    """A model with its optimizer: whole steps, and the same steps stage by stage (subclasses)."""

    name = "?"

    def __init__(self, model: nn.Module, device: torch.device, amp: str, optimizer: torch.optim.Optimizer):
        self.model = model
        self.device = device
        self.amp = amp
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self._last_loss: Optional[Tensor] = None

    def train_step(self, images, targets) -> None:
        self.model.train()
        with autocast(self.device, self.amp):
            losses = self.model(images, targets)
        self._backward_and_step(sum(losses.values()), timer=None)

    def infer(self, images) -> None:
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            self.model(images)

    def _backward_and_step(self, loss: Tensor, timer: Optional[StageTimer]) -> None:
        timer = timer or (lambda name: contextlib.nullcontext())
        with timer("backward"):
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        with timer("optimizer step"):
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self._last_loss = loss.detach()

    @property
    def last_loss_finite(self) -> bool:
        """Whether the last training step's loss was finite (read outside the timed regions: it syncs)."""
        return self._last_loss is None or bool(torch.isfinite(self._last_loss))

    def train_stages(self, images, targets, timer: StageTimer) -> None:
        raise NotImplementedError

    def infer_stages(self, images, timer: StageTimer) -> None:
        raise NotImplementedError


def our_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """frcnn-train's optimizer (engine.optim.build_optimizer: the fused SGD kernel where it applies)."""
    from types import SimpleNamespace

    from frcnn.engine.optim import build_optimizer

    settings = SimpleNamespace(lr=LEARNING_RATE, momentum=0.9, weight_decay=5e-4, weight_decay_norm=5e-4,
                               weight_decay_bias=5e-4, bias_lr_factor=1.0)  # one decay for all, as torchvision's
    return build_optimizer(model, settings)


def torchvision_optimizer(model: nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of torchvision's detection reference (references/detection/train.py): plain SGD."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9, weight_decay=5e-4, fused=fused or None)


class OursRunner(Runner):
    name = "ours"

    def train_stages(self, images, targets, timer: StageTimer) -> None:
        model, rpn, roi = self.model, self.model.rpn, self.model.roi_heads
        model.train()
        with autocast(self.device, self.amp):
            with timer("preprocess"):
                batch, gt = model.preprocessor(images, targets)
            with timer("trunk"):
                features = model.trunk(batch.tensor)
            with timer("RPN head + anchors"):
                pred_objectness, pred_deltas = rpn.head(features)
                anchors = rpn.anchor_generator(features.shape[-2], features.shape[-1])
            with timer("anchor targets + RPN losses"):
                rpn_losses = rpn.losses(pred_objectness, pred_deltas, anchors, batch, gt)
            with timer("proposals"):
                proposals, valid = rpn.propose(pred_objectness.detach(), pred_deltas.detach(), anchors, batch, "train")
            with timer("ROI sampling"):
                sampled = roi.sample(proposals, valid, gt)
            with timer("ROI pooling"):
                pooled = roi.pool(features, sampled[0].detach())
            timer.count("box-head ROIs", pooled.shape[0])
            timer.count("real ROIs", sampled[1].sum())
            with timer("box head + predictor"):
                pred_logits, pred_box_deltas = roi.predictor(roi.box_head(pooled))
                predictions = (pred_logits.float(), pred_box_deltas.float())  # as ROIHeads.predict
            with timer("ROI losses"), answered(roi, "sample", sampled), answered(roi, "predict", predictions):
                roi_losses = roi.losses(features, proposals, valid, gt)
        self._backward_and_step(sum({**rpn_losses, **roi_losses}.values()), timer)

    def infer_stages(self, images, timer: StageTimer) -> None:
        model, rpn, roi = self.model, self.model.rpn, self.model.roi_heads
        model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            with timer("preprocess"):
                batch, _ = model.preprocessor(images, None)
            with timer("trunk"):
                features = model.trunk(batch.tensor)
            with timer("RPN head + anchors"):
                pred_objectness, pred_deltas = rpn.head(features)
                anchors = rpn.anchor_generator(features.shape[-2], features.shape[-1])
            with timer("proposals"):
                proposals, valid = rpn.propose(pred_objectness, pred_deltas, anchors, batch, "test")
            with timer("ROI pooling"):
                from frcnn.modeling.roi_heads import drop_empty_columns

                proposals, valid = drop_empty_columns(proposals, valid)  # as ROIHeads.detect does
                pooled = roi.pool(features, proposals)
            timer.count("box-head ROIs", pooled.shape[0])
            timer.count("real ROIs", valid.sum())
            with timer("box head + predictor"):
                pred_logits, pred_box_deltas = roi.predictor(roi.box_head(pooled))
                predictions = (pred_logits.float(), pred_box_deltas.float())
            with timer("detections (score filter, NMS)"), answered(roi, "predict", predictions):
                detections = roi.detect(features, proposals, valid, batch)
            with timer("to original coordinates"):
                model.to_original_coordinates(detections, batch)


class TorchvisionRunner(Runner):
    """Replays ``GeneralizedRCNN.forward``, ``RegionProposalNetwork.forward`` and ``RoIHeads.forward``."""

    name = "torchvision"

    def train_stages(self, images, targets, timer: StageTimer) -> None:
        from torchvision.models.detection.roi_heads import fastrcnn_loss
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        model, rpn, roi = self.model, self.model.rpn, self.model.roi_heads
        model.train()
        with autocast(self.device, self.amp):
            with timer("preprocess"):
                image_list, targets = model.transform(images, targets)
            with timer("trunk"):
                features = OrderedDict([("0", model.backbone(image_list.tensors))])
            with timer("RPN head + anchors"):
                feature_list = list(features.values())
                objectness, pred_deltas = rpn.head(feature_list)
                anchors = rpn.anchor_generator(image_list, feature_list)
                num_anchors_per_level = [o[0].numel() for o in objectness]
                objectness, pred_deltas = concat_box_prediction_layers(objectness, pred_deltas)
            with timer("proposals"):
                proposals = rpn.box_coder.decode(pred_deltas.detach(), anchors).view(len(anchors), -1, 4)
                boxes, _ = rpn.filter_proposals(proposals, objectness, image_list.image_sizes, num_anchors_per_level)
            with timer("anchor targets + RPN losses"):
                labels, matched_gt_boxes = rpn.assign_targets_to_anchors(anchors, targets)
                regression_targets = rpn.box_coder.encode(matched_gt_boxes, anchors)
                rpn_losses = rpn.compute_loss(objectness, pred_deltas, labels, regression_targets)
            with timer("ROI sampling"):
                rois, _, roi_labels, roi_targets = roi.select_training_samples(boxes, targets)
            with timer("ROI pooling"):
                pooled = roi.box_roi_pool(features, rois, image_list.image_sizes)
            timer.count("box-head ROIs", pooled.shape[0])
            timer.count("real ROIs", pooled.shape[0])
            with timer("box head + predictor"):
                class_logits, box_regression = roi.box_predictor(roi.box_head(pooled))
            with timer("ROI losses"):
                roi_losses = fastrcnn_loss(class_logits, box_regression, roi_labels, roi_targets)
        self._backward_and_step(sum(rpn_losses) + sum(roi_losses), timer)

    def infer_stages(self, images, timer: StageTimer) -> None:
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        model, rpn, roi = self.model, self.model.rpn, self.model.roi_heads
        model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            with timer("preprocess"):
                original_sizes = [tuple(image.shape[-2:]) for image in images]
                image_list, _ = model.transform(images, None)
            with timer("trunk"):
                features = OrderedDict([("0", model.backbone(image_list.tensors))])
            with timer("RPN head + anchors"):
                feature_list = list(features.values())
                objectness, pred_deltas = rpn.head(feature_list)
                anchors = rpn.anchor_generator(image_list, feature_list)
                num_anchors_per_level = [o[0].numel() for o in objectness]
                objectness, pred_deltas = concat_box_prediction_layers(objectness, pred_deltas)
            with timer("proposals"):
                proposals = rpn.box_coder.decode(pred_deltas, anchors).view(len(anchors), -1, 4)
                boxes, _ = rpn.filter_proposals(proposals, objectness, image_list.image_sizes, num_anchors_per_level)
            with timer("ROI pooling"):
                pooled = roi.box_roi_pool(features, boxes, image_list.image_sizes)
            timer.count("box-head ROIs", pooled.shape[0])
            timer.count("real ROIs", pooled.shape[0])
            with timer("box head + predictor"):
                class_logits, box_regression = roi.box_predictor(roi.box_head(pooled))
            with timer("detections (score filter, NMS)"):
                det_boxes, det_scores, det_labels = roi.postprocess_detections(
                    class_logits, box_regression, boxes, image_list.image_sizes
                )
                detections = [
                    {"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(det_boxes, det_scores, det_labels)
                ]
            with timer("to original coordinates"):
                model.transform.postprocess(detections, image_list.image_sizes, original_sizes)


# ------------------------------------------------------------------------------------------------ measuring
@dataclass
class Samples:
    ms: List[float] = field(default_factory=list)
    peak_mb: Optional[float] = None
    finite: bool = True


def timed(device: torch.device, fn: Callable[[], None]) -> Tuple[float, Optional[float]]:
    """Wall time of ``fn()`` in ms, and the peak CUDA memory during it in MiB (None on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    elapsed = (time.perf_counter() - start) * 1000.0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return elapsed, peak


def alternate(runners: Sequence[Runner], make_call, reps: int, warmup: int) -> List[Samples]:
    """Run ``make_call(runner)()`` for each runner, ``warmup`` untimed then ``reps`` timed rounds.

    The order of the runners flips every round so that neither always runs on a warm (or a cold) machine.
    """
    samples = [Samples() for _ in runners]
    for round_index in range(warmup + reps):
        order = list(range(len(runners)))
        if round_index % 2:
            order.reverse()
        for i in order:
            elapsed, peak = timed(runners[i].device, make_call(runners[i]))
            if round_index < warmup:
                continue
            samples[i].ms.append(elapsed)
            samples[i].finite &= runners[i].last_loss_finite
            if peak is not None:
                samples[i].peak_mb = max(samples[i].peak_mb or 0.0, peak)
    return samples


def alternate_stages(
    runners: Sequence[Runner], mode: str, images, targets, reps: int, warmup: int
) -> Tuple[List[Dict[str, float]], List[Dict[str, int]]]:
    """Median time per stage for each runner (after ``warmup`` untimed rounds), and the last round's counts."""
    per_runner: List[Dict[str, List[float]]] = [{} for _ in runners]
    counts: List[Dict[str, int]] = [{} for _ in runners]
    for round_index in range(warmup + reps):
        order = list(range(len(runners)))
        if round_index % 2:
            order.reverse()
        for i in order:
            timer = StageTimer(runners[i].device)
            if mode == "train":
                runners[i].train_stages(images, targets, timer)
            else:
                runners[i].infer_stages(images, timer)
            if round_index < warmup:
                continue
            for stage, ms in timer.ms.items():
                per_runner[i].setdefault(stage, []).append(ms)
            counts[i] = {name: int(value) for name, value in timer.counts.items()}
    medians = [{stage: statistics.median(values) for stage, values in stages.items()} for stages in per_runner]
    return medians, counts


def count_syncs(device: torch.device, fn: Callable[[], None]) -> Optional[int]:
    """Host synchronisations of one call of ``fn`` reported by CUDA's sync debug mode (None off CUDA)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def benchmark_case(case: Case, args) -> Tuple[List[Timing], List[StageTiming], List["StageCounts"]]:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    cfg = compose_config(case.backbone, args.size, args.classes, args.override)
    images, targets = make_inputs(case.batch_size, args.size, len(args.classes), args.boxes, device, args.seed)
    ours, tv = build_models(cfg, images, device, args)
    runners = [
        OursRunner(ours, device, case.amp, our_optimizer(ours)),
        TorchvisionRunner(tv, device, case.amp, torchvision_optimizer(tv, fused="fused_sgd" in args.tv_with)),
    ]
    reps, warmup = args.reps, args.warmup

    train = alternate(runners, lambda r: lambda: r.train_step(images, targets), reps, warmup)
    infer = alternate(runners, lambda r: lambda: r.infer(images), reps, warmup)
    syncs = {"train step": [None, None], "inference": [None, None]}
    if args.sync_debug:
        syncs["train step"] = [count_syncs(device, lambda r=r: r.train_step(images, targets)) for r in runners]
        syncs["inference"] = [count_syncs(device, lambda r=r: r.infer(images)) for r in runners]

    timings = [
        Timing(
            case.backbone, case.batch_size, case.amp, what,
            ours_ms=statistics.median(s[0].ms), tv_ms=statistics.median(s[1].ms),
            ours_samples_ms=s[0].ms, tv_samples_ms=s[1].ms,
            ours_peak_mb=s[0].peak_mb, tv_peak_mb=s[1].peak_mb,
            ours_syncs=syncs[what][0], tv_syncs=syncs[what][1],
            ours_finite=s[0].finite, tv_finite=s[1].finite,
        )  # fmt: skip
        for what, s in (("train step", train), ("inference", infer))
    ]
    stages, counts = [], []
    for mode, stage_list in (("train", TRAIN_STAGES), ("inference", INFER_STAGES)):
        (ours_ms, tv_ms), (ours_counts, tv_counts) = alternate_stages(runners, mode, images, targets, reps, warmup)
        stages += [
            StageTiming(case.backbone, case.batch_size, case.amp, mode, stage, group, ours_ms[stage], tv_ms[stage])
            for stage, group in stage_list
        ]
        counts.append(StageCounts(case.backbone, case.batch_size, case.amp, mode, ours_counts, tv_counts))
    return timings, stages, counts


# ------------------------------------------------------------------------------------------------- reporting
def _fmt(value, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i > 0 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731,E501
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def timing_table(timings: Sequence[Timing]) -> str:
    header = ["backbone", "batch", "amp", "what", "ours ms", "tv ms", "ours/tv", "best/best", "img/s ours", "img/s tv",
              "peak MiB ours", "peak MiB tv", "syncs ours", "syncs tv"]  # fmt: skip
    rows = [
        [t.backbone, t.batch_size, t.amp, t.what + ("" if t.ours_finite and t.tv_finite else " (non-finite loss)"),
         _fmt(t.ours_ms), _fmt(t.tv_ms), _fmt(t.ratio, ".2f"), _fmt(t.ratio_of_best, ".2f"),
         _fmt(t.ours_images_per_s, ".2f"),
         _fmt(t.tv_images_per_s, ".2f"), _fmt(t.ours_peak_mb, ".0f"), _fmt(t.tv_peak_mb, ".0f"),
         _fmt(t.ours_syncs, "d"), _fmt(t.tv_syncs, "d")]  # fmt: skip
        for t in timings
    ]
    return format_table(header, rows)


def breakdown_tables(stages: Sequence[StageTiming], counts: Sequence[StageCounts]) -> str:
    out = []
    keys = sorted({(s.backbone, s.batch_size, s.amp, s.mode) for s in stages}, key=lambda k: [str(x) for x in k])
    for backbone, batch_size, amp, mode in keys:
        rows = [s for s in stages if (s.backbone, s.batch_size, s.amp, s.mode) == (backbone, batch_size, amp, mode)]
        ours_total, tv_total = sum(s.ours_ms for s in rows), sum(s.tv_ms for s in rows)
        table = [
            [s.stage, s.group, _fmt(s.ours_ms), _fmt(100 * s.ours_ms / ours_total), _fmt(s.tv_ms),
             _fmt(100 * s.tv_ms / tv_total), _fmt(s.ours_ms / s.tv_ms if s.tv_ms > 0 else math.nan, ".2f")]  # fmt: skip
            for s in rows
        ]
        groups: Dict[str, List[float]] = {}
        for s in rows:
            groups.setdefault(s.group, [0.0, 0.0])
            groups[s.group][0] += s.ours_ms
            groups[s.group][1] += s.tv_ms
        table.append(["-- by group --", "", "", "", "", "", ""])
        table += [
            [f"[{g}]", "", _fmt(o), _fmt(100 * o / ours_total), _fmt(t), _fmt(100 * t / tv_total), _fmt(o / t, ".2f")]
            for g, (o, t) in groups.items()
        ]
        table.append(["total (sum of stages)", "", _fmt(ours_total), "100.0", _fmt(tv_total), "100.0",
                      _fmt(ours_total / tv_total, ".2f")])  # fmt: skip
        title = f"breakdown: {backbone}, batch {batch_size}, amp {amp}, {mode}"
        for c in counts:
            if (c.backbone, c.batch_size, c.amp, c.mode) == (backbone, batch_size, amp, mode):
                title += "\n" + "; ".join(
                    f"{name}: ours {c.ours.get(name, 'n/a')}, tv {c.tv.get(name, 'n/a')}" for name in c.ours
                )
        out.append(title + "\n" + format_table(["stage", "group", "ours ms", "ours %", "tv ms", "tv %", "ours/tv"], table))
    return "\n\n".join(out)


def environment(args) -> dict:
    device = torch.device(args.device)
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }


# ------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backbone", action="append", help="repeatable or comma list (default vgg16,resnet50)")
    parser.add_argument("--batch-size", action="append", help="comma list (default 1)")
    parser.add_argument("--size", type=parse_size, help="HxW of the images and network input (default 600x1000)")
    parser.add_argument("--amp", action="append", help="off | fp16 | bf16, comma list (default off)")
    parser.add_argument("--reps", type=int, help="timed repetitions per model (default 5; --quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed repetitions first (default 2; --quick 1)")
    parser.add_argument("--quick", action="store_true", help=f"preset: {QUICK}")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument(
        "--tv-with", action="append",
        help=f"give torchvision's model one of our speed-ups too, to see what each is worth: comma list of "
             f"{', '.join(TV_WITH)} or all (default: none, torchvision as it ships). Ours follows its config: "
             f"--override model.channels_last=false turns its memory format off",
    )  # fmt: skip
    parser.add_argument("--sync-debug", action="store_true", help="count host syncs of one step (CUDA only)")
    parser.add_argument("--classes", type=int, default=len(VOC_CLASSES), help="number of object classes (20)")
    parser.add_argument("--boxes", type=int, default=4, help="ground-truth boxes per image")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. model.roi.pooler=pool")
    parser.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false",
        help="keep the identity statistics of random FrozenBatchNorm layers (see calibrate_frozen_batchnorm)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)

    preset = QUICK if args.quick else FULL
    args.size = args.size or parse_size(preset["size"])
    args.reps = preset["reps"] if args.reps is None else args.reps
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    args.backbone = comma_list(args.backbone or ["vgg16,resnet50"])
    args.batch_size = [int(b) for b in comma_list(args.batch_size or ["1"])]
    args.amp = comma_list(args.amp or ["off"])
    args.tv_with = comma_list(args.tv_with or [])
    if "all" in args.tv_with:
        args.tv_with = list(TV_WITH)
    if bad := [t for t in args.tv_with if t not in TV_WITH]:
        parser.error(f"--tv-with: unknown {bad}; choose from {', '.join(TV_WITH)} or all")
    if bad := [a for a in args.amp if a not in ("off", "fp16", "bf16")]:
        parser.error(f"--amp: unknown {bad}; choose off, fp16 or bf16")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    names = list(VOC_CLASSES) + [f"class{i}" for i in range(len(VOC_CLASSES) + 1, args.classes + 1)]
    args.classes = names[: args.classes]
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        return run(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests): leave the process as it was


def run(args: argparse.Namespace) -> dict:
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"frcnn benchmark: device {args.device}, size {args.size[0]}x{args.size[1]}, reps {args.reps} "
          f"(warm-up {args.warmup}), threads {torch.get_num_threads()}, "
          f"torchvision with our {', '.join(args.tv_with) or 'nothing'}",
          flush=True)  # fmt: skip

    timings: List[Timing] = []
    stages: List[StageTiming] = []
    counts: List[StageCounts] = []
    for backbone in args.backbone:
        for batch_size in args.batch_size:
            for amp in args.amp:
                case = Case(backbone, batch_size, amp)
                print(f"... {backbone}, batch {batch_size}, amp {amp}", flush=True)
                case_timings, case_stages, case_counts = benchmark_case(case, args)
                timings += case_timings
                stages += case_stages
                counts += case_counts

    print("\n" + timing_table(timings))
    print("\n(ms: medians; ours/tv: ratio of the medians, best/best: of the fastest repetitions; lower is better for us)\n")
    print(breakdown_tables(stages, counts), flush=True)
    result = {
        "settings": {
            "device": args.device, "size": list(args.size), "reps": args.reps, "warmup": args.warmup,
            "tv_with": args.tv_with, "num_classes": len(args.classes), "boxes_per_image": args.boxes,
            "overrides": args.override, "seed": args.seed, "calibrate_frozen_bn": args.calibrate,
        },  # fmt: skip
        "environment": environment(args),
        "timings": [t.to_dict() for t in timings],
        "breakdown": [asdict(s) for s in stages],
        "breakdown_counts": [asdict(c) for c in counts],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
