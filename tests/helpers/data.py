"""Tiny datasets written to disk for the data tests: VOC XML and folders, COCO json, and the expected results of
the hand-made VOC dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import CONF_DIR  # noqa: F401  (the tests read it from here too)

SMALL_SHAPES = dict(num_train=8, num_val=2, num_test=4, max_objects=5, empty_fraction=0.2,
                    difficult_fraction=0.2, seed=3)


def write_jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def voc_xml(width, height, objects, filename="x.jpg") -> str:
    """objects: dicts with name, box (xmin, ymin, xmax, ymax as written), optional difficult/truncated/pose/parts."""
    out = ["<annotation>", "<folder>VOC2007</folder>", f"<filename>{filename}</filename>",
           f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for o in objects:
        out.append("<object>")
        out.append(f"<name>{o['name']}</name>")
        if "pose" in o:
            out.append(f"<pose>{o['pose']}</pose>")
        if "truncated" in o:
            out.append(f"<truncated>{o['truncated']}</truncated>")
        if "difficult" in o:
            out.append(f"<difficult>{o['difficult']}</difficult>")
        b = o["box"]
        out.append(f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>")
        for part_name, pb in o.get("parts", []):
            out.append(f"<part><name>{part_name}</name><bndbox><xmin>{pb[0]}</xmin><ymin>{pb[1]}</ymin>"
                       f"<xmax>{pb[2]}</xmax><ymax>{pb[3]}</ymax></bndbox></part>")
        out.append("</object>")
    out.append("</annotation>")
    return "\n".join(out)


def write_voc(base: Path, images: dict, splits: dict, *, write_images: bool = True) -> Path:
    """images: id -> (width, height, objects); splits: name -> [ids]. Writes base/{Annotations,JPEGImages,
    ImageSets/Main}."""
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for k, (image_id, (width, height, objects)) in enumerate(images.items()):
        (base / "Annotations" / f"{image_id}.xml").write_text(voc_xml(width, height, objects, f"{image_id}.jpg"))
        if write_images:
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", width, height, seed=k)
    for name, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


# The hand-made VOC dataset: boxes as written in the XML and as the loader must return them.
VOC_CLASSES = ["cat", "dog", "person"]
VOC_IMAGES = {
    "000001": (100, 80, [
        dict(name="dog", box=(1, 1, 50, 40), difficult=0, truncated=1, pose="Left"),
        dict(name="person", box=(10, 20, 30, 60), difficult=1, truncated=0, pose="Frontal",
             parts=[("head", (12, 22, 18, 28)), ("hand", (11, 40, 14, 44))]),
        dict(name="cat", box=(48.5, 10, 100, 80)),  # no difficult/truncated/pose elements: defaults
    ]),
    "000002": (60, 90, [dict(name="cat", box=(5, 6, 30, 70), difficult=0, truncated=0, pose="Unspecified")]),
    "000003": (70, 50, []),
}
VOC_EXPECTED = {  # continuous 0-based: xmin - 1, ymin - 1, xmax, ymax
    "000001": ([[0, 0, 50, 40], [9, 19, 30, 60], [47.5, 9, 100, 80]], [2, 3, 1], [False, True, False]),
    "000002": ([[4, 5, 30, 70]], [1], [False]),
    "000003": (np.zeros((0, 4)), [], []),
}


def write_coco(root: Path, data: dict, name: str = "ann.json", img_dir: str = "images",
               write_images: bool = True) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / name
    path.write_text(json.dumps(data))
    if write_images:
        for k, img in enumerate(data["images"]):
            write_jpeg(root / img_dir / img["file_name"], img["width"], img["height"], seed=k)
    return path


def coco_data() -> dict:
    """Non-contiguous category ids 1, 3, 7 (listed out of order), a crowd region, an image with no objects."""
    return {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 20, "file_name": "sub/b.jpg", "width": 60, "height": 90},
            {"id": 30, "file_name": "c.jpg", "width": 50, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 1, "bbox": [0, 0, 100, 80], "area": 8000, "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [5.5, 6.5, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 20, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "c"}, {"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
    }


def shapes_overrides(root) -> list[str]:
    return [f"dataset.root={root}"] + [f"dataset.shapes.{k}={v}" for k, v in SMALL_SHAPES.items()]
