"""Bad dataset input: non-finite and inverted boxes, missing images, COCO split files that disagree on their
categories, data warnings through the ``frcnn`` loggers, DataErrors from DataLoader workers, and the image
pre-flight check (DetectionDataset.check_images)."""
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from frcnn.data.build import build_dataset, resolve_classes
from frcnn.data.coco import COCODataset
from frcnn.data.errors import DataError
from frcnn.data.loader import collate
from frcnn.data.voc import VOCDataset

CLASSES = ["cat", "dog"]


# ------------------------------------------------------------------------------------------------ tiny data
def write_jpeg(path: Path, width: int = 20, height: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_voc(base: Path, boxes_by_id: dict, size=(20, 20), write_images=True) -> Path:
    """boxes_by_id: image id -> [(name, (xmin, ymin, xmax, ymax) as written)]; one split "trainval"."""
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    width, height = size
    for image_id, objects in boxes_by_id.items():
        xml = "".join(f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for name, b in objects)
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{width}</width><height>{height}</height></size>{xml}</annotation>")
        if write_images:
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", width, height)
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in boxes_by_id))
    return base


def coco_dict(bboxes, categories=((1, "cat"), (2, "dog")), images=("a.jpg",)) -> dict:
    """Images 1..N of 20x20; bboxes: [(image id, category id, bbox)]."""
    return {
        "images": [{"id": k + 1, "file_name": f, "width": 20, "height": 20} for k, f in enumerate(images)],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0}
                        for k, (i, c, b) in enumerate(bboxes)],
        "categories": [{"id": i, "name": n} for i, n in categories],
    }


def write_coco(root: Path, data: dict, name: str = "ann.json", text: str | None = None) -> Path:
    path = root / "annotations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else json.dumps(data))
    for img in data["images"]:
        if not (root / "images" / img["file_name"]).exists():
            write_jpeg(root / "images" / img["file_name"])
    return path


def coco_cfg(root: Path, train="train.json", val="val.json", test="test.json", classes=()):
    return OmegaConf.create(dict(
        name="coco_custom", format="coco", root=str(root), classes=list(classes),
        ann_file=dict(train=f"annotations/{train}", val=f"annotations/{val}", test=f"annotations/{test}"),
        img_dir=dict(train="images", val="images", test="images"), use_difficult=False, keep_empty=True))


# ------------------------------------------------------------------------------- 1. non-finite coordinates
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_voc_non_finite_coordinate_is_an_error_naming_file_and_object(tmp_path, value):
    base = write_voc(tmp_path / "VOC", {"000001": [("cat", (1, 1, 10, 10))],
                                        "000002": [("cat", (2, 2, 8, 8)), ("dog", (1, 1, value, 10))]})
    with pytest.raises(DataError) as err:
        VOCDataset(base, ["trainval"], CLASSES, train=True)
    message = str(err.value)
    assert "000002.xml" in message and "object 'dog'" in message and "non-finite" in message
    assert f"<xmax>{value}</xmax>" in message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_coco_non_finite_bbox_is_an_error_naming_file_and_annotation(tmp_path, literal):
    data = coco_dict([(1, 1, [1, 1, 5, 5]), (1, 2, [2, 2, 999.0, 5])])
    text = json.dumps(data).replace("999.0", literal)  # json.load reads all of these as floats
    path = write_coco(tmp_path, data, text=text)
    with pytest.raises(DataError, match=r"ann\.json: annotation 2 \(image 1\) has bbox .*non-finite"):
        COCODataset(path, tmp_path / "images", train=True)


def test_coco_bbox_whose_right_edge_overflows_float32_is_an_error(tmp_path):
    path = write_coco(tmp_path, coco_dict([(1, 1, [3e38, 1, 3e38, 5])]))  # x + w beyond float32
    with pytest.raises(DataError, match=r"annotation 1 \(image 1\) has bbox .*non-finite"):
        COCODataset(path, tmp_path / "images", train=False)


# ---------------------------------------------------------------------------------------- 2. inverted boxes
def test_voc_inverted_boxes_are_counted_apart_from_zero_area(tmp_path, caplog):
    base = write_voc(tmp_path / "VOC", {
        "000001": [("cat", (1, 1, 10, 10)), ("dog", (9, 2, 3, 8))],  # xmin > xmax
        "000002": [("cat", (2, 9, 8, 4)), ("dog", (30, 1, 40, 10))],  # ymin > ymax; outside -> zero area
    })
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    inverted = [m for m in caplog.messages if "inverted boxes" in m]
    zero = [m for m in caplog.messages if "boxes of zero area" in m]
    assert len(inverted) == 1 and re.search(
        r"dropped 2 inverted boxes \(xmin > xmax or ymin > ymax\) in 2 files \(first: .*000001\.xml\)", inverted[0])
    assert len(zero) == 1 and re.search(r"dropped 1 boxes of zero area in 1 file \(first: .*000002\.xml\)", zero[0])
    assert [len(ds.ground_truth(i)["boxes"]) for i in range(2)] == [1, 0]


def test_coco_negative_width_or_height_is_counted_as_inverted(tmp_path, caplog):
    path = write_coco(tmp_path, coco_dict([(1, 1, [10, 2, -4, 5]), (1, 2, [2, 10, 5, -3]), (1, 1, [3, 3, 0, 5]),
                                           (1, 2, [1, 1, 5, 5])]))
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = COCODataset(path, tmp_path / "images", train=False)
    assert re.search(r"dropped 2 inverted boxes \(negative bbox width or height\) in 1 file \(first: .*ann\.json "
                     r"\(image a\.jpg\)\)", caplog.text)
    assert re.search(r"dropped 1 boxes of zero area in 1 file", caplog.text)
    assert ds.ground_truth(0)["boxes"].tolist() == [[1, 1, 6, 6]]


# ----------------------------------------------------------------------------------------- 3. missing images
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_voc_missing_images_are_an_error_naming_count_and_first_paths(tmp_path, train):
    ids = [f"{k:06d}" for k in range(1, 10)]
    base = write_voc(tmp_path / "VOC", {i: [("cat", (1, 1, 10, 10))] for i in ids})
    for i in ids[1:8]:  # 7 of 9 missing
        (base / "JPEGImages" / f"{i}.jpg").unlink()
    with pytest.raises(DataError) as err:
        VOCDataset(base, ["trainval"], CLASSES, train=train)
    message = str(err.value)
    assert re.search(r"7 of 9 images listed in \['trainval'\] under .* are missing", message)
    listed = re.findall(r"JPEGImages/(\d+)\.jpg", message)
    assert listed == ids[1:6] and "and 2 more" in message and "remove their ids from the split" in message


def test_coco_missing_image_is_an_error(tmp_path):
    path = write_coco(tmp_path, coco_dict([(1, 1, [1, 1, 5, 5])], images=("a.jpg", "b.jpg")))
    (tmp_path / "images" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 2 images of .*ann\.json are missing under .*images: .*b\.jpg"):
        COCODataset(path, tmp_path / "images", train=True)


# ------------------------------------------------------------------------------------ 4. COCO split classes
def test_coco_classes_come_from_the_train_file_and_split_files_must_agree(tmp_path):
    write_coco(tmp_path, coco_dict([(1, 1, [1, 1, 5, 5]), (1, 2, [2, 2, 5, 5])]), "train.json")
    write_coco(tmp_path, coco_dict([(1, 1, [1, 1, 5, 5])], categories=[(1, "cat")]), "test.json")
    cfg = coco_cfg(tmp_path, val="test.json")
    with pytest.raises(DataError) as err:
        resolve_classes(cfg)
    message = str(err.value)
    assert "train.json has {1: 'cat', 2: 'dog'}" in message and "test.json has {1: 'cat'}" in message
    assert "Set dataset.classes to choose the classes and their order" in message


def test_coco_split_files_with_the_same_names_under_other_ids_disagree(tmp_path):
    write_coco(tmp_path, coco_dict([(1, 1, [1, 1, 5, 5])]), "train.json")
    write_coco(tmp_path, coco_dict([(1, 1, [1, 1, 5, 5])], categories=[(1, "cat"), (3, "dog")]), "val.json")
    with pytest.raises(DataError, match=r"val\.json has \{1: 'cat', 3: 'dog'\}"):
        resolve_classes(coco_cfg(tmp_path, test="val.json"))


def test_coco_classes_from_agreeing_files_then_datasets_build(tmp_path, caplog):
    data = coco_dict([(1, 2, [1, 1, 5, 5])], categories=[(5, "dog"), (2, "cat")])
    write_coco(tmp_path, data, "train.json")
    write_coco(tmp_path, data, "test.json")
    cfg = coco_cfg(tmp_path, val="test.json")  # as the trainer does: resolve, then write them into the config
    cfg.classes = resolve_classes(cfg)
    assert list(cfg.classes) == ["cat", "dog"]
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = build_dataset(cfg, "train", train=True)
    assert ds.label_to_category_id == {1: 2, 2: 5} and "skipped" not in caplog.text


def test_coco_duplicate_category_names_are_refused_when_resolving(tmp_path):
    write_coco(tmp_path, coco_dict([], categories=[(1, "cat"), (2, "cat")]), "train.json")
    with pytest.raises(DataError, match=r"train\.json name \['cat'\] more than once"):
        resolve_classes(coco_cfg(tmp_path))


# ------------------------------------------------------------------------------------------- 5. logging
def test_counted_warnings_go_to_the_frcnn_loggers_not_warnings(tmp_path, caplog):
    base = write_voc(tmp_path / "VOC", {"000001": [("cat", (-4, 1, 25, 10))]})
    with warnings.catch_warnings(record=True) as raised, caplog.at_level(logging.WARNING, logger="frcnn"):
        warnings.simplefilter("always")
        VOCDataset(base, ["trainval"], CLASSES, train=False)
    assert [str(w.message) for w in raised] == []
    records = [r for r in caplog.records if "clipped 1 boxes outside their image" in r.getMessage()]
    assert len(records) == 1 and records[0].name.startswith("frcnn.") and records[0].levelno == logging.WARNING


def test_size_mismatch_is_logged_once_per_image(tmp_path, caplog):
    base = write_voc(tmp_path / "VOC", {"000001": [("cat", (1, 1, 20, 20))], "000002": [("dog", (1, 1, 5, 5))]})
    write_jpeg(base / "JPEGImages" / "000001.jpg", 10, 12)
    ds = VOCDataset(base, ["trainval"], CLASSES, train=True)
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        for _ in range(3):
            ds[0], ds[1]
    mismatch = [r for r in caplog.records if "000001.jpg is 10x12 but its annotation says 20x20" in r.getMessage()]
    assert len(mismatch) == 1 and mismatch[0].name.startswith("frcnn.")


def test_collected_voc_classes_are_logged_not_printed(tmp_path, caplog, capsys):
    write_voc(tmp_path / "VOC2007", {"000001": [("dog", (1, 1, 10, 10)), ("cat", (2, 2, 5, 5))]})
    cfg = OmegaConf.create(dict(name="voc_custom", format="voc", root=str(tmp_path), classes=[],
                                sets=dict(train=["VOC2007/trainval"], val=[], test=[])))
    with caplog.at_level(logging.INFO, logger="frcnn"):
        assert resolve_classes(cfg) == ["cat", "dog"]
    assert capsys.readouterr().out == ""
    assert any(r.name.startswith("frcnn.") and "2 classes collected" in r.getMessage() for r in caplog.records)


def test_shapes_generation_logs_the_absolute_folder(tmp_path, monkeypatch, caplog, capsys):
    from frcnn.data.shapes import ensure_shapes

    monkeypatch.chdir(tmp_path)
    shapes = dict(num_train=1, num_val=1, num_test=1, max_objects=1, image_min_side=64, image_max_side=64)
    cfg = OmegaConf.create(dict(root="rel/shapes", shapes=shapes, classes=[]))
    with caplog.at_level(logging.INFO, logger="frcnn"):
        ensure_shapes(cfg)
    assert capsys.readouterr().out == ""
    assert f"generating the shapes dataset (3 images) into {tmp_path / 'rel' / 'shapes'}" in caplog.text


# --------------------------------------------------------------------------------- 6. errors from workers
def test_data_error_from_a_worker_carries_the_clean_message(tmp_path, monkeypatch):
    base = write_voc(tmp_path / "VOC", {"000001": [("cat", (1, 1, 10, 10))], "000002": [("dog", (1, 1, 5, 5))]})
    bad = base / "JPEGImages" / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    with pytest.raises(DataError) as here:
        ds[1]
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=collate)
    batches = iter(loader)
    try:
        with pytest.raises(DataError) as err:
            for _ in batches:
                pass
    finally:  # after a worker error torch waits MP_STATUS_CHECK_INTERVAL (5 s) for the worker to join
        monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1, raising=False)
        getattr(batches, "_shutdown_workers", lambda: None)()
    assert str(err.value) == str(here.value)
    assert str(err.value).startswith(f"cannot decode image {bad}") and "\n" not in str(err.value)
    assert "Traceback" in err.value.worker_traceback and "worker process" in err.value.worker_traceback


def test_data_error_raised_here_keeps_its_message():
    error = DataError("Caught nothing: a message that merely starts like torch's")
    assert str(error) == "Caught nothing: a message that merely starts like torch's"
    assert error.worker_traceback is None


# ----------------------------------------------------------------------------------- 7. pre-flight check
def test_check_images_lists_every_unreadable_image_in_one_error(tmp_path):
    ids = [f"{k:06d}" for k in range(1, 5)]
    base = write_voc(tmp_path / "VOC", {i: [("cat", (1, 1, 10, 10))] for i in ids})
    ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    ds.check_images()  # all fine: no error
    (base / "JPEGImages" / "000002.jpg").write_bytes(b"not an image at all")
    (base / "JPEGImages" / "000003.jpg").write_bytes(b"")
    (base / "JPEGImages" / "000004.jpg").unlink()
    with pytest.raises(DataError) as err:
        ds.check_images()
    message = str(err.value)
    assert message.startswith("dataset 'voc': 3 of 4 images cannot be read: ")
    assert re.search(r"cannot read the size of image .*000002\.jpg: UnidentifiedImageError", message)
    assert re.search(r"cannot read the size of image .*000003\.jpg", message)
    assert re.search(r"image not found: .*000004\.jpg", message) and "000001.jpg" not in message


def test_check_images_reports_size_mismatches_once(tmp_path, caplog):
    base = write_voc(tmp_path / "VOC", {"000001": [("cat", (1, 1, 10, 10))], "000002": [("dog", (1, 1, 5, 5))],
                                        "000003": [("dog", (1, 1, 5, 5))]})
    write_jpeg(base / "JPEGImages" / "000002.jpg", 16, 12)
    write_jpeg(base / "JPEGImages" / "000003.jpg", 16, 12)
    ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds.check_images()
        ds[1], ds[2]  # already reported: not again at load
    assert len(caplog.records) == 1
    assert re.search(r"dataset 'voc': 2 of 3 images are not the size their annotation says \(first: "
                     r".*000002\.jpg is 16x12, its annotation says 20x20\)", caplog.messages[0])
