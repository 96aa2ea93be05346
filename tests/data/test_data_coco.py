"""COCO loader: category ids 1, 3, 7 -> labels 1..3 and back, xywh -> xyxy, crowd regions, keep_empty."""
import logging
import re

import torch

from frcnn.data.coco import COCODataset

from helpers import data as tiny


def _dataset(root, classes=None, **kw):
    kw.setdefault("train", False)
    return COCODataset(root / "annotations" / "ann.json", root / "images", classes, **kw)


def test_labels_are_contiguous_and_round_trip(coco_root):
    ds = _dataset(coco_root)
    assert ds.format == "coco"
    assert ds.classes == ["a", "b", "c"]  # sorted by category id 1, 3, 7
    assert ds.label_to_category_id == {1: 1, 2: 3, 3: 7}
    assert ds.category_id_to_label == {1: 1, 3: 2, 7: 3}
    for label, cat_id in ds.label_to_category_id.items():
        assert ds.category_id_to_label[cat_id] == label
        assert ds.coco.loadCats(cat_id)[0]["name"] == ds.classes[label - 1]


def test_boxes_xyxy_and_crowd_in_ground_truth(coco_root):
    ds = _dataset(coco_root)
    assert ds.image_ids == [10, 20, 30]
    gt = ds.ground_truth(0)
    assert gt["image_id"] == 10
    assert torch.equal(gt["boxes"], torch.tensor([[10, 20, 40, 60], [0, 0, 100, 80], [5.5, 6.5, 15.5, 16.5]]))
    assert gt["labels"].tolist() == [3, 1, 2]
    assert gt["difficult"].tolist() == [False, True, False]  # the crowd region is flagged
    assert ds.ground_truth(1)["boxes"].tolist() == [[1, 2, 4, 6]]
    assert ds.ground_truth(2)["boxes"].shape == (0, 4)
    assert ds.image_size(1) == (90, 60) and ds.aspect_groups().tolist() == [0, 1, 0]
    image, target = ds[1]
    assert image.shape == (3, 90, 60) and target["image_id"] == 20 and target["orig_size"] == (90, 60)


def test_crowd_left_out_of_training_targets(coco_root):
    ds = _dataset(coco_root, train=True, hflip_prob=0.0)
    _, target = ds[0]
    assert target["labels"].tolist() == [3, 2]
    assert torch.equal(target["boxes"], torch.tensor([[10, 20, 40, 60], [5.5, 6.5, 15.5, 16.5]]))


def test_keep_empty(coco_root):
    assert _dataset(coco_root, train=True, keep_empty=False).image_ids == [10, 20]
    assert _dataset(coco_root, train=True, keep_empty=True).image_ids == [10, 20, 30]
    assert _dataset(coco_root, train=False, keep_empty=False).image_ids == [10, 20, 30]  # evaluation keeps all


def test_classes_from_config_pick_and_order_categories(coco_root, caplog):
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = _dataset(coco_root, ["c", "a"])
    assert re.search(r"skipped 1 annotations of categories not in dataset.classes.*ann\.json", caplog.text)
    assert ds.label_to_category_id == {1: 7, 2: 1}
    assert ds.ground_truth(0)["labels"].tolist() == [1, 2]  # the 'b' box is gone


def test_pycocotools_prints_are_silenced(coco_root, capsys):
    _dataset(coco_root).coco.getAnnIds()
    assert capsys.readouterr().out == ""


def test_difficult_field_honoured(tmp_path):
    data = tiny.coco_data()
    data["annotations"][0]["difficult"] = 1
    root = tmp_path / "d"
    tiny.write_coco(root, data)
    ds = _dataset(root, train=True, hflip_prob=0.0)
    assert ds[0][1]["labels"].tolist() == [2]  # the difficult and the crowd box are out
    assert ds.ground_truth(0)["difficult"].tolist() == [True, True, False]
