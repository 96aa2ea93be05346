"""COCO instances json (any dataset in that format), read with pycocotools.

Labels: the json's category ids, sorted, map to contiguous labels 1..K (``label_to_category_id`` maps back for
``detections.json``); when ``dataset.classes`` is given, label k is the category named ``classes[k-1]`` and
annotations of categories not listed are skipped (counted). Boxes: json (x, y, w, h) -> (x, y, x + w, y + h),
already continuous 0-based. Crowd regions (``iscrowd=1``) never enter training targets; ``ground_truth`` keeps
them, flagged difficult. A non-standard ``"difficult": 1`` on an annotation (the shapes generator writes one) is
honoured like VOC's. pycocotools' prints ("loading annotations into memory...") are silenced.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Sequence

import numpy as np

from frcnn.data.dataset import DetectionDataset, ImageRecord, clip_and_filter, count_dropped, finite_float32, listed
from frcnn.data.decode import read_image_size
from frcnn.data.errors import DataError, IssueCounter

logger = logging.getLogger(__name__)


def load_coco_json(path) -> dict:
    """The json file as a dict, with its structure checked. Raises :class:`DataError` naming the file."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"malformed JSON in {path}: {e}") from None
    except OSError as e:
        raise DataError(f"cannot read annotation file {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise DataError(f"malformed COCO file {path}: the top level is a {type(data).__name__}, expected an object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"malformed COCO file {path}: no {key!r} list")
    if not isinstance(data.setdefault("annotations", []), list):  # image-info files (test-dev) have none
        raise DataError(f"malformed COCO file {path}: 'annotations' is not a list")
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"malformed COCO file {path}: a category lacks 'id' or 'name': {cat!r}")
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DataError(f"malformed COCO file {path}: an image lacks 'id' or 'file_name': {str(img)[:200]}")
    _remember_categories(path, data)
    return data


# path -> ((size, mtime), {category id: name}): resolving the classes compares the categories of every split
# file; a file already read (to build a dataset, or by an earlier resolve) is not parsed again for them.
_CATEGORIES: dict = {}


def _file_key(path) -> tuple:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _remember_categories(path, data: dict) -> None:
    try:
        _CATEGORIES[str(path)] = (_file_key(path), {c["id"]: c["name"] for c in data["categories"]})
    except (OSError, TypeError):  # an unhashable id: not cached; _category_mapping reports the file
        pass


def read_coco_categories(path) -> dict:
    """{category id: name} of a COCO file, sorted by id (the whole file is read unless it was already)."""
    hit = _CATEGORIES.get(str(path))
    if hit is None or hit[0] != _file_key(path):
        load_coco_json(path)
        hit = _CATEGORIES.get(str(path))
        if hit is None:
            raise DataError(f"malformed COCO file {path}: category ids must be numbers")
    return dict(sorted(hit[1].items()))


def coco_from_dict(data: dict):
    """A pycocotools ``COCO`` object over an already loaded dict, without its prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_bbox_values(ann: dict, path) -> None:
    """A DataError naming the file and the annotation when a bbox value is not a finite number (json.load reads
    NaN, Infinity and 1e400 as floats: clipped, they would become boxes running to the image border)."""
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (TypeError, ValueError):
        raise DataError(f"malformed COCO file {path}: annotation {ann.get('id')} (image {ann['image_id']}) has "
                        f"bbox {ann['bbox']!r}, which is not numeric") from None
    if not finite_float32((x, y, w, h, x + w, y + h)):  # x + w: the box's right edge, in float32 too
        raise DataError(f"malformed COCO file {path}: annotation {ann.get('id')} (image {ann['image_id']}) has "
                        f"bbox {ann['bbox']!r}, which holds a non-finite value (NaN, infinite or too large)")


def _category_mapping(data: dict, classes: Sequence[str] | None, path) -> tuple[dict, list[str], bool]:
    """(category id -> label, class names, whether unlisted categories are skipped)."""
    cats = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids):
        raise DataError(f"malformed COCO file {path}: duplicate category ids")
    if not classes:
        if not cats:
            raise DataError(f"COCO file {path} has no categories (and dataset.classes is empty)")
        return {c["id"]: k + 1 for k, c in enumerate(cats)}, [c["name"] for c in cats], False
    by_name = {}
    for c in cats:
        if c["name"] in by_name:
            raise DataError(f"COCO file {path}: two categories are named {c['name']!r}; "
                            f"leave dataset.classes empty to use category ids")
        by_name[c["name"]] = c["id"]
    unknown = [n for n in classes if n not in by_name]
    if unknown:
        raise DataError(f"dataset.classes names {unknown} that are not categories of {path}; "
                        f"its categories: {[c['name'] for c in cats]}")
    return {by_name[n]: k + 1 for k, n in enumerate(classes)}, list(classes), True


class COCODataset(DetectionDataset):
    """A COCO-format dataset; see :class:`frcnn.data.dataset.DetectionDataset` for the item contract.

    Extra attributes: ``coco`` (pycocotools COCO over the json), ``label_to_category_id`` and
    ``category_id_to_label`` (dicts), ``ann_file``, ``img_dir``.
    """

    format = "coco"

    def __init__(self, ann_file, img_dir, classes: Sequence[str] | None = None, *, train: bool,
                 use_difficult: bool = False, keep_empty: bool = True, hflip_prob: float = 0.5,
                 color_jitter: float = 0.0, name: str = "coco") -> None:
        self.ann_file = str(ann_file)
        self.img_dir = str(img_dir)
        data = load_coco_json(self.ann_file)
        self.category_id_to_label, classes, skip_unlisted = _category_mapping(data, classes, self.ann_file)
        self.label_to_category_id = {v: k for k, v in self.category_id_to_label.items()}
        records = self._records(data, skip_unlisted, name)
        self._coco = coco_from_dict(data)
        super().__init__(records, classes=classes, train=train, use_difficult=use_difficult,
                         keep_empty=keep_empty, hflip_prob=hflip_prob, color_jitter=color_jitter, name=name)

    @property
    def coco(self):
        """pycocotools COCO object over the annotation file (re-read lazily in a process that lacks it)."""
        if self._coco is None:
            self._coco = coco_from_dict(load_coco_json(self.ann_file))
        return self._coco

    def __getstate__(self):  # workers started by spawn/forkserver do not need the COCO index
        state = self.__dict__.copy()
        state["_coco"] = None
        return state

    def _records(self, data: dict, skip_unlisted: bool, name: str) -> list[ImageRecord]:
        path = self.ann_file
        issues = IssueCounter(source=f"dataset {name!r}")
        anns_by_image = self._annotations_by_image(data, skip_unlisted, issues)
        records, missing = [], []
        for img in data["images"]:
            image_path = os.path.join(self.img_dir, img["file_name"])
            if not os.path.isfile(image_path):
                missing.append(image_path)
                continue
            records.append(self._record(img, image_path, anns_by_image.get(img["id"], []), issues))
        if missing:  # a broken dataset: leaving images out would silently change what is trained or measured
            raise DataError(f"dataset {name!r}: {len(missing)} of {len(data['images'])} images of {path} are "
                            f"missing under {self.img_dir}: {listed(missing)}. Restore them, or remove them "
                            f"from the file's 'images'")
        if not records:
            raise DataError(f"COCO file {path} lists no images")
        issues.report()
        return records

    def _annotations_by_image(self, data: dict, skip_unlisted: bool, issues: IssueCounter) -> dict:
        """image id -> its checked annotations (of the listed categories)."""
        path = self.ann_file
        anns_by_image: dict = {}
        image_ids = {img["id"] for img in data["images"]}
        all_category_ids = {c["id"] for c in data["categories"]}
        if len(image_ids) != len(data["images"]):
            raise DataError(f"malformed COCO file {path}: duplicate image ids")
        for ann in data["annotations"]:
            try:
                image_id, cat_id, bbox = ann["image_id"], ann["category_id"], ann["bbox"]
            except (KeyError, TypeError):
                raise DataError(f"malformed COCO file {path}: an annotation lacks 'image_id', 'category_id' or "
                                f"'bbox': {str(ann)[:200]}") from None
            if image_id not in image_ids:
                issues.add("skipped {n} annotations of image ids that are not in 'images'", path)
                continue
            if cat_id not in self.category_id_to_label:
                if skip_unlisted and cat_id in all_category_ids:
                    issues.add("skipped {n} annotations of categories not in dataset.classes", path)
                    continue
                raise DataError(f"annotation {ann.get('id')} in {path} has category_id {cat_id}, which is not "
                                f"among the file's categories {sorted(self.category_id_to_label)}")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DataError(f"malformed COCO file {path}: annotation {ann.get('id')} has bbox {bbox!r}, "
                                f"expected [x, y, w, h]")
            _check_bbox_values(ann, path)
            anns_by_image.setdefault(image_id, []).append(ann)
        return anns_by_image

    def _record(self, img: dict, image_path: str, anns: list, issues: IssueCounter) -> ImageRecord:
        """One image's boxes (xywh -> xyxy, clipped, empty and inverted ones dropped with a count)."""
        path = self.ann_file
        height, width = int(img.get("height") or 0), int(img.get("width") or 0)
        if height <= 0 or width <= 0:
            height, width = read_image_size(image_path)
            issues.add("read the size of {n} images from the image file (no width/height in the json)", path)
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)  # checked above
        boxes = xywh.copy()
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        inverted = (xywh[:, 2] < 0) | (xywh[:, 3] < 0)
        labels = np.array([self.category_id_to_label[a["category_id"]] for a in anns], dtype=np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        difficult = np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool)
        boxes, keep, n_clipped = clip_and_filter(boxes, height, width)
        where = f"{path} (image {img['file_name']})"
        if n_clipped:
            issues.add("clipped {n} boxes outside their image", where, n_clipped)
        if not keep.all():
            count_dropped(issues, keep, inverted, where, "negative bbox width or height")
            boxes, labels, crowd, difficult = boxes[keep], labels[keep], crowd[keep], difficult[keep]
        return ImageRecord(image_id=img["id"], path=image_path, height=height, width=width, boxes=boxes,
                           labels=labels, difficult=difficult, crowd=crowd)
