"""Pascal VOC layout: ROOT/SUBDIR/{ImageSets/Main/SPLIT.txt, Annotations/ID.xml, JPEGImages/ID.jpg}.

Coordinates: VOC XML boxes are 1-based inclusive pixels. We subtract 1 from xmin and ymin only, which gives
continuous 0-based boxes (x1, y1, x2, y2) with width x2 - x1 = xmax - xmin + 1 (the devkit's width). The
evaluator adds the 1 back to reproduce the devkit's numbers.

XML is parsed by expat into an ``xml.etree.ElementTree`` element, with handlers that stop at any DOCTYPE or
ENTITY declaration, so nothing is ever declared or expanded (billion laughs, external entities); no new
dependency (defusedxml) is needed. ``truncated`` and ``pose`` are read, ``part`` elements (person layout) are
ignored, ``difficult`` is kept for evaluation.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from xml.parsers import expat

import numpy as np

from frcnn.data.dataset import DetectionDataset, ImageRecord, clip_and_filter, count_dropped, finite_float32, listed
from frcnn.data.decode import read_image_size
from frcnn.data.errors import DataError, IssueCounter

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


# ------------------------------------------------------------------------------------------------ safe parsing
class _UnsafeXML(Exception):
    pass


def _refuse(what):
    def handler(name, *args):
        raise _UnsafeXML(f"{what} {name!r}")

    return handler


def parse_xml_safely(path) -> ET.Element:
    """Parse an XML file into an ElementTree element, refusing DTDs and entity declarations (expat stops at the
    start of a DOCTYPE, before any declaration is read, so nothing is ever expanded). Raises :class:`DataError`
    naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DataError(f"annotation file not found: {path}") from e
    except OSError as e:
        raise DataError(f"cannot read annotation file {path}: {e.strerror or e}") from e
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse("DOCTYPE")
    parser.EntityDeclHandler = _refuse("ENTITY")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except _UnsafeXML as e:
        raise DataError(f"refusing to parse {path}: it declares a {e} (DTDs and entity declarations are "
                        f"not allowed in annotation files)") from None
    except (expat.ExpatError, AssertionError, IndexError) as e:  # TreeBuilder asserts on unbalanced input
        raise DataError(f"malformed XML in {path}: {e or 'unbalanced elements'}") from None


# ------------------------------------------------------------------------------------------------ raw records
@dataclass
class VOCObject:
    name: str
    box: tuple[float, float, float, float]  # as in the XML: 1-based inclusive (xmin, ymin, xmax, ymax)
    difficult: bool
    truncated: bool
    pose: str


@dataclass
class VOCAnnotation:
    path: str
    filename: str  # <filename>, may be empty
    width: int  # 0 when <size> is missing
    height: int
    objects: list


_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _text(elem: ET.Element | None, default: str = "") -> str:
    return elem.text.strip() if elem is not None and elem.text is not None else default


def _flag(elem: ET.Element, tag: str, path) -> bool:
    value = _text(elem.find(tag), "0")
    try:
        return bool(int(float(value)))
    except (ValueError, OverflowError):  # int(float("nan")) is a ValueError, int(float("inf")) an OverflowError
        raise DataError(f"malformed XML in {path}: <{tag}> is {value!r}, expected 0 or 1") from None


def parse_voc_xml(path) -> VOCAnnotation:
    """Read one VOC annotation file (no class mapping, no coordinate change)."""
    root = parse_xml_safely(path)
    if root.tag != "annotation":
        raise DataError(f"malformed XML in {path}: the root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    try:
        width = int(float(_text(size.find("width") if size is not None else None, "0")))
        height = int(float(_text(size.find("height") if size is not None else None, "0")))
    except (ValueError, OverflowError):
        raise DataError(f"malformed XML in {path}: <size> holds a non-number") from None
    objects = []
    for obj in root.findall("object"):  # direct children; <part> elements inside an object are ignored
        name = _text(obj.find("name"))
        if not name:
            raise DataError(f"malformed XML in {path}: an <object> has no <name>")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError(f"malformed XML in {path}: object {name!r} has no <bndbox>")
        try:
            box = tuple(float(_text(bnd.find(tag))) for tag in _BOX_TAGS)
        except ValueError:
            raise DataError(f"malformed XML in {path}: object {name!r} has a <bndbox> with a missing or "
                            f"non-numeric coordinate") from None
        if not finite_float32(box):  # float() reads "nan" and "inf": they would be clipped into a border box
            values = " ".join(f"<{tag}>{_text(bnd.find(tag))}</{tag}>" for tag in _BOX_TAGS)
            raise DataError(f"malformed XML in {path}: object {name!r} has a <bndbox> with a non-finite "
                            f"coordinate (NaN, infinite or too large): {values}")
        objects.append(VOCObject(name=name, box=box, difficult=_flag(obj, "difficult", path),
                                 truncated=_flag(obj, "truncated", path), pose=_text(obj.find("pose"))))
    return VOCAnnotation(path=str(path), filename=_text(root.find("filename")), width=width, height=height,
                         objects=objects)


_XML_CACHE: dict[str, tuple[tuple, VOCAnnotation]] = {}


def load_voc_xml(path) -> VOCAnnotation:
    """:func:`parse_voc_xml` with a cache keyed by the file's path, size and mtime (classes are collected and
    datasets built from the same files; the second pass costs a stat per file)."""
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    key = (st.st_size, st.st_mtime_ns)
    hit = _XML_CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    ann = parse_voc_xml(path)
    _XML_CACHE[path] = (key, ann)
    return ann


# ------------------------------------------------------------------------------------------------ split files
def split_file_path(root, entry: str) -> tuple[Path, str]:
    """"SUBDIR/SPLIT" -> (ROOT/SUBDIR, ROOT/SUBDIR/ImageSets/Main/SPLIT.txt); a bare "SPLIT" uses ROOT."""
    root = Path(root)
    entry = entry.strip().strip("/")
    subdir, _, split = entry.rpartition("/")
    base = root / subdir if subdir else root
    return base, str(base / "ImageSets" / "Main" / f"{split}.txt")


def read_split_file(path) -> list[str]:
    """Image ids, one per line (first token: class-specific files hold "ID  1")."""
    try:
        with open(path, encoding="utf-8") as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except FileNotFoundError:
        raise DataError(f"split file not found: {path} (is dataset.root right? scripts/download_voc.sh downloads "
                        f"Pascal VOC; experiment=shapes trains on generated data)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split file {path}: {e}") from None
    if not ids:
        raise DataError(f"split file {path} lists no images")
    return ids


def _image_path(base: Path, image_id: str, ann: VOCAnnotation) -> str | None:
    images = base / "JPEGImages"
    candidates = [images / f"{image_id}.jpg"]
    if ann.filename:
        candidates.append(images / ann.filename)
    candidates += [images / f"{image_id}{ext}" for ext in IMAGE_EXTENSIONS[1:]]
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


def iter_voc_annotations(root, entries: Sequence[str]) -> Iterable[tuple[Path, str, VOCAnnotation]]:
    """(base dir, image id, parsed XML) for every image of the given "SUBDIR/SPLIT" entries."""
    for entry in entries:
        base, split_path = split_file_path(root, entry)
        for image_id in read_split_file(split_path):
            yield base, image_id, load_voc_xml(base / "Annotations" / f"{image_id}.xml")


def collect_voc_classes(root, entries: Sequence[str]) -> list[str]:
    """Sorted names of every object class in the annotations of the given split entries."""
    names = set()
    for _, _, ann in iter_voc_annotations(root, entries):
        names.update(o.name for o in ann.objects)
    return sorted(names)


# ------------------------------------------------------------------------------------------------ the dataset
def load_voc_records(root, entries: Sequence[str], classes: Sequence[str], *, name: str = "voc") -> list[ImageRecord]:
    """Parse and validate every annotation of the split(s); unusable data raises (missing images too), skippable
    data is counted and reported once per kind (clipped boxes, inverted and zero-area boxes, missing sizes)."""
    if not entries:
        raise DataError(f"dataset {name!r}: no split files given for this split (dataset.sets)")
    class_to_label = {c: k + 1 for k, c in enumerate(classes)}
    issues = IssueCounter(source=f"dataset {name!r}")
    records, missing = [], []
    for base, image_id, ann in iter_voc_annotations(root, entries):
        image_path = _image_path(base, image_id, ann)
        if image_path is None:
            missing.append(str(base / "JPEGImages" / f"{image_id}.jpg"))
            continue
        height, width = ann.height, ann.width
        if height <= 0 or width <= 0:
            height, width = read_image_size(image_path)  # header only, no decoding
            issues.add("read the size of {n} images from the image file (no <size> in the XML)", ann.path)
        n = len(ann.objects)
        boxes = np.zeros((n, 4), dtype=np.float32)
        labels = np.zeros(n, dtype=np.int64)
        difficult = np.zeros(n, dtype=bool)
        inverted = np.zeros(n, dtype=bool)
        for j, obj in enumerate(ann.objects):
            label = class_to_label.get(obj.name)
            if label is None:
                raise DataError(f"unknown class {obj.name!r} in {ann.path}; known classes: {list(classes)} "
                                f"(set dataset.classes, or leave it empty to collect them from the annotations)")
            xmin, ymin, xmax, ymax = obj.box
            boxes[j] = (xmin - 1.0, ymin - 1.0, xmax, ymax)  # 1-based inclusive -> continuous 0-based
            labels[j] = label
            difficult[j] = obj.difficult
            inverted[j] = xmin > xmax or ymin > ymax
        boxes, keep, n_clipped = clip_and_filter(boxes, height, width)
        if n_clipped:
            issues.add("clipped {n} boxes outside their image", ann.path, n_clipped)
        if not keep.all():
            count_dropped(issues, keep, inverted, ann.path, "xmin > xmax or ymin > ymax")
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        records.append(ImageRecord(image_id=image_id, path=image_path, height=height, width=width, boxes=boxes,
                                   labels=labels, difficult=difficult))
    if missing:  # a broken dataset: leaving images out would silently change what is trained or measured
        raise DataError(f"dataset {name!r}: {len(missing)} of {len(missing) + len(records)} images listed in "
                        f"{list(entries)} under {root} are missing (no JPEGImages/ID.jpg or other image file): "
                        f"{listed(missing)}. Restore them, or remove their ids from the split files")
    issues.report()
    return records


class VOCDataset(DetectionDataset):
    """A VOC-layout dataset; see :class:`frcnn.data.dataset.DetectionDataset` for the item contract."""

    format = "voc"

    def __init__(self, root, entries: Sequence[str], classes: Sequence[str], *, train: bool,
                 use_difficult: bool = False, keep_empty: bool = True, hflip_prob: float = 0.5,
                 color_jitter: float = 0.0, name: str = "voc") -> None:
        self.root = str(root)
        self.entries = list(entries)
        records = load_voc_records(root, self.entries, classes, name=name)
        super().__init__(records, classes=classes, train=train, use_difficult=use_difficult,
                         keep_empty=keep_empty, hflip_prob=hflip_prob, color_jitter=color_jitter, name=name)
