"""Evaluation: Pascal VOC (devkit rules) and COCO (pycocotools) metrics, detections.json, metrics tables."""
from frcnn.evaluation.coco import COCO_SUMMARY_KEYS, evaluate_coco
from frcnn.evaluation.evaluator import METRICS, evaluate_dataset, format_table, write_json
from frcnn.evaluation.results import to_coco_results
from frcnn.evaluation.summary import primary_metric, summary_metrics
from frcnn.evaluation.voc import evaluate_voc, voc_ap

__all__ = [
    "COCO_SUMMARY_KEYS",
    "METRICS",
    "evaluate_coco",
    "evaluate_dataset",
    "evaluate_voc",
    "format_table",
    "primary_metric",
    "summary_metrics",
    "to_coco_results",
    "voc_ap",
    "write_json",
]
