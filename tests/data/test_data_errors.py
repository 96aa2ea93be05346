"""Bad input: every problem gives a message naming the file (an error if unusable, a counted warning if skipped)."""
import json
import logging
import re

import pytest
import torch

from frcnn.data import DataError
from frcnn.data.build import build_test_loader
from frcnn.data.coco import COCODataset
from frcnn.data.voc import VOCDataset, parse_voc_xml

from helpers import data as tiny

CLASSES = ["cat", "dog", "person"]

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><size><width>10</width><height>10</height></size>
<object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


def _voc(tmp_path, tiny, images, split_ids=None, write_images=True):
    base = tmp_path / "VOC"
    tiny.write_voc(base, images, {"trainval": split_ids or list(images)}, write_images=write_images)
    return base


def _one(name="dog", box=(1, 1, 10, 10)):
    return (20, 20, [dict(name=name, box=box)])


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE], ids=["billion_laughs", "external_entity"])
def test_entity_declarations_are_refused(tmp_path, payload):
    base = _voc(tmp_path, tiny, {"000001": _one()})
    xml = base / "Annotations" / "000001.xml"
    xml.write_text(payload)
    with pytest.raises(DataError, match=r"refusing to parse .*000001\.xml.*DOCTYPE"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)
    with pytest.raises(DataError, match=re.escape(str(xml))):
        parse_voc_xml(xml)


def test_malformed_xml_names_the_file(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one(), "000002": _one()})
    (base / "Annotations" / "000002.xml").write_text("<annotation><object><name>dog</name></annotation>")
    with pytest.raises(DataError, match=r"malformed XML in .*000002\.xml"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)


def test_non_numeric_coordinate_names_the_file(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one(box=(1, "abc", 10, 10))})
    with pytest.raises(DataError, match=r"malformed XML in .*000001\.xml.*'dog'"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)


def test_missing_annotation_file_names_it(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one()}, split_ids=["000001", "000009"])
    with pytest.raises(DataError, match=r"annotation file not found: .*000009\.xml"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)


def test_unknown_class_names_file_name_and_known_classes(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one(), "000002": _one(name="unicorn")})
    with pytest.raises(DataError) as err:
        VOCDataset(base, ["trainval"], CLASSES, train=False)
    message = str(err.value)
    assert "'unicorn'" in message and "000002.xml" in message and "['cat', 'dog', 'person']" in message


def test_empty_and_missing_split_files(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one()})
    (base / "ImageSets" / "Main" / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match=r"split file .*empty\.txt lists no images"):
        VOCDataset(base, ["empty"], CLASSES, train=False)
    with pytest.raises(DataError, match=r"split file not found: .*nosuch\.txt"):
        VOCDataset(base, ["nosuch"], CLASSES, train=False)


def test_boxes_outside_are_clipped_and_zero_area_dropped_with_counts(tmp_path, caplog):
    images = {
        "000001": (20, 20, [dict(name="dog", box=(-4, 1, 25, 10)), dict(name="cat", box=(3, 3, 8, 30))]),
        "000002": (20, 20, [dict(name="dog", box=(5, 5, 4, 9)), dict(name="cat", box=(30, 1, 40, 10)),
                            dict(name="cat", box=(2, 2, 6, 6))]),
    }
    base = _voc(tmp_path, tiny, images)
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    messages = caplog.messages
    clipped = [m for m in messages if "boxes outside their image" in m]
    dropped = [m for m in messages if "boxes of zero area" in m]
    assert len(clipped) == 1 and "clipped 3 boxes outside their image in 2 files (first: " in clipped[0]
    assert "000001.xml" in clipped[0]
    assert len(dropped) == 1 and "dropped 1 boxes of zero area in 1 file (first: " in dropped[0]
    assert "000002.xml" in dropped[0]
    inverted = [m for m in messages if "inverted" in m]  # (5, 5, 4, 9): xmin > xmax, not "zero area"
    assert len(inverted) == 1 and "dropped 1 inverted boxes (xmin > xmax or ymin > ymax) in 1 file" in inverted[0]
    assert ds.ground_truth(0)["boxes"].tolist() == [[0, 0, 20, 10], [2, 2, 8, 20]]
    assert ds.ground_truth(1)["boxes"].tolist() == [[1, 1, 6, 6]]


def test_missing_image_is_an_error_naming_it(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one(), "000002": _one()})
    (base / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 2 images listed in \['trainval'\] .* are missing .*000002\.jpg"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)


def test_all_images_missing_is_an_error(tmp_path):
    base = _voc(tmp_path, tiny, {"000001": _one()}, write_images=False)
    with pytest.raises(DataError, match=r"1 of 1 images listed .* are missing .*000001\.jpg"):
        VOCDataset(base, ["trainval"], CLASSES, train=False)


def _corrupt_voc(tmp_path, tiny):
    base = _voc(tmp_path, tiny, {"000001": _one(), "000002": _one()})
    bad = base / "JPEGImages" / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    return VOCDataset(base, ["trainval"], CLASSES, train=False), bad


def test_corrupt_image_error_names_the_file(tmp_path):
    ds, bad = _corrupt_voc(tmp_path, tiny)
    ds[0]
    with pytest.raises(DataError, match=r"cannot decode image .*000002\.jpg"):
        ds[1]
    bad.write_bytes(b"")
    with pytest.raises(DataError, match=r"cannot decode image .*000002\.jpg: the file is empty"):
        ds[1]
    bad.write_bytes(b"not an image at all" * 10)
    with pytest.raises(DataError, match=r"cannot decode image .*000002\.jpg"):
        ds[1]


def test_corrupt_image_in_a_worker_still_names_the_file(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    ds, bad = _corrupt_voc(tmp_path, tiny)
    cfg = OmegaConf.create(dict(num_workers=1, pin_memory=False, persistent_workers=False))
    batches = iter(build_test_loader(ds, batch_size=1, loader_cfg=cfg))
    with pytest.raises(DataError) as err:
        for _ in batches:
            pass
    assert str(bad) in str(err.value) and "cannot decode image" in str(err.value)
    # After a worker error torch waits MP_STATUS_CHECK_INTERVAL (5 s) for the worker to join: shorten it.
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1, raising=False)
    getattr(batches, "_shutdown_workers", lambda: None)()


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [}')
    with pytest.raises(DataError, match=r"malformed JSON in .*bad\.json"):
        COCODataset(path, tmp_path, train=False)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"malformed COCO file .*bad\.json: no 'categories' list"):
        COCODataset(path, tmp_path, train=False)
    with pytest.raises(DataError, match=r"annotation file not found: .*nosuch\.json"):
        COCODataset(tmp_path / "nosuch.json", tmp_path, train=False)


def test_coco_unknown_category_and_bad_bbox(tmp_path):
    data = tiny.coco_data()
    data["annotations"][0]["category_id"] = 99
    path = tiny.write_coco(tmp_path, data)
    with pytest.raises(DataError, match=r"ann\.json has category_id 99"):
        COCODataset(path, tmp_path / "images", train=False)
    data = tiny.coco_data()
    data["annotations"][0]["bbox"] = [1, 2, 3]
    path = tiny.write_coco(tmp_path, data, write_images=False)
    with pytest.raises(DataError, match=r"ann\.json: annotation 1 has bbox \[1, 2, 3\]"):
        COCODataset(path, tmp_path / "images", train=False)


def test_coco_clipping_zero_area_and_missing_image(tmp_path, caplog):
    data = tiny.coco_data()
    data["annotations"] += [
        {"id": 5, "image_id": 20, "category_id": 3, "bbox": [50, 80, 20, 20], "iscrowd": 0},  # sticks out
        {"id": 6, "image_id": 20, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
    ]
    path = tiny.write_coco(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        ds = COCODataset(path, tmp_path / "images", train=False)
    messages = "\n".join(caplog.messages)
    assert re.search(r"clipped 1 boxes outside their image in 1 file \(first: .*ann\.json \(image sub/b\.jpg\)",
                     messages)
    assert re.search(r"dropped 1 boxes of zero area in 1 file \(first: .*ann\.json", messages)
    assert ds.image_ids == [10, 20, 30]
    assert ds.ground_truth(1)["boxes"].tolist() == [[1, 2, 4, 6], [50, 80, 60, 90]]


def test_size_mismatch_between_annotation_and_image_warns(tmp_path, caplog):
    base = _voc(tmp_path, tiny, {"000001": (20, 20, [dict(name="dog", box=(1, 1, 20, 20))])})
    tiny.write_jpeg(base / "JPEGImages" / "000001.jpg", 10, 12)
    ds = VOCDataset(base, ["trainval"], CLASSES, train=False)
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        image, target = ds[0]
    assert re.search(r"image .*000001\.jpg is 10x12 but its annotation says 20x20", caplog.text)
    assert image.shape == (3, 12, 10) and target["orig_size"] == (12, 10)
    assert torch.equal(target["boxes"], torch.tensor([[0.0, 0.0, 10.0, 12.0]]))
