"""to_coco_results: the detections.json entries for COCO- and VOC-format datasets."""
import numpy as np
import pytest
import torch

from frcnn.evaluation import to_coco_results


def test_coco_format_ids_and_xywh(fake_coco_dataset, coco_gt):
    ds = fake_coco_dataset(coco_gt, ["cat", "dog"], {1: 3, 2: 10}, image_ids=[7, 1])
    dets = [
        {"boxes": torch.tensor([[10.5, 20.25, 30.75, 60.5], [0.0, 0.0, 4.0, 2.0]]),
         "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.5, 0.25])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)},
    ]
    assert to_coco_results(ds, dets) == [
        {"image_id": 7, "category_id": 10, "bbox": [10.5, 20.25, 20.25, 40.25], "score": 0.5},
        {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 4.0, 2.0], "score": 0.25},
    ]


def test_voc_format_ids_names_and_rounding(fake_voc_dataset):
    ds = fake_voc_dataset(["aeroplane", "bicycle", "bird"], ["000005", "000007"], [{}, {}])
    dets = [
        {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)},
        {"boxes": np.array([[1.004, 2.0, 11.0, 22.123]]), "labels": np.array([3]),
         "scores": np.array([0.123456789])},
    ]
    (entry,) = to_coco_results(ds, dets)
    assert entry["image_id"] == "000007"
    assert entry["category_id"] == 3 and entry["category"] == "bird"
    # x = 1.004 -> 1.0, w = 11 - 1.004 = 9.996 -> 10.0, h = 20.123 -> 20.12; score -> 5 decimals
    assert entry["bbox"] == pytest.approx([1.0, 2.0, 10.0, 20.12], abs=1e-9)
    assert entry["score"] == pytest.approx(0.12346, abs=1e-12)
    assert all(type(v) is float for v in entry["bbox"]) and type(entry["score"]) is float
    assert type(entry["category_id"]) is int


def test_bf16_tensors_and_bad_labels(fake_voc_dataset):
    ds = fake_voc_dataset(["a"], ["x"], [{}])
    dets = [{"boxes": torch.tensor([[0.0, 0.0, 8.0, 4.0]], dtype=torch.bfloat16),
             "labels": torch.tensor([1]), "scores": torch.tensor([0.5], dtype=torch.bfloat16)}]
    assert to_coco_results(ds, dets)[0]["bbox"] == [0.0, 0.0, 8.0, 4.0]
    dets[0]["labels"] = torch.tensor([0])  # background is not a detection label
    with pytest.raises(ValueError, match="labels must lie in 1..1"):
        to_coco_results(ds, dets)
    with pytest.raises(ValueError, match="dataset of 1 images"):
        to_coco_results(ds, dets * 2)
