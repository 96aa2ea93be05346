"""Dataset-level evaluation entry point, the per-class table and atomic json output."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from frcnn.atomic_file import atomic_write
from frcnn.errors import ConfigError
from frcnn.evaluation.coco import COCO_SUMMARY_KEYS, evaluate_coco
from frcnn.evaluation.results import to_coco_results
from frcnn.evaluation.voc import evaluate_voc

__all__ = ["METRICS", "evaluate_dataset", "format_table", "write_json"]

#: metric names accepted by ``evaluate_dataset``
METRICS = ("voc07", "voc_area", "coco")


def evaluate_dataset(dataset, detections: Sequence[dict], metric: str) -> dict:
    """Evaluate ``detections`` (``detections[i]`` for ``dataset``'s image i) with one metric.

    ``"voc07"``: VOC AP with the 2007 11-point rule, ``"voc_area"``: VOC AP with the area rule (both through
    ``dataset.ground_truth(i)``, so they work on COCO-format data too); ``"coco"``: pycocotools on the COCO
    results (COCO-format datasets only). Returns the ``metrics.json`` dict: ``{"mAP", "per_class"}`` for the
    VOC metrics, ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class"}`` for COCO.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if len(detections) != len(dataset):
        raise ValueError(f"{len(detections)} detection entries for a dataset of {len(dataset)} images")
    classes = list(dataset.classes)
    if metric in ("voc07", "voc_area"):
        ground_truth = [dataset.ground_truth(i) for i in range(len(dataset))]
        return evaluate_voc(ground_truth, detections, classes, use_07_metric=(metric == "voc07"))
    if dataset.format != "coco":
        raise ConfigError(f"metric 'coco' needs a COCO-format dataset (pycocotools evaluates against the COCO "
                         f"json), but this dataset is {dataset.format!r}; use metric 'voc07' or 'voc_area'")
    names = {int(dataset.label_to_category_id[label]): name for label, name in enumerate(classes, start=1)}
    results = to_coco_results(dataset, detections)
    return evaluate_coco(dataset.coco, results, names, image_ids=list(dataset.image_ids))


def _pct(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * float(value):.1f}"


def format_table(metrics: dict, classes: Sequence[str] | None = None) -> str:
    """A per-class AP table (percentages, 1 decimal; "n/a" where undefined) followed by the summary rows."""
    per_class = metrics.get("per_class", {})
    names = list(classes) if classes is not None else list(per_class)
    summary_keys = [k for k in ("mAP", *COCO_SUMMARY_KEYS) if k in metrics]
    header = ("class", "AP")
    rows = [(name, _pct(per_class.get(name))) for name in names]
    summary = [(key, _pct(metrics[key])) for key in summary_keys]
    name_w = max(len(r[0]) for r in [header, *rows, *summary])
    val_w = max(len(r[1]) for r in [header, *rows, *summary])
    line = "-" * (name_w + 2 + val_w)
    fmt = f"{{:<{name_w}}}  {{:>{val_w}}}"
    out = [fmt.format(*header), line, *(fmt.format(*r) for r in rows)]
    if summary:
        out += [line, *(fmt.format(*r) for r in summary)]
    return "\n".join(out)


def _jsonable(obj):
    """Plain json types: numpy scalars/arrays converted, non-finite floats (undefined metrics) -> None."""
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj, *, indent: int | None = 2) -> None:
    """Write ``obj`` as json atomically (see :mod:`frcnn.atomic_file`).

    NaN/inf (undefined metrics) are written as ``null`` so the file is strict json.
    """
    text = json.dumps(_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text), binary=False)
