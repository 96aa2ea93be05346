"""The exported detector: ``FasterRCNN.core`` in eval mode behind a plain tensor interface, and its inputs.

Shapes: N images, H x W the padded canvas (multiples of ``model.input.size_divisible``, 32 by default), D the fixed
number of detection slots per image (``model.roi.detections_per_img``, fewer only when the model cannot produce as
many: classes x test proposals).

Inputs (:data:`INPUT_NAMES`):
    images          [N, 3, H, W] float32: RGB in [0, 1], each image already resized as the model resizes it (shortest
                    side ``model.input.min_size``, longest at most ``max_size``: :func:`prepare_inputs`) and placed at
                    the top left of the canvas; what lies outside it is ignored
    image_sizes     [N, 2] int64: (height, width) of each resized image inside the canvas
    original_sizes  [N, 2] int64: (height, width) of each image as given; the boxes come back in these pixels
Outputs (:data:`OUTPUT_NAMES`), valid detections first, by decreasing score; empty slots hold zeros:
    boxes [N, D, 4] float32 (x1, y1, x2, y2), scores [N, D] float32, labels [N, D] int64 (1..K),
    valid [N, D] bool, count [N] int64 (``valid[n] == arange(D) < count[n]``)

The resize stays outside the graph: each image of a batch has its own scale and the canvas is the batch's largest
image, so resizing inside would be a per-image loop with data-dependent shapes -- the one part of inference that is
not a static batched computation. Normalisation stays inside (the model's pixel mean and std travel with it).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INPUT_NAMES = ("images", "image_sizes", "original_sizes")
OUTPUT_NAMES = ("boxes", "scores", "labels", "valid", "count")
MAX_BATCH = 64  # the largest batch the exported graph is declared for (any size from 1)
MAX_SIDE = 4096  # the largest canvas side (pixels) it is declared for


class ExportableDetector(nn.Module):
    """A trained detector as one graph from :data:`INPUT_NAMES` to :data:`OUTPUT_NAMES` (see the module doc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, images: Tensor, image_sizes: Tensor, original_sizes: Tensor) -> Tuple[Tensor, ...]:
        preprocessor = self.model.preprocessor
        normalised = (images - preprocessor.pixel_mean) / preprocessor.pixel_std
        # The eager preprocessor pads after normalising, with zeros: the canvas outside each image is zero here too.
        rows = torch.arange(images.shape[2], device=images.device)[None, :] < image_sizes[:, 0:1]
        cols = torch.arange(images.shape[3], device=images.device)[None, :] < image_sizes[:, 1:2]
        inside = (rows[:, :, None] & cols[:, None, :])[:, None]
        normalised = torch.where(inside, normalised, torch.zeros_like(normalised))
        scales = image_sizes.to(torch.float32) / original_sizes.to(torch.float32)  # as the preprocessor's
        detections = self.model.core(normalised, image_sizes, scales, original_sizes)
        valid = detections.valid
        boxes = torch.where(valid[..., None], detections.boxes, torch.zeros_like(detections.boxes))
        scores = torch.where(valid, detections.scores, torch.zeros_like(detections.scores))
        labels = torch.where(valid, detections.labels, torch.zeros_like(detections.labels))
        return boxes, scores, labels, valid, valid.sum(dim=1)


def prepare_inputs(images: List[Tensor], preprocessor) -> Tuple[Tensor, Tensor, Tensor]:
    """The graph's inputs for a list of CHW images (uint8, or float in [0, 1]): each resized exactly as
    ``preprocessor`` (the model's own, in eval mode) resizes it, on a zero canvas rounded up to its
    ``size_divisible``."""
    shortest = preprocessor.min_size[-1]  # the test size (training draws among min_size)
    resized, image_sizes, original_sizes = [], [], []
    for image in images:
        height, width = int(image.shape[-2]), int(image.shape[-1])
        new_height, new_width = preprocessor.resized_size(height, width, shortest)
        unit = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        resized.append(F.interpolate(unit[None], size=(new_height, new_width), mode="bilinear",
                                     align_corners=False)[0])
        image_sizes.append((new_height, new_width))
        original_sizes.append((height, width))
    divisor = preprocessor.size_divisible
    canvas_h = -(-max(h for h, _ in image_sizes) // divisor) * divisor
    canvas_w = -(-max(w for _, w in image_sizes) // divisor) * divisor
    batch = torch.zeros(len(images), 3, canvas_h, canvas_w)
    for slot, image in zip(batch, resized):
        slot[:, : image.shape[-2], : image.shape[-1]] = image
    return (batch, torch.tensor(image_sizes, dtype=torch.int64), torch.tensor(original_sizes, dtype=torch.int64))


def split_outputs(boxes, scores, labels, count) -> List[dict]:
    """torchvision's result format from the graph's outputs (tensors or NumPy arrays): one dict per image."""
    boxes, scores, labels = (torch.as_tensor(t) for t in (boxes, scores, labels))
    return [{"boxes": boxes[i, :n].float(), "scores": scores[i, :n].float(), "labels": labels[i, :n].long()}
            for i, n in enumerate(torch.as_tensor(count).tolist())]


def example_inputs(preprocessor) -> Tuple[Tensor, Tensor, Tensor]:
    """Two images on a landscape canvas of the model's test size: what the graph is traced with (sizes from the
    config, so the shape decisions taken while tracing are those of real inputs). At least two blocks of
    ``size_divisible`` per side: a tracer takes a size of one block for a constant."""
    divisor = preprocessor.size_divisible
    shortest = min(preprocessor.min_size[-1], preprocessor.max_size)
    height, width = (max(2, -(-side // divisor)) * divisor for side in (shortest, preprocessor.max_size))
    sizes = torch.tensor([[height, width], [height, max(width - divisor, divisor)]], dtype=torch.int64)
    return torch.zeros(2, 3, height, width), sizes, sizes.clone()


def dynamic_shapes(preprocessor) -> dict:
    """Any batch size and any canvas (multiples of ``size_divisible``), for torch.export and the ONNX graph."""
    from torch.export import Dim

    divisor = preprocessor.size_divisible
    batch = Dim("batch", min=1, max=MAX_BATCH)
    height = Dim("height_blocks", min=1, max=MAX_SIDE // divisor)
    width = Dim("width_blocks", min=1, max=MAX_SIDE // divisor)
    return {"images": {0: batch, 2: divisor * height, 3: divisor * width}, "image_sizes": {0: batch},
            "original_sizes": {0: batch}}
