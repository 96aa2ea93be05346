"""The Faster R-CNN detector, with torchvision's detection calling contract.

Training: ``model(images, targets) -> {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}``.
Inference: ``model(images) -> [{"boxes" [D, 4], "labels" [D], "scores" [D]}, ...]``, boxes in each image's own
pixel coordinates. ``images`` is a list of CHW tensors (float in [0, 1], or uint8) of any sizes; ``targets`` a list
of dicts with ``boxes`` (x1, y1, x2, y2 pixels of that image) and ``labels`` (1..K), checked as
:mod:`frcnn.modeling.targets` describes (a ``ValueError`` names the bad value).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from frcnn.modeling.preprocess import Preprocessor, check_images
from frcnn.modeling.roi_heads import ROIHeads
from frcnn.modeling.rpn import RegionProposalNetwork
from frcnn.modeling.structures import ImageBatch
from frcnn.modeling.targets import check_targets


class FasterRCNN(nn.Module):
    def __init__(self, *, preprocessor: Preprocessor, trunk: nn.Module, rpn: RegionProposalNetwork,
                 roi_heads: ROIHeads):
        super().__init__()
        self.preprocessor = preprocessor
        self.trunk = trunk
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets: model(images, targets)")
            # Before the preprocessor moves the targets to the device: CPU targets are checked without a sync.
            check_targets(targets, check_images(images), num_classes=self.roi_heads.num_classes)
        # Named profiler scopes (stages of scripts/benchmark.py's breakdown); next to free outside a profiler.
        with record_function("frcnn.preprocess"):
            batch, gt = self.preprocessor(images, targets if self.training else None)
        with record_function("frcnn.trunk"):
            features = self.trunk(batch.tensor)
        with record_function("frcnn.rpn"):
            proposals, proposal_valid, rpn_losses = self.rpn(features, batch, gt)
        with record_function("frcnn.roi"):
            detections, roi_losses = self.roi_heads(features, proposals, proposal_valid, batch, gt)
        if self.training:
            return {**rpn_losses, **roi_losses}
        with record_function("frcnn.postprocess"):
            return self.to_original_coordinates(detections, batch)

    @staticmethod
    def to_original_coordinates(detections: List[Dict[str, Tensor]], batch: ImageBatch) -> List[Dict[str, Tensor]]:
        for i, detection in enumerate(detections):
            scale_y, scale_x = batch.scales[i].unbind()
            height, width = batch.original_sizes[i]
            boxes = detection["boxes"] / torch.stack((scale_x, scale_y, scale_x, scale_y))
            # Rounding of the resized size can leave a box a hair beyond the original border.
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            detection["boxes"] = boxes
        return detections
