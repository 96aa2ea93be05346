"""Detections in the COCO results format (the contents of ``detections.json``)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from frcnn.evaluation._common import as_numpy

__all__ = ["to_coco_results"]

BOX_DECIMALS = 2
SCORE_DECIMALS = 5


def _image_id(image_id):
    """Plain Python ids for json: numpy/torch integers become int, strings stay strings."""
    if isinstance(image_id, str):
        return image_id
    if isinstance(image_id, (int, np.integer)):
        return int(image_id)
    if hasattr(image_id, "item"):
        return image_id.item()
    return image_id


def to_coco_results(dataset, detections: Sequence[dict]) -> list[dict]:
    """One ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` entry per detection.

    ``detections[i]`` belongs to ``dataset``'s image i (boxes in that image's continuous 0-based pixels).
    COCO-format data: the json's own image ids and category ids (``dataset.label_to_category_id``).
    VOC-format data: ``image_id`` is the split-file id (e.g. "000005"), ``category_id`` the label (1..K) and
    ``"category"`` the class name. Boxes are rounded to 2 decimals, scores to 5.
    """
    if len(detections) != len(dataset):
        raise ValueError(f"{len(detections)} detection entries for a dataset of {len(dataset)} images")
    fmt = dataset.format
    if fmt not in ("voc", "coco"):
        raise ValueError(f"unknown dataset format {fmt!r} (expected 'voc' or 'coco')")
    classes = list(dataset.classes)
    if fmt == "coco":
        label_map = dict(dataset.label_to_category_id)
    results: list[dict] = []
    for i, det in enumerate(detections):
        boxes = as_numpy(det["boxes"], np.float64, (4,))
        labels = as_numpy(det["labels"], np.int64)
        scores = as_numpy(det["scores"], np.float64)
        if not (len(boxes) == len(labels) == len(scores)):
            raise ValueError(f"detections of image {i}: boxes, labels and scores differ in length")
        if len(labels) and (labels.min() < 1 or labels.max() > len(classes)):
            raise ValueError(f"detections of image {i}: labels must lie in 1..{len(classes)}, "
                             f"got {sorted(set(labels.tolist()))}")
        xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
        xywh = np.round(xywh, BOX_DECIMALS).tolist()
        scores = np.round(scores, SCORE_DECIMALS).tolist()
        image_id = _image_id(dataset.image_ids[i])
        for bbox, label, score in zip(xywh, labels.tolist(), scores):
            if fmt == "coco":
                results.append({"image_id": image_id, "category_id": int(label_map[label]),
                                "bbox": bbox, "score": score})
            else:
                results.append({"image_id": image_id, "category_id": label, "category": classes[label - 1],
                                "bbox": bbox, "score": score})
    return results
