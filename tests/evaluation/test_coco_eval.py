"""COCO bbox metrics through pycocotools, on a tiny in-memory ground truth (conftest.COCO_GT).

Categories 3 "cat", 10 "dog" (non-contiguous ids) and 42 "bird" (no annotations); one small, one medium and two
large objects, so every summary metric is defined.
"""
import copy
import logging
import math

import pytest

from frcnn.evaluation import evaluate_coco

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def perfect(gt_dict, shift_frac=0.0, only_cat=None):
    out = []
    for a in gt_dict["annotations"]:
        x, y, w, h = a["bbox"]
        if only_cat is None or a["category_id"] == only_cat:
            x += shift_frac * w
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x, y, w, h],
                    "score": 0.9})
    return out


def test_perfect_predictions(coco_gt, coco_gt_dict, capsys):
    out = evaluate_coco(coco_gt, perfect(coco_gt_dict), ["cat", "dog"])
    for key in KEYS:
        assert out[key] == pytest.approx(1.0), key
    assert out["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
    assert capsys.readouterr().out == ""  # COCOeval's printing is captured


def test_shifted_predictions_ap_from_ten_thresholds(coco_gt, coco_gt_dict):
    # Every box shifted right by 19 % of its width: IoU = (1 - .19) / (1 + .19) = 0.6807.
    # Of the thresholds .50, .55, ..., .95 it passes .50, .55, .60, .65: precision 1 at every recall there, 0
    # elsewhere -> AP = 4/10 = 0.4, AP50 = 1, AP75 = 0 (every size range alike).
    out = evaluate_coco(coco_gt, perfect(coco_gt_dict, shift_frac=0.19), ["cat", "dog"])
    assert out["AP"] == pytest.approx(0.4)
    assert out["AP50"] == pytest.approx(1.0)
    assert out["AP75"] == 0.0
    for key in ("APs", "APm", "APl"):
        assert out[key] == pytest.approx(0.4), key
    assert out["per_class"] == {"cat": pytest.approx(0.4), "dog": pytest.approx(0.4)}


def test_per_class_ap_uses_the_right_category(coco_gt, coco_gt_dict):
    # only dogs (category 10) shifted: cat 1.0, dog 0.4, mean 0.7
    out = evaluate_coco(coco_gt, perfect(coco_gt_dict, shift_frac=0.19, only_cat=10))
    assert out["per_class"]["cat"] == pytest.approx(1.0)
    assert out["per_class"]["dog"] == pytest.approx(0.4)
    assert out["AP"] == pytest.approx(0.7)
    # classes=None: every category, named as in the file; "bird" has no ground truth -> NaN, not in the mean
    assert list(out["per_class"]) == ["cat", "dog", "bird"]
    assert math.isnan(out["per_class"]["bird"])


def test_classes_as_category_id_dict(coco_gt, coco_gt_dict):
    out = evaluate_coco(coco_gt, perfect(coco_gt_dict, shift_frac=0.19, only_cat=10), {10: "hound", 3: "kitty"})
    assert list(out["per_class"]) == ["hound", "kitty"]
    assert out["per_class"]["hound"] == pytest.approx(0.4)
    assert out["per_class"]["kitty"] == pytest.approx(1.0)
    # evaluating only the dogs
    dogs = evaluate_coco(coco_gt, perfect(coco_gt_dict, shift_frac=0.19, only_cat=10), {10: "dog"})
    assert dogs["AP"] == pytest.approx(0.4)
    assert list(dogs["per_class"]) == ["dog"]


def test_empty_predictions_give_zeros(coco_gt, capsys):
    out = evaluate_coco(coco_gt, [], ["cat", "dog"])
    for key in KEYS:
        assert out[key] == 0.0, key
    assert out["per_class"] == {"cat": 0.0, "dog": 0.0}
    assert capsys.readouterr().out == ""


def test_undefined_metrics_are_nan(coco_gt, coco_gt_dict):
    # only image 1 (a small cat and a medium dog): no large objects -> APl undefined -> NaN (pycocotools: -1)
    preds = [p for p in perfect(coco_gt_dict) if p["image_id"] == 1]
    out = evaluate_coco(coco_gt, preds, ["cat", "dog"], image_ids=[1])
    assert out["AP"] == pytest.approx(1.0)
    assert out["APs"] == pytest.approx(1.0) and out["APm"] == pytest.approx(1.0)
    assert math.isnan(out["APl"])


def test_results_are_not_mutated_and_summary_is_logged(coco_gt, coco_gt_dict, caplog):
    preds = perfect(coco_gt_dict)
    before = copy.deepcopy(preds)
    with caplog.at_level(logging.INFO, logger="frcnn.evaluation.coco"):
        evaluate_coco(coco_gt, preds)
    assert preds == before  # COCO.loadRes would have added "area", "id", "iscrowd", "segmentation"
    assert "Average Precision" in caplog.text


def test_bad_ids_raise(coco_gt, coco_gt_dict):
    with pytest.raises(ValueError, match="image ids"):
        evaluate_coco(coco_gt, [{"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="category ids"):
        evaluate_coco(coco_gt, [{"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="not categories"):
        evaluate_coco(coco_gt, [], ["cat", "horse"])
