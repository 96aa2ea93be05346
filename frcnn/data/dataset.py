"""The dataset object both loaders (VOC, COCO) produce.

All annotations are read and validated when the dataset is built, then packed into flat NumPy arrays (one row per
object, ``offsets[i]:offsets[i+1]`` for image ``i``): DataLoader workers never parse annotation files, and the
arrays are shared copy-on-write with forked workers instead of one Python object per box.

Item ``i`` is ``(image, target)``:
  image   uint8 tensor [3, H, W], RGB, at the file's own size (the model resizes)
  target  boxes      float32 [M, 4] (x1, y1, x2, y2), continuous 0-based pixels of this image, after the flip
          labels     int64 [M] in 1..K (label k is ``classes[k-1]``)
          difficult  bool [M] (all False in training unless ``use_difficult``)
          image_id   the split file's id string (VOC, e.g. "000005") or the json's int id (COCO)
          index      int, ``i``
          orig_size  (H, W) ints of the decoded image
In training (``train=True``) objects marked difficult (unless ``use_difficult``) and COCO crowd regions are left
out of the target; otherwise the target holds every object.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from frcnn.data.decode import read_image, read_image_size
from frcnn.data.errors import DataError, IssueCounter
from frcnn.data.transforms import TrainTransform

logger = logging.getLogger(__name__)

# Image files whose size differs from their annotation's, already warned about in this process: the warning is
# given once per image, not at every load of it (every epoch, every worker's copy of the dataset).
_SIZE_WARNED: set = set()
_LISTED = 5  # how many paths an error message lists


@dataclass
class ImageRecord:
    """One image's annotations as read from disk (boxes already converted, clipped and filtered)."""

    image_id: Any
    path: str
    height: int
    width: int
    boxes: np.ndarray  # float32 [M, 4] continuous 0-based xyxy
    labels: np.ndarray  # int64 [M], 1..K
    difficult: np.ndarray  # bool [M]
    crowd: np.ndarray = field(default=None)  # bool [M] (COCO iscrowd); None = all False


def clip_and_filter(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip xyxy boxes to [0, W] x [0, H]. Returns (clipped boxes, keep mask of boxes with positive area,
    number of boxes that had to be clipped)."""
    if len(boxes) == 0:
        return boxes, np.zeros(0, dtype=bool), 0
    clipped = boxes.copy()
    np.clip(clipped[:, 0::2], 0, width, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0, height, out=clipped[:, 1::2])
    changed = int(np.any(clipped != boxes, axis=1).sum())
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep, changed


def count_dropped(issues: IssueCounter, keep: np.ndarray, inverted: np.ndarray, where: str, how: str) -> None:
    """Count the boxes that ``keep`` drops: inverted ones (``inverted``: the file's own coordinates run
    backwards, ``how`` says how in the file's terms) apart from those of zero area."""
    dropped = ~keep
    n_inverted = int((dropped & inverted).sum())
    n_zero = int(dropped.sum()) - n_inverted
    if n_inverted:
        issues.add(f"dropped {{n}} inverted boxes ({how})", where, n_inverted)
    if n_zero:
        issues.add("dropped {n} boxes of zero area", where, n_zero)


def finite_float32(values) -> bool:
    """Whether every value is a finite number that float32 (the boxes' dtype) holds: NaN, infinities and values
    beyond +-3.4e38 (which float32 turns into infinities) are not."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.asarray(values, dtype=np.float32)).all())


def listed(items: Sequence[str]) -> str:
    """The first few items, joined, and how many more there are (for error messages)."""
    more = f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return "; ".join(items[:_LISTED]) + more


class DetectionDataset(Dataset):
    """Map-style dataset over packed :class:`ImageRecord` s; see the module docstring for the item contract."""

    format: str = ""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        *,
        classes: Sequence[str],
        train: bool,
        use_difficult: bool = False,
        keep_empty: bool = True,
        hflip_prob: float = 0.5,
        color_jitter: float = 0.0,
        name: str = "",
    ) -> None:
        self.classes = list(classes)
        self.name = name
        self.train = bool(train)
        self.use_difficult = bool(use_difficult)
        if self.train and not keep_empty:
            before = len(records)
            records = [r for r in records if self._train_keep(r).any()]
            if len(records) < before:
                logger.info("%s: left out %d of %d training images that have no object to train on "
                            "(dataset.keep_empty=false)", name, before - len(records), before)
        if not records:
            raise DataError(f"dataset {name!r} has no images" + ("" if keep_empty or not train else
                            " with usable objects (dataset.keep_empty=false dropped every image)"))
        self._pack(records)
        self.transform = TrainTransform(hflip_prob=hflip_prob, color_jitter=color_jitter) if self.train else None

    # ------------------------------------------------------------------------------------------------ packing
    def _train_keep(self, r: ImageRecord) -> np.ndarray:
        keep = np.ones(len(r.labels), dtype=bool)
        if r.crowd is not None:
            keep &= ~r.crowd
        if not self.use_difficult:
            keep &= ~r.difficult
        return keep

    def _pack(self, records: Sequence[ImageRecord]) -> None:
        counts = np.array([len(r.labels) for r in records], dtype=np.int64)
        self._offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(counts, out=self._offsets[1:])
        def cat(arrays, shape, dtype):
            return np.concatenate(arrays).astype(dtype, copy=False) if len(arrays) else np.zeros(shape, dtype)

        self._boxes = cat([r.boxes.reshape(-1, 4) for r in records], (0, 4), np.float32)
        self._labels = cat([r.labels for r in records], (0,), np.int64)
        self._difficult = cat([r.difficult for r in records], (0,), bool)
        self._crowd = cat([r.crowd if r.crowd is not None else np.zeros(len(r.labels), bool) for r in records],
                          (0,), bool)
        self._train_mask = ~self._crowd & (self.use_difficult | ~self._difficult)
        self._heights = np.array([r.height for r in records], dtype=np.int64)
        self._widths = np.array([r.width for r in records], dtype=np.int64)
        self._paths = np.array([r.path for r in records], dtype=np.str_)
        self.image_ids = [r.image_id for r in records]

    # ------------------------------------------------------------------------------------------- metadata
    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_path(self, i: int) -> str:
        return str(self._paths[i])

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i`` from the annotations (the image is not decoded)."""
        return int(self._heights[i]), int(self._widths[i])

    def aspect_groups(self) -> np.ndarray:
        """int64 [N]: 0 for landscape (W >= H) images, 1 for portrait, from the annotations' sizes."""
        return (self._heights > self._widths).astype(np.int64)

    def ground_truth(self, i: int) -> dict:
        """Every object of image ``i`` (difficult ones and COCO crowd regions too, both flagged ``difficult``)
        in its original coordinates: dict(image_id, boxes float32 [M,4], labels int64 [M], difficult bool [M])."""
        s, e = self._offsets[i], self._offsets[i + 1]
        return {
            "image_id": self.image_ids[i],
            "boxes": torch.from_numpy(self._boxes[s:e].copy()),
            "labels": torch.from_numpy(self._labels[s:e].copy()),
            "difficult": torch.from_numpy(self._difficult[s:e] | self._crowd[s:e]),
        }

    # ----------------------------------------------------------------------------------------------- items
    def __getitem__(self, i) -> tuple[torch.Tensor, dict]:
        """Image ``i`` and its target; ``i`` may be a training loader's ``KeyedSample``: then its flip follows from
        its key, and the target carries ``sample_key`` and ``batch_sizes`` for the model."""
        sample = i if isinstance(i, tuple) else None
        i = sample[0] if sample is not None else i
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        path = self.image_path(i)
        image = read_image(path)
        s, e = self._offsets[i], self._offsets[i + 1]
        boxes = self._boxes[s:e]
        labels = self._labels[s:e]
        difficult = self._difficult[s:e] | self._crowd[s:e]
        if self.train:
            keep = self._train_mask[s:e]
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        boxes = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
        height, width = int(image.shape[1]), int(image.shape[2])
        if (height, width) != self.image_size(i):
            if path not in _SIZE_WARNED:
                _SIZE_WARNED.add(path)
                logger.warning("image %s is %dx%d but its annotation says %dx%d; boxes are clipped to the image",
                               path, width, height, self._widths[i], self._heights[i])
            boxes[:, 0::2].clamp_(0, width)
            boxes[:, 1::2].clamp_(0, height)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels, difficult = boxes[ok], labels[ok.numpy()], difficult[ok.numpy()]
        if self.transform is not None:
            image, boxes = self.transform(image, boxes, key=sample[1] if sample is not None else None)
        target = {
            "boxes": boxes,
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "difficult": torch.from_numpy(np.ascontiguousarray(difficult, dtype=bool)),
            "image_id": self.image_ids[i],
            "index": int(i),
            "orig_size": (height, width),
        }
        if sample is not None:
            target["sample_key"] = torch.tensor(sample[1], dtype=torch.int64)
            target["batch_sizes"] = torch.tensor(sample[2], dtype=torch.int64).reshape(-1, 2)
        return image, target

    # ------------------------------------------------------------------------------------------- checking
    def check_images(self) -> None:
        """Read every image file's header (no pixels are decoded): raise one :class:`DataError` listing the
        images that cannot be read, with the reason; log one warning for the images whose size differs from
        their annotation's. Meant to run before training or evaluation starts, so that a broken file does not
        surface only when the loader reaches it. (A JPEG truncated after its header is only found when decoded.)"""
        unreadable, mismatched = [], []
        for i in range(len(self)):
            path = self.image_path(i)
            try:
                size = read_image_size(path)
            except DataError as e:
                unreadable.append(str(e))
                continue
            if size != self.image_size(i):
                mismatched.append((path, size, self.image_size(i)))
        if unreadable:
            raise DataError(f"dataset {self.name!r}: {len(unreadable)} of {len(self)} images cannot be read: "
                            f"{listed(unreadable)}. Replace these files, or remove them from the split")
        if mismatched:
            path, (h, w), (ah, aw) = mismatched[0]
            logger.warning("dataset %r: %d of %d images are not the size their annotation says (first: %s is "
                           "%dx%d, its annotation says %dx%d); their boxes are clipped to the image",
                           self.name, len(mismatched), len(self), path, w, h, aw, ah)
            _SIZE_WARNED.update(p for p, _, _ in mismatched)  # said here: not again at each load

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, format={self.format!r}, images={len(self)}, "
                f"objects={len(self._labels)}, classes={len(self.classes)}, train={self.train})")
