"""The check of training targets where they enter the model (torchvision's detection contract).

A target is one dict per image: ``boxes`` a floating-point tensor [M, 4] of (x1, y1, x2, y2) pixels of that image
(M may be 0) and ``labels`` an integer tensor [M] of class indices 1..K (0 is the background, not a class). The
values must hold:

- coordinates finite, with x2 >= x1 and y2 >= y1. A degenerate box (x1 == x2 or y1 == y2) is accepted: it overlaps
  no anchor or proposal (IoU 0), so it is never matched as foreground and simply adds nothing to the losses;
- coordinates may lie beyond the image (boxes cut by a crop, sloppy annotations), but only within one image side of
  it: x in [-W, 2W] and y in [-H, 2H], W x H the image's size as given. Anything further (1e30, boxes of another
  image size) is a mistake in the data that would only make the box losses explode;
- one label per box, in 1..K (K unknown, e.g. in the data loader's collate: only >= 1 is checked).

Any violation raises ``ValueError`` naming the target, the field and the value, e.g.
``targets[1]["boxes"][0] = [10.0, 5.0, inf, 40.0]: coordinates must be finite``.

Cost: shapes and dtypes are read from the tensors' metadata. The values are checked with batched tensor ops over
all boxes of the batch, ending in one combined reduction that is read on the host. On CPU tensors (what the data
loader gives) that never waits for an accelerator; for targets already on an accelerator it is one device sync per
call (the ``bool(...)`` of that reduction). Only when something is wrong is more read back, to name it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

# The value checks, in the order a box's problems are reported.
_NOT_FINITE, _INVERTED, _TOO_FAR, _LABEL_LOW, _LABEL_HIGH = range(5)


def check_targets(
    targets,
    image_sizes: Sequence[Tuple[int, int]],
    num_classes: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Raise ``ValueError`` unless ``targets`` is a valid list of one target per image.

    ``image_sizes`` holds each image's (H, W) as given to the model; ``num_classes`` is K (``None``: labels are
    only checked to be >= 1); ``names`` says how messages call each target (default ``targets[i]``).
    """
    if not isinstance(targets, (list, tuple)):
        raise ValueError(f"targets must be a list with one dict per image, got {type(targets).__name__}")
    if len(targets) != len(image_sizes):
        raise ValueError(f"got {len(image_sizes)} images but {len(targets)} targets: give one target dict per image")
    names = list(names) if names is not None else [f"targets[{i}]" for i in range(len(targets))]
    for target, name in zip(targets, names):
        _check_structure(target, name)
    _check_values(targets, image_sizes, num_classes, names)


def _check_structure(target, name: str) -> None:
    """Types, shapes and dtypes: tensor metadata only, no data is read."""
    if not isinstance(target, Mapping):
        raise ValueError(f"{name} must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
    for key in ("boxes", "labels"):
        if key not in target:
            raise ValueError(f"{name} has no {key!r}: each target needs 'boxes' [N, 4] and 'labels' [N]")
        if not isinstance(target[key], Tensor):
            raise ValueError(f'{name}["{key}"] must be a torch.Tensor, got {type(target[key]).__name__}')
    boxes, labels = target["boxes"], target["labels"]
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{name}["boxes"] has shape {list(boxes.shape)}: expected [N, 4], one (x1, y1, x2, y2) row '
                         "per box ([0, 4] for an image without objects)")
    if not boxes.is_floating_point():
        raise ValueError(f'{name}["boxes"] has dtype {boxes.dtype}: expected a floating-point tensor (torch.float32)')
    if labels.dim() != 1:
        raise ValueError(f'{name}["labels"] has shape {list(labels.shape)}: expected [N], one class index per box')
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f'{name}["labels"] has dtype {labels.dtype}: expected an integer tensor (torch.int64) of '
                         "class indices 1..K")
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{name} has {boxes.shape[0]} boxes but {labels.shape[0]} labels: give one label per box")


def _check_values(targets, image_sizes, num_classes: Optional[int], names: List[str]) -> None:
    counts = [int(t["boxes"].shape[0]) for t in targets]
    if sum(counts) == 0:
        return
    device = targets[counts.index(max(counts))]["boxes"].device
    boxes = torch.cat([t["boxes"].to(device) for t in targets])  # [M, 4]
    labels = torch.cat([t["labels"].to(device) for t in targets])  # [M]
    # Per box, (W, H) of its image: built on the host, copied without waiting for the device.
    sizes = torch.tensor([(w, h) for h, w in image_sizes], dtype=boxes.dtype)
    sizes = sizes.repeat_interleave(torch.tensor(counts), dim=0).repeat(1, 2).to(device, non_blocking=True)
    problems = torch.stack([
        ~torch.isfinite(boxes).all(dim=1),
        (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]),
        ((boxes < -sizes) | (boxes > 2 * sizes)).any(dim=1),
        labels < 1,
        labels > num_classes if num_classes is not None else torch.zeros_like(labels, dtype=torch.bool),
    ])  # [5, M]
    if not bool(problems.any()):  # the one host read (a device sync for targets on an accelerator)
        return
    _raise_first(problems.cpu(), counts, targets, image_sizes, num_classes, names)


def _raise_first(problems: Tensor, counts, targets, image_sizes, num_classes, names) -> None:
    box = int(problems.any(dim=0).nonzero()[0])
    kind = int(problems[:, box].nonzero()[0])
    i = 0
    while box >= counts[i]:  # the image this box belongs to
        box -= counts[i]
        i += 1
    name, (height, width) = names[i], image_sizes[i]
    coords = ", ".join(_number(v) for v in targets[i]["boxes"][box].tolist())
    where = f'{name}["boxes"][{box}] = [{coords}]'
    if kind == _NOT_FINITE:
        raise ValueError(f"{where}: coordinates must be finite")
    if kind == _INVERTED:
        raise ValueError(f"{where}: x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1 "
                         "(convert (x, y, w, h) boxes first)")
    if kind == _TOO_FAR:
        raise ValueError(f"{where}: too far outside its {width}x{height} image; coordinates must lie within one image "
                         f"side of it (x in [{-width}, {2 * width}], y in [{-height}, {2 * height}]): are the boxes in "
                         "this image's pixels?")
    label = int(targets[i]["labels"][box])
    classes = f"1..{num_classes}" if num_classes is not None else "1..K"
    why = "0 is the background" if label == 0 else ("negative" if label < 0 else f"the model has {num_classes} classes")
    raise ValueError(f'{name}["labels"][{box}] = {label}: labels must be class indices {classes} ({why})')


def _number(value: float) -> str:
    """6 significant digits, whole numbers as ``10.0``: what the user typed, not float32's 1.0000000150474662e+30."""
    text = f"{value:.6g}"
    return text + ".0" if text.lstrip("-").isdigit() else text
