"""The engine's entry points through composed configs: dataset=shapes (both formats), voc_custom, coco_custom."""
import itertools
import logging

import pytest
import torch
from omegaconf.errors import MissingMandatoryValue

from frcnn.data import build_dataset, build_test_loader, build_train_loader, resolve_classes
from frcnn.data.shapes import MARKER

from helpers import compose_config
from helpers import data as tiny

TARGET_KEYS = {"boxes", "labels", "difficult", "image_id", "index", "orig_size"}
TRAINING_KEYS = {"sample_key", "batch_sizes"}  # the training loader's: each image's key, the global batch's sizes


def _check_batch(images, targets, batch_size, num_classes, id_type, training=False):
    assert isinstance(images, list) and isinstance(targets, list)
    assert len(images) == len(targets) == batch_size
    for image, target in zip(images, targets):
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
        assert set(target) == TARGET_KEYS | (TRAINING_KEYS if training else set())
        if training:
            assert target["sample_key"].dtype == torch.int64 and target["batch_sizes"].shape == (batch_size, 2)
        assert target["orig_size"] == tuple(image.shape[1:])
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert labels.dtype == torch.int64 and labels.shape == (len(boxes),)
        assert ((labels >= 1) & (labels <= num_classes)).all()
        h, w = target["orig_size"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert isinstance(target["image_id"], id_type) and isinstance(target["index"], int)


@pytest.mark.parametrize("fmt,id_type", [("voc", str), ("coco", int)])
def test_shapes_through_the_config(tmp_path, fmt, id_type):
    root = tmp_path / "shapes"
    cfg = compose_config(["dataset=shapes", f"dataset.format={fmt}", "loader.num_workers=0"]
                  + tiny.shapes_overrides(root))
    assert resolve_classes(cfg.dataset) == ["circle", "square", "triangle"]
    train = build_dataset(cfg.dataset, "train", train=True, loader_cfg=cfg.loader)  # generates on first use
    assert (root / MARKER).is_file() and train.format == fmt and len(train) == 8
    test = build_dataset(cfg.dataset, "test", train=False, loader_cfg=cfg.loader)
    assert len(test) == 4 and test.classes == train.classes
    if fmt == "coco":
        assert test.label_to_category_id == {1: 1, 2: 2, 3: 3} and test.coco is not None
    loader = build_train_loader(train, batch_size=2, loader_cfg=cfg.loader, seed=0)
    for images, targets in itertools.islice(iter(loader), 6):  # more batches than one pass: infinite
        _check_batch(images, targets, 2, 3, id_type, training=True)
        assert len({int(im.shape[1] > im.shape[2]) for im in images}) == 1
    seen = []
    for images, targets in build_test_loader(test, batch_size=3, loader_cfg=cfg.loader):
        _check_batch(images, targets, len(images), 3, id_type)
        seen += [t["index"] for t in targets]
    assert seen == list(range(len(test)))
    gt = test.ground_truth(0)
    assert set(gt) == {"image_id", "boxes", "labels", "difficult"} and gt["image_id"] == test.image_ids[0]


def test_train_loader_with_workers(shapes_root):
    cfg = compose_config(["dataset=shapes", "loader.num_workers=2", "loader.persistent_workers=true",
                   "loader.color_jitter=0.2"] + tiny.shapes_overrides(shapes_root))
    train = build_dataset(cfg.dataset, "train", train=True, loader_cfg=cfg.loader)
    loader = build_train_loader(train, batch_size=2, loader_cfg=cfg.loader, seed=1)
    assert loader.num_workers == 2 and loader.persistent_workers
    first = [t["index"] for _, targets in itertools.islice(iter(loader), 3) for t in targets]
    again = [t["index"] for _, targets in itertools.islice(iter(loader), 3) for t in targets]
    assert first == again  # each pass restarts the seeded sequence
    for images, targets in itertools.islice(iter(loader), 2):
        _check_batch(images, targets, 2, 3, str, training=True)
    del loader


def test_voc_custom_collects_and_logs_classes(voc_root, caplog):
    cfg = compose_config(["dataset=voc_custom", f"dataset.root={voc_root}", "dataset.sets.train=[VOC2007/trainval]",
                   "dataset.sets.val=[VOC2007/test]", "dataset.sets.test=[VOC2007/test]"])
    assert cfg.dataset.metric == "voc_area"
    with caplog.at_level(logging.INFO, logger="frcnn"):
        assert resolve_classes(cfg.dataset) == ["cat", "dog", "person"]
    assert "3 classes collected from the annotations" in caplog.text and "['cat', 'dog', 'person']" in caplog.text
    ds = build_dataset(cfg.dataset, "train", train=True, loader_cfg=cfg.loader)
    assert ds.classes == ["cat", "dog", "person"] and len(ds) == 3


def test_voc_custom_needs_a_root():
    cfg = compose_config(["dataset=voc_custom"])
    with pytest.raises(MissingMandatoryValue, match="dataset.root"):
        build_dataset(cfg.dataset, "train", train=True)


def test_coco_custom(coco_root):
    cfg = compose_config(["dataset=coco_custom", f"dataset.root={coco_root}",
                          "dataset.ann_file.train=annotations/ann.json", "dataset.ann_file.test=annotations/ann.json",
                          "dataset.ann_file.val=annotations/ann.json"])
    assert resolve_classes(cfg.dataset) == ["a", "b", "c"]
    ds = build_dataset(cfg.dataset, "test", train=False)
    assert ds.format == "coco" and ds.label_to_category_id == {1: 1, 2: 3, 3: 7}


def test_voc07_and_coco_configs_point_at_the_official_layout():
    voc = compose_config(["dataset=voc07"]).dataset
    assert voc.root == "data/VOCdevkit" and list(voc.sets.train) == ["VOC2007/trainval"]
    assert list(voc.sets.test) == ["VOC2007/test"] and voc.metric == "voc07" and len(voc.classes) == 20
    voc12 = compose_config(["dataset=voc0712"]).dataset
    assert list(voc12.sets.train) == ["VOC2007/trainval", "VOC2012/trainval"] and voc12.metric == "voc07"
    coco = compose_config(["dataset=coco"]).dataset
    assert coco.ann_file.train == "annotations/instances_train2017.json" and coco.img_dir.test == "val2017"
    assert list(coco.classes) == [] and coco.metric == "coco" and coco.keep_empty is False
    with pytest.raises(Exception, match="split file not found: data/VOCdevkit/VOC2007/ImageSets/Main/test.txt"):
        build_dataset(voc, "test", train=False)
