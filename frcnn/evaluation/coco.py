"""COCO bbox metrics with pycocotools' COCOeval.

Undefined values: pycocotools reports -1 where there is nothing to measure (an area range with no ground-truth
objects, a category without ground truth). We return NaN there, consistently with the VOC evaluator's classes
without ground truth (``write_json`` stores NaN as ``null``). Empty predictions are valid: every defined metric
is then 0.0.

COCOeval's console output is captured and logged at INFO level on the ``frcnn.evaluation.coco`` logger.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["evaluate_coco", "COCO_SUMMARY_KEYS"]

log = logging.getLogger(__name__)

#: metric names, in the order of ``COCOeval.stats[:6]``
COCO_SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _undefined_to_nan(value) -> float:
    value = float(value)
    return math.nan if value < 0 else value


def _resolve_categories(coco_gt, classes) -> dict[int, str]:
    """Map the category ids to evaluate to names, in the caller's order."""
    cats = coco_gt.cats
    if classes is None:
        return {cid: cats[cid]["name"] for cid in sorted(cats)}
    if isinstance(classes, Mapping):
        missing = [cid for cid in classes if cid not in cats]
        if missing:
            raise ValueError(f"category ids {missing} are not in the ground-truth file (it has {sorted(cats)})")
        return {int(cid): str(name) for cid, name in classes.items()}
    by_name = {}
    for cid in sorted(cats):
        by_name.setdefault(cats[cid]["name"], cid)
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise ValueError(f"class names {missing} are not categories of the ground-truth file "
                         f"(it has {sorted(by_name)}); pass a {{category_id: name}} dict instead")
    return {by_name[name]: name for name in classes}


def _results_as_coco(coco_gt, results: Sequence[dict]):
    """A COCO object holding the predictions, like ``COCO.loadRes`` for boxes but accepting an empty list and
    leaving the caller's dicts untouched (loadRes adds ``area``/``id``/... to them in place)."""
    from pycocotools.coco import COCO

    anns = []
    for n, r in enumerate(results, start=1):
        x, y, w, h = (float(v) for v in r["bbox"])
        anns.append({
            "id": n,
            "image_id": r["image_id"],
            "category_id": int(r["category_id"]),
            "bbox": [x, y, w, h],
            "score": float(r["score"]),
            "area": w * h,
            "iscrowd": 0,
        })
    unknown_images = {a["image_id"] for a in anns} - set(coco_gt.imgs)
    if unknown_images:
        raise ValueError(f"predictions refer to image ids not in the ground truth: {sorted(unknown_images)[:10]}")
    unknown_cats = {a["category_id"] for a in anns} - set(coco_gt.cats)
    if unknown_cats:
        raise ValueError(f"predictions refer to category ids not in the ground truth: {sorted(unknown_cats)}")
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def evaluate_coco(coco_gt, results: Sequence[dict], classes=None, *, image_ids=None) -> dict:
    """COCO bbox AP of ``results`` (COCO results format, the json's own image and category ids).

    ``classes``: None (every category of ``coco_gt``, named as in the file), a list of category names, or a
    ``{category_id: name}`` dict; only those categories are evaluated and ``per_class`` is keyed by the names.
    ``image_ids``: restrict the evaluation to these images (default: every image of ``coco_gt``).

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (fractions, NaN where undefined) and
    ``"per_class"``: {name: AP at IoU .50:.95, all areas, 100 detections}.
    """
    from pycocotools.cocoeval import COCOeval

    categories = _resolve_categories(coco_gt, classes)
    coco_dt = _results_as_coco(coco_gt, results)

    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    cat_ids = sorted(categories)
    evaluator.params.catIds = cat_ids
    if image_ids is not None:
        image_ids = list(image_ids)
        unknown = set(image_ids) - set(coco_gt.imgs)
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {sorted(unknown)[:10]}")
        evaluator.params.imgIds = image_ids
    if not cat_ids or not evaluator.params.imgIds:
        nan = {key: math.nan for key in COCO_SUMMARY_KEYS}
        return {**nan, "per_class": {name: math.nan for name in categories.values()}}

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.info("COCOeval summary:\n%s", captured.getvalue().rstrip())

    metrics = {key: _undefined_to_nan(v) for key, v in zip(COCO_SUMMARY_KEYS, evaluator.stats[:6])}
    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M max-dets]
    precision = evaluator.eval["precision"]
    area_all = list(evaluator.params.areaRngLbl).index("all")
    per_class = {}
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, area_all, -1]
        p = p[p > -1]
        per_class[cid] = float(np.mean(p)) if p.size else math.nan
    metrics["per_class"] = {name: per_class[cid] for cid, name in categories.items()}
    return metrics
