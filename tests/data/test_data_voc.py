"""VOC loader on a hand-written dataset: exact boxes (the minus-1 rule), labels, difficult flags, parsing."""
import numpy as np
import pytest
import torch

from frcnn.data.voc import VOCDataset, collect_voc_classes, parse_voc_xml

from helpers import data as tiny


def _dataset(root, tiny, **kw):
    kw.setdefault("train", False)
    return VOCDataset(root, ["VOC2007/trainval"], tiny.VOC_CLASSES, **kw)


def test_ground_truth_exact_boxes_labels_difficult(voc_root):
    ds = _dataset(voc_root, tiny)
    assert ds.format == "voc" and ds.classes == ["cat", "dog", "person"] and len(ds) == 3
    assert ds.image_ids == ["000001", "000002", "000003"]
    for i, image_id in enumerate(ds.image_ids):
        boxes, labels, difficult = tiny.VOC_EXPECTED[image_id]
        gt = ds.ground_truth(i)
        assert gt["image_id"] == image_id
        assert gt["boxes"].dtype == torch.float32 and gt["boxes"].shape == (len(labels), 4)
        assert torch.equal(gt["boxes"], torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        assert gt["labels"].dtype == torch.int64 and gt["labels"].tolist() == labels
        assert gt["difficult"].dtype == torch.bool and gt["difficult"].tolist() == difficult
    assert ds.image_size(0) == (80, 100) and ds.image_size(1) == (90, 60)
    assert ds.aspect_groups().tolist() == [0, 1, 0]


def test_eval_item_keeps_every_object(voc_root):
    ds = _dataset(voc_root, tiny)
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 80, 100)
    assert target["orig_size"] == (80, 100) and target["index"] == 0 and target["image_id"] == "000001"
    assert torch.equal(target["boxes"], torch.tensor([[0, 0, 50, 40], [9, 19, 30, 60], [47.5, 9, 100, 80]]))
    assert target["labels"].tolist() == [2, 3, 1] and target["difficult"].tolist() == [False, True, False]


def test_training_targets_leave_out_difficult_unless_asked(voc_root):
    ds = _dataset(voc_root, tiny, train=True, hflip_prob=0.0)
    _, target = ds[0]
    assert target["labels"].tolist() == [2, 1]
    assert torch.equal(target["boxes"], torch.tensor([[0, 0, 50, 40], [47.5, 9, 100, 80]]))
    assert len(ds.ground_truth(0)["labels"]) == 3  # evaluation still sees the difficult one
    ds = _dataset(voc_root, tiny, train=True, hflip_prob=0.0, use_difficult=True)
    assert ds[0][1]["labels"].tolist() == [2, 3, 1]


def test_keep_empty_false_drops_images_without_training_objects(voc_root):
    ds = _dataset(voc_root, tiny, train=True, keep_empty=False)
    assert ds.image_ids == ["000001", "000002"]
    assert _dataset(voc_root, tiny, train=False, keep_empty=False).image_ids == ds.image_ids + ["000003"]
    empty_item = _dataset(voc_root, tiny, train=True)[2][1]
    assert empty_item["boxes"].shape == (0, 4) and empty_item["labels"].shape == (0,)


def test_parse_reads_truncated_pose_and_ignores_parts(voc_root):
    ann = parse_voc_xml(voc_root / "VOC2007" / "Annotations" / "000001.xml")
    assert (ann.width, ann.height) == (100, 80)
    assert [o.name for o in ann.objects] == ["dog", "person", "cat"]  # the <part>s are not objects
    assert [o.truncated for o in ann.objects] == [True, False, False]
    assert [o.pose for o in ann.objects] == ["Left", "Frontal", ""]
    assert ann.objects[2].box == (48.5, 10.0, 100.0, 80.0)


def test_several_entries_and_bare_split(tmp_path):
    root = tmp_path / "devkit"
    tiny.write_voc(root / "A", {"a1": (40, 30, [dict(name="dog", box=(2, 3, 10, 12))])}, {"trainval": ["a1"]})
    tiny.write_voc(root / "B", {"b1": (30, 40, [dict(name="cat", box=(1, 1, 30, 40))])}, {"trainval": ["b1"]})
    ds = VOCDataset(root, ["A/trainval", "B/trainval"], ["cat", "dog"], train=False)
    assert ds.image_ids == ["a1", "b1"]
    assert ds.ground_truth(0)["boxes"].tolist() == [[1, 2, 10, 12]]
    assert ds.ground_truth(1)["boxes"].tolist() == [[0, 0, 30, 40]]  # the whole image
    bare = VOCDataset(root / "A", ["trainval"], ["cat", "dog"], train=False)  # "SPLIT" = files under root
    assert bare.image_ids == ["a1"] and bare.ground_truth(0)["labels"].tolist() == [2]


def test_collect_classes_sorted(voc_root):
    assert collect_voc_classes(voc_root, ["VOC2007/trainval"]) == ["cat", "dog", "person"]


def test_images_decode_to_the_written_pixels(voc_root):
    from PIL import Image

    ds = VOCDataset(voc_root, ["VOC2007/test"], ["cat", "dog", "person"], train=False)
    image, _ = ds[0]
    expected = np.array(Image.open(voc_root / "VOC2007" / "JPEGImages" / "000002.jpg").convert("RGB"))
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1))
    with pytest.raises(IndexError):
        ds[1]
