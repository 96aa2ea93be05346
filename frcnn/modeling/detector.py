"""The Faster R-CNN detector, with torchvision's detection calling contract.

Training: ``model(images, targets) -> {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}``.
Inference: ``model(images) -> [{"boxes" [D, 4], "labels" [D], "scores" [D]}, ...]``, boxes in each image's own
pixel coordinates. ``images`` is a list of CHW tensors (float in [0, 1], or uint8) of any sizes; ``targets`` a list
of dicts with ``boxes`` (x1, y1, x2, y2 pixels of that image) and ``labels`` (1..K), checked as
:mod:`frcnn.modeling.targets` describes (a ``ValueError`` names the bad value).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.modeling.preprocess import Preprocessor, check_images
from frcnn.modeling.roi_heads import ROIHeads
from frcnn.modeling.rpn import RegionProposalNetwork
from frcnn.modeling.structures import Detections, GroundTruth, ImageBatch
from frcnn.modeling.targets import check_targets


class FasterRCNN(nn.Module):
    def __init__(self, *, preprocessor: Preprocessor, trunk: nn.Module, rpn: RegionProposalNetwork,
                 roi_heads: ROIHeads):
        super().__init__()
        self.preprocessor = preprocessor
        self.trunk = trunk
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.compiled_core = None  # set by compile_core

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets: model(images, targets)")
            # Before the preprocessor moves the targets to the device: CPU targets are checked without a sync.
            check_targets(targets, check_images(images), num_classes=self.roi_heads.num_classes)
        # Named profiler scopes (stages of scripts/benchmark.py's breakdown); next to free outside a profiler.
        with record_function("frcnn.preprocess"):
            batch, gt = self.preprocessor(images, targets if self.training else None)
        core = self.compiled_core if self.training and self.compiled_core is not None else self.core
        gt_tensors = (gt.boxes, gt.labels, gt.valid, gt.keys) if gt is not None else ()
        outputs = core(batch.tensor, batch.image_sizes, batch.scales, batch.original_sizes, *gt_tensors)
        if self.training:
            return outputs
        with record_function("frcnn.postprocess"):
            return outputs.per_image()  # the one host read of inference: each image's number of detections

    def core(self, images: Tensor, image_sizes: Tensor, scales: Tensor, original_sizes: Tensor,
             gt_boxes: Optional[Tensor] = None, gt_labels: Optional[Tensor] = None, gt_valid: Optional[Tensor] = None,
             gt_keys: Optional[Tensor] = None) -> Union[Dict[str, Tensor], Detections]:
        """From the padded batch to the losses (training) or the padded detections in original-image pixels.

        Tensors in, tensors out, with shapes fixed by the inputs' shapes: no host read, no data-dependent shape, so it
        compiles into one graph (``compile_core``) and never waits for the device.
        """
        batch = ImageBatch(images, image_sizes, scales, original_sizes)
        gt = GroundTruth(gt_boxes, gt_labels, gt_valid, gt_keys) if gt_boxes is not None else None
        with record_function("frcnn.trunk"):
            features = self.trunk(images)
        with record_function("frcnn.rpn"):
            proposals, proposal_valid, rpn_losses = self.rpn(features, batch, gt)
        with record_function("frcnn.roi"):
            detections, roi_losses = self.roi_heads(features, proposals, proposal_valid, batch, gt)
        if self.training:
            return {**rpn_losses, **roi_losses}
        with record_function("frcnn.postprocess"):
            return to_original_coordinates(detections, batch)

    def compile_core(self, **options) -> None:
        """Compile the training step's model part (``core`` in training mode) with ``torch.compile(**options)``.

        One graph per input shape: the preprocessor pads each batch to its size bucket (``Preprocessor.static``)
        and the ground-truth slots are marked dynamic, so a run compiles at most one graph per bucket."""
        self.preprocessor.static = True
        self.compiled_core = torch.compile(self.core, **options)


def to_original_coordinates(detections: Detections, batch: ImageBatch) -> Detections:
    """Boxes from network-input pixels back to each image's own pixels, clipped to it (rounding of the resized size
    can leave a box a hair beyond the original border)."""
    scale_xyxy = batch.scales[:, [1, 0, 1, 0]].unsqueeze(1)  # (sx, sy, sx, sy)
    limits = batch.original_sizes[:, [1, 0, 1, 0]].unsqueeze(1).to(detections.boxes.dtype)
    boxes = torch.minimum((detections.boxes / scale_xyxy).clamp(min=0), limits)
    return Detections(boxes=boxes, scores=detections.scores, labels=detections.labels, valid=detections.valid)
