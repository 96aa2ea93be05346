"""evaluate_dataset dispatch, the per-class table and atomic json writing."""
import json
import os

import numpy as np
import pytest
import torch

from frcnn.evaluation import evaluate_dataset, format_table, write_json


def det(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.tensor(scores)}


def test_voc_metrics_on_voc_dataset(fake_voc_dataset):
    ds = fake_voc_dataset(["a", "b"], ["000001", "000002"], [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [1, 1]},
        {"boxes": [[5, 5, 50, 50]], "labels": [2]},
    ])
    dets = [det([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [1, 1, 1], [0.9, 0.8, 0.7]),
            det([], [], [])]
    # class a: TP, FP, TP -> 07: 28/33, area: 5/6; class b: no detections -> 0
    voc07 = evaluate_dataset(ds, dets, "voc07")
    assert voc07["per_class"] == {"a": pytest.approx(28 / 33), "b": 0.0}
    assert voc07["mAP"] == pytest.approx(14 / 33)
    area = evaluate_dataset(ds, dets, "voc_area")
    assert area["per_class"]["a"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="COCO-format"):
        evaluate_dataset(ds, dets, "coco")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_dataset(ds, dets, "voc12")


def test_coco_and_voc_metrics_on_coco_dataset(fake_coco_dataset, coco_gt, coco_gt_dict):
    # labels 1 -> category 10 (dog), 2 -> category 3 (cat): the mapping must go through label_to_category_id
    ds = fake_coco_dataset(coco_gt, ["dog", "cat"], {1: 10, 2: 3}, image_ids=[1, 7])
    dets = []
    for image_id in ds.image_ids:
        gt = ds.ground_truth(ds.image_ids.index(image_id))
        boxes = gt["boxes"].copy()
        shift = np.where(gt["labels"] == 1, 0.19, 0.0) * (boxes[:, 2] - boxes[:, 0])  # dogs at IoU .68
        boxes[:, [0, 2]] += shift[:, None]
        dets.append(det(boxes.tolist(), gt["labels"].tolist(), [0.9] * len(boxes)))
    coco = evaluate_dataset(ds, dets, "coco")
    assert coco["per_class"] == {"dog": pytest.approx(0.4), "cat": pytest.approx(1.0)}
    assert coco["AP"] == pytest.approx(0.7) and coco["AP50"] == pytest.approx(1.0)
    voc = evaluate_dataset(ds, dets, "voc07")
    assert voc == {"mAP": pytest.approx(1.0), "per_class": {"dog": pytest.approx(1.0), "cat": pytest.approx(1.0)}}


def test_format_table():
    metrics = {"AP": 0.4567, "AP50": 1.0, "AP75": float("nan"), "APs": 0.0, "APm": 0.5, "APl": 0.25,
               "per_class": {"cat": 0.91234, "hippopotamus": float("nan")}}
    table = format_table(metrics, ["cat", "hippopotamus"])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned columns
    rows = {line.split()[0]: line.split()[-1] for line in lines if not line.startswith("-")}
    assert rows["cat"] == "91.2"
    assert rows["hippopotamus"] == "n/a"
    assert rows["AP"] == "45.7" and rows["AP50"] == "100.0" and rows["AP75"] == "n/a"
    assert [line.split()[0] for line in lines[-6:]] == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    voc = format_table({"mAP": 0.5, "per_class": {"a": 0.5}}, ["a"])
    assert voc.splitlines()[-1].split() == ["mAP", "50.0"]


def test_write_json_atomic_and_strict(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    write_json(path, {"mAP": np.float32(0.5), "per_class": {"a": float("nan"), "b": np.float64(0.25)},
                      "ids": np.arange(2)})
    assert json.loads(path.read_text()) == {"mAP": 0.5, "per_class": {"a": None, "b": 0.25}, "ids": [0, 1]}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    # the failed write left the previous file intact and no temporary file behind
    assert json.loads(path.read_text())["mAP"] == 0.5
    assert os.listdir(path.parent) == ["metrics.json"]
    write_json(path, [1, 2], indent=None)
    assert path.read_text() == "[1, 2]\n"
