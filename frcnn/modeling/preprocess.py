"""On-device input preparation: normalise, resize, pad, and bring targets into network-input pixels.

Shapes: N images of any sizes (3, H_i, W_i) -> one padded batch ``[N, 3, H_pad, W_pad]``; G ground-truth slots.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frcnn.modeling.structures import GroundTruth, ImageBatch

RESIZE_ROUNDINGS = ("round", "floor")
# Padding slots of the ground truth hold this box so that box coding against them stays finite.
_PAD_BOX = (0.0, 0.0, 1.0, 1.0)


def check_images(images) -> List[Tuple[int, int]]:
    """(H, W) of each image; ``ValueError`` naming the image unless ``images`` is a non-empty list of tensors of
    shape [3, H, W] with H, W >= 1 (shapes only: no data is read)."""
    if len(images) == 0:
        raise ValueError("the model needs at least one image")
    sizes = []
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise ValueError(f"images[{i}] must be a tensor of shape [3, H, W], got {type(image).__name__}")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}] has shape {list(image.shape)}: expected images of shape [3, H, W] "
                             "(RGB, channels first)")
        if image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"images[{i}] has shape {list(image.shape)}: an image needs at least one pixel "
                             "(H, W >= 1)")
        sizes.append((int(image.shape[1]), int(image.shape[2])))
    return sizes


class Preprocessor(nn.Module):
    def __init__(
        self,
        *,
        min_size: Sequence[int],
        max_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisible: int = 32,
        channels_last: bool = False,
        resize_rounding: str = "round",
    ):
        super().__init__()
        if not min_size:
            raise ValueError("model.input.min_size needs at least one size")
        self.min_size = tuple(int(s) for s in min_size)
        self.max_size = int(max_size)
        self.size_divisible = size_divisible
        self.channels_last = channels_last
        if resize_rounding not in RESIZE_ROUNDINGS:
            raise ValueError(f"model.input.resize_rounding must be one of {', '.join(RESIZE_ROUNDINGS)}, "
                             f"got {resize_rounding!r}")
        self.resize_rounding = resize_rounding
        # Training batches padded to their size bucket (not just to size_divisible), ground-truth slots marked
        # dynamic: what a compiled step needs to compile one graph per bucket (FasterRCNN.compile_core sets it).
        self.static = False
        for name, values in (("pixel_mean", pixel_mean), ("pixel_std", pixel_std)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def forward(
        self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
    ) -> Tuple[ImageBatch, Optional[GroundTruth]]:
        check_images(images)
        shortest = self._draw_min_size()
        device = self.pixel_mean.device
        resized, original_sizes, scales = [], [], []
        for image in images:
            image = image.to(device, non_blocking=True)
            height, width = image.shape[-2:]
            new_height, new_width = self.resized_size(height, width, shortest)
            resized.append(self._normalize_and_resize(image, new_height, new_width))
            original_sizes.append((height, width))
            scales.append((new_height / height, new_width / width))
        tensor = self._pad(resized, self._canvas(resized, shortest, targets))
        batch = ImageBatch(
            tensor=tensor,
            image_sizes=torch.tensor([r.shape[-2:] for r in resized], dtype=torch.int64).to(device, non_blocking=True),
            scales=torch.tensor(scales, dtype=torch.float32).to(device, non_blocking=True),
            original_sizes=original_sizes,
        )
        gt = self._ground_truth(targets, batch.scales) if targets is not None else None
        return batch, gt

    def _draw_min_size(self) -> int:
        if self.training and len(self.min_size) > 1:
            # Multi-scale training: one size per batch, from torch's seeded CPU generator (no device sync).
            return self.min_size[int(torch.randint(len(self.min_size), (1,)))]
        return self.min_size[-1]

    def resized_size(self, height: int, width: int, shortest: int) -> Tuple[int, int]:
        """Shortest side to ``shortest``, unless the longest side would then exceed ``max_size``; sides rounded
        to the nearest pixel or, with ``resize_rounding="floor"``, down (torchvision's ``int(side * scale)``)."""
        scale = min(shortest / min(height, width), self.max_size / max(height, width))
        to_int = int if self.resize_rounding == "floor" else round
        return max(1, to_int(height * scale)), max(1, to_int(width * scale))

    def _normalize_and_resize(self, image: Tensor, height: int, width: int) -> Tensor:
        # uint8 images (what the data loader ships: 4x less to copy) are scaled here; floats are taken as [0, 1].
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        # Normalised first, as torchvision's GeneralizedRCNNTransform does: the same function (resizing is linear),
        # and the same float rounding, so that torchvision's trained detectors get bit-for-bit their inputs.
        image = (image - self.pixel_mean) / self.pixel_std
        return F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False)[0]

    def _canvas(self, images: List[Tensor], shortest: int, targets=None) -> Tuple[int, int]:
        """The padded batch's (height, width): the smallest that holds the batch (rounded up to
        ``size_divisible``), or with ``static`` in training the batch's bucket: (shortest, max_size) for a landscape
        batch, (max_size, shortest) for a portrait one, (max_size, max_size) for a mix. Every resized image fits its
        bucket, so the shapes a run sees are at most three per configured ``min_size``."""
        if self.static and self.training:
            short_side, long_side = min(shortest, self.max_size), self.max_size
            landscape = all(img.shape[-1] >= img.shape[-2] for img in images)
            portrait = all(img.shape[-1] < img.shape[-2] for img in images)
            height, width = (short_side if landscape else long_side), (short_side if portrait else long_side)
        else:
            height, width = max(img.shape[-2] for img in images), max(img.shape[-1] for img in images)
            if targets is not None and all("batch_sizes" in t for t in targets):
                # Under torchrun a rank holds part of the global batch: pad it as the whole batch would be padded,
                # so every image sees the same canvas (and the same trunk features) as in one process.
                whole = [self.resized_size(int(h), int(w), shortest) for h, w in targets[0]["batch_sizes"].tolist()]
                height, width = max([height] + [h for h, _ in whole]), max([width] + [w for _, w in whole])
        divisor = self.size_divisible
        return (height + divisor - 1) // divisor * divisor, (width + divisor - 1) // divisor * divisor

    def _pad(self, images: List[Tensor], canvas: Tuple[int, int]) -> Tensor:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        batch = torch.empty(len(images), 3, *canvas, dtype=images[0].dtype, device=images[0].device,
                            memory_format=layout).zero_()
        for slot, image in zip(batch, images):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    def _ground_truth(self, targets: List[Dict[str, Tensor]], scales: Tensor) -> GroundTruth:
        device = scales.device
        # At least 2 slots when static: a compiler specialises a size-1 dimension, so 1 would be a graph of its own.
        slots = max(2 if self.static else 1, max(int(t["boxes"].shape[0]) for t in targets))
        boxes = torch.tensor(_PAD_BOX, device=device).repeat(len(targets), slots, 1)
        labels = torch.zeros(len(targets), slots, dtype=torch.int64, device=device)
        valid = torch.zeros(len(targets), slots, dtype=torch.bool, device=device)
        for i, target in enumerate(targets):
            count = target["boxes"].shape[0]
            if count:
                boxes[i, :count] = target["boxes"].to(device, torch.float32, non_blocking=True).reshape(-1, 4)
                labels[i, :count] = target["labels"].to(device, torch.int64, non_blocking=True)
                valid[i, :count] = True
        scale_xyxy = scales[:, [1, 0, 1, 0]].unsqueeze(1)  # (sx, sy, sx, sy)
        boxes = torch.where(valid.unsqueeze(-1), boxes * scale_xyxy, boxes)
        if self.static:  # one graph for any number of objects
            for tensor in (boxes, labels, valid):
                torch._dynamo.mark_dynamic(tensor, 1)
        return GroundTruth(boxes=boxes, labels=labels, valid=valid, keys=_sample_keys(targets, device))


def _sample_keys(targets: List[Dict[str, Tensor]], device: torch.device) -> Optional[Tensor]:
    """Each image's sampling key (``target["sample_key"]``, set by the training loader) as ``[N]`` int64, or None
    when a target has none (a caller's own targets: the samplers then draw from torch's generator)."""
    if not all("sample_key" in target for target in targets):
        return None
    return torch.tensor([int(target["sample_key"]) for target in targets], dtype=torch.int64).to(device,
                                                                                                 non_blocking=True)
