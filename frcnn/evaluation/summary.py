"""The numbers a run is judged by, taken from an evaluation result (``metrics.json``'s dict)."""
from __future__ import annotations

from typing import Dict, Optional


def summary_metrics(metrics: Dict) -> Dict[str, float]:
    """The scalar entries of an evaluation result (mAP, or AP/AP50/...), without per-class values or NaNs."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[name] = float(value)
    return out


def primary_metric(metrics: Dict) -> Optional[float]:
    """``mAP`` (VOC metrics) or ``AP`` (COCO)."""
    for key in ("mAP", "AP"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and value == value:
            return float(value)
    return None
