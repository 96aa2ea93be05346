"""Synthetic shapes: a small, deterministic detection dataset for the CPU demo and the end-to-end tests.

``generate_shapes(root, settings, classes)`` writes, into ``root``:

    JPEGImages/000001.jpg ...            RGB JPEGs, sides drawn from [image_min_side, image_max_side]
    Annotations/000001.xml ...           VOC XML, 1-based inclusive boxes, difficult/truncated/pose
    ImageSets/Main/{train,val,test,trainval}.txt
    annotations/{train,val,test}.json    COCO instances; file_name relative to JPEGImages/
    .complete                            the settings' hash, written last

The same seed gives the same bytes. Images have a textured background (a low-frequency colour field, mid-frequency
noise, clutter lines), 1..max_objects shapes (circle, square, triangle) from ``min_object_size`` px to
``max_object_size`` px (log-uniform, so small ones are common) in varied colours with shading, per-pixel noise and
JPEG artefacts. Shapes may overlap and may be cut by the image border, but every object keeps at least 55 % of its
pixels visible; boxes are the extent of the visible pixels (the VOC rule). Objects are marked difficult when they
are hard to see: the ``difficult_fraction`` share that is drawn small and faint (low contrast against the
background), and those that end up with less than 70 % of their pixels visible. A share ``empty_fraction`` of the
images holds no object. Both annotation formats are written from the same in-memory objects.

Generation runs under a file lock, into a temporary folder that is renamed into place once complete, so two
processes starting at once generate it once and an interrupted run is redone. A ``root`` that holds data with a
different hash (other settings) is regenerated; a non-empty ``root`` that is not a shapes dataset is never touched.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from frcnn.config import ShapesConfig

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SHAPE_KINDS = ("circle", "square", "triangle")
SPLITS = ("train", "val", "test")
MARKER = ".complete"
MIN_VISIBLE = 0.55  # an object keeps at least this share of its pixels visible (occlusion and border)
DIFFICULT_VISIBLE = 0.70  # below this visible share an object is marked difficult


@dataclass
class ShapesSettings(ShapesConfig):
    """The generator's settings: the fields of :class:`frcnn.config.ShapesConfig`, plus conversion and checks."""

    @classmethod
    def from_config(cls, cfg=None) -> "ShapesSettings":
        """From a ShapesConfig dataclass, an OmegaConf node, a dict or None (defaults)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        if is_dataclass(cfg):
            cfg = asdict(cfg)
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d: getattr(cfg, k, d))
        return cls(**{f.name: type(f.default)(get(f.name, f.default)) for f in fields(cls)})

    def validate(self) -> None:
        if self.image_min_side < 32 or self.image_max_side < self.image_min_side:
            raise ValueError(f"shapes: need 32 <= image_min_side <= image_max_side, got {self.image_min_side}, "
                             f"{self.image_max_side}")
        if not 4 <= self.min_object_size <= self.max_object_size:
            raise ValueError(f"shapes: need 4 <= min_object_size <= max_object_size, got {self.min_object_size}, "
                             f"{self.max_object_size}")
        if self.min_object_size > 0.6 * self.image_min_side:
            raise ValueError("shapes: min_object_size must be at most 0.6 * image_min_side")
        if self.max_objects < 1 or min(self.num_train, self.num_val, self.num_test) < 1:
            raise ValueError("shapes: max_objects and the split sizes must be >= 1")
        if not (0 <= self.empty_fraction < 1 and 0 <= self.difficult_fraction < 1):
            raise ValueError("shapes: empty_fraction and difficult_fraction must be in [0, 1)")


def settings_hash(settings: ShapesSettings, classes: Sequence[str]) -> str:
    payload = json.dumps({"version": GENERATOR_VERSION, "settings": asdict(settings), "classes": list(classes)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_classes(classes: Sequence[str] | None) -> list[str]:
    classes = list(classes) if classes else list(SHAPE_KINDS)
    unknown = [c for c in classes if c not in SHAPE_KINDS]
    if unknown or len(set(classes)) != len(classes):
        raise ValueError(f"shapes: dataset.classes must be distinct names among {list(SHAPE_KINDS)}, got {classes}")
    return classes


# ------------------------------------------------------------------------------------------------ drawing
def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] in 0..255: smooth colour field + mid-frequency texture + clutter lines."""
    gh, gw = rng.integers(2, 6, size=2)
    base = rng.uniform(30, 225, size=(gh, gw, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), dtype=np.float32)
    th, tw = max(2, height // int(rng.integers(6, 16))), max(2, width // int(rng.integers(6, 16)))
    texture = rng.normal(0, 1, size=(th, tw)).astype(np.float32)
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6) * 255
    texture = np.asarray(Image.fromarray(texture.astype(np.uint8)).resize((width, height), Image.BILINEAR),
                         dtype=np.float32) / 255.0 - 0.5
    img = field + texture[..., None] * rng.uniform(20, 50)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 7))):  # clutter: thin lines the detector must learn to ignore
        x0, x1 = rng.integers(0, width, size=2)
        y0, y1 = rng.integers(0, height, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line([(int(x0), int(y0)), (int(x1), int(y1))], fill=colour, width=int(rng.integers(1, 4)))
    return np.asarray(canvas, dtype=np.float32)


def _shape_mask(kind: str, x0: int, y0: int, size: int, aspect: float, inverted: bool, height: int,
                width: int) -> np.ndarray:
    """bool [H, W] mask of one shape whose (unclipped) pixel extent starts at (x0, y0)."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    x1, y1 = x0 + size - 1, y0 + size - 1
    if kind == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=255)
    elif kind == "square":
        draw.rectangle([x0, y0, x1, y1], fill=255)
    else:  # isosceles triangle, pointing up or down, height = aspect * base
        h = max(3, int(round(size * aspect)))
        yb = y0 + h - 1
        pts = [(x0, yb), (x1, yb), ((x0 + x1) / 2, y0)] if not inverted else [(x0, y0), (x1, y0), ((x0 + x1) / 2, yb)]
        draw.polygon(pts, fill=255)
    return np.asarray(mask, dtype=np.uint8) > 0


def _full_area(kind: str, size: int, aspect: float) -> float:
    if kind == "circle":
        return np.pi * size * size / 4
    if kind == "square":
        return float(size * size)
    return 0.5 * size * max(3, round(size * aspect))


def _pick_colour(rng: np.random.Generator, reference: np.ndarray, faint: bool,
                 avoid: Sequence[np.ndarray]) -> np.ndarray:
    """A colour far from ``reference`` (the background under the object) and from overlapped objects; a faint
    one (difficult object) is close to the background instead."""
    best, best_score = None, -1.0
    for _ in range(24):
        if faint:
            c = np.clip(reference + rng.normal(0, 1, 3) * 30 + rng.choice([-1, 1]) * 20, 0, 255)
            d = float(np.linalg.norm(c - reference))
            score = 1.0 if 25 <= d <= 60 else 0.0
        else:
            c = rng.uniform(0, 255, 3)
            d = min([float(np.linalg.norm(c - reference))] + [float(np.linalg.norm(c - a)) for a in avoid])
            score = d
            if d >= 110:
                return c.astype(np.float32)
        if score > best_score:
            best, best_score = c, score
    return np.asarray(best, dtype=np.float32)


def _make_image(rng: np.random.Generator, settings: ShapesSettings, kinds: Sequence[str], empty: bool):
    """(uint8 [H, W, 3] image, list of objects) with objects as dicts: kind, box (x0, y0, x1, y1 inclusive
    0-based pixels of the visible extent), difficult, truncated, area (visible pixels)."""
    s = settings
    width, height = (int(v) for v in rng.integers(s.image_min_side, s.image_max_side + 1, size=2))
    img = _background(rng, height, width)
    placed: list[dict] = []  # in drawing order; later objects occlude earlier ones
    n_objects = 0 if empty else int(rng.integers(1, s.max_objects + 1))
    max_size = max(s.min_object_size, min(s.max_object_size, int(0.6 * min(height, width))))
    for _ in range(n_objects):
        for _attempt in range(30):
            if _place_object(rng, s, kinds, img, placed, max_size):
                break
    img += rng.normal(0, rng.uniform(3, 10), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), [_visible_object(p) for p in placed]


def _place_object(rng: np.random.Generator, s: ShapesSettings, kinds: Sequence[str], img: np.ndarray,
                  placed: list, max_size: int) -> bool:
    """Draw one random shape onto ``img`` unless it would hide too much of itself or of the ones ``placed``;
    returns whether it was drawn (and appended to ``placed``)."""
    height, width = img.shape[:2]
    faint = rng.random() < s.difficult_fraction
    kind = kinds[int(rng.integers(len(kinds)))]
    if faint:
        size = int(rng.integers(s.min_object_size, int(s.min_object_size * 1.4) + 1))
    else:
        size = int(round(np.exp(rng.uniform(np.log(s.min_object_size), np.log(max_size + 1)))))
        size = min(max(size, s.min_object_size), max_size)
    aspect = float(rng.uniform(0.75, 1.0))
    inverted = bool(rng.random() < 0.5)
    out = int(size * 0.35) if rng.random() < 0.12 else 0  # may stick out of the image by this much
    x0 = int(rng.integers(-out, width - size + out + 1))
    y0 = int(rng.integers(-out, height - size + out + 1))
    mask = _shape_mask(kind, x0, y0, size, aspect, inverted, height, width)
    full = _full_area(kind, size, aspect)
    if mask.sum() < MIN_VISIBLE * full:
        return False
    if not all((p["visible"] & ~mask).sum() >= MIN_VISIBLE * p["full"] for p in placed):
        return False
    ys, xs = np.nonzero(mask)
    region = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].reshape(-1, 3).mean(axis=0)
    under = [p["colour"] for p in placed if (p["visible"] & mask).any()]
    colour = _pick_colour(rng, region, faint, under)
    for p in placed:
        p["visible"] &= ~mask
    # shading: a linear gradient across the object, so its fill is not flat
    gy, gx = rng.uniform(-0.25, 0.25, size=2) / max(size, 1)
    shade = 1.0 + gy * (ys - ys.mean()) + gx * (xs - xs.mean())
    img[ys, xs] = np.clip(colour[None, :] * shade[:, None], 0, 255)
    cut = x0 < 0 or y0 < 0 or x0 + size > width or y0 + size > height
    placed.append(dict(kind=kind, visible=mask.copy(), full=full, colour=colour, faint=faint,
                       truncated=bool(mask.sum() < 0.98 * full and cut)))
    return True


def _visible_object(p: dict) -> dict:
    """The annotation of a placed shape: the box of its visible pixels, difficult when faint or mostly hidden."""
    ys, xs = np.nonzero(p["visible"])
    visible = len(xs) / p["full"]
    return dict(kind=p["kind"], box=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                difficult=bool(p["faint"] or visible < DIFFICULT_VISIBLE), truncated=p["truncated"],
                area=int(len(xs)))


def _voc_xml(image_id: str, width: int, height: int, objects: Sequence[dict]) -> str:
    parts = [
        "<annotation>",
        "\t<folder>shapes</folder>",
        f"\t<filename>{image_id}.jpg</filename>",
        "\t<source><database>frcnn synthetic shapes</database></source>",
        f"\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "\t<segmented>0</segmented>",
    ]
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        parts += [
            "\t<object>",
            f"\t\t<name>{o['kind']}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(o['truncated'])}</truncated>",
            f"\t\t<difficult>{int(o['difficult'])}</difficult>",
            # VOC: 1-based inclusive pixel indices
            f"\t\t<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax>"
            "</bndbox>",
            "\t</object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _write_dataset(out: Path, settings: ShapesSettings, classes: Sequence[str]) -> None:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "annotations"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    counts = {"train": settings.num_train, "val": settings.num_val, "test": settings.num_test}
    first_number = 1
    split_ids: dict[str, list[str]] = {}
    for split_index, split in enumerate(SPLITS):
        ids = _write_split(out, settings, classes, split, split_index, counts[split], first_number)
        first_number += len(ids)
        split_ids[split] = ids
    trainval = split_ids["train"] + split_ids["val"]
    (out / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(trainval) + "\n")


def _write_split(out: Path, settings: ShapesSettings, classes: Sequence[str], split: str, split_index: int, n: int,
                 first_number: int) -> list[str]:
    """The ``n`` images of one split (numbered from ``first_number``), their XML, the split file and its COCO
    json; returns the image ids."""
    category_id = {c: k + 1 for k, c in enumerate(classes)}
    split_rng = np.random.default_rng([settings.seed, split_index, 0])
    n_empty = int(round(settings.empty_fraction * n))
    if settings.empty_fraction > 0 and n >= 4:
        n_empty = max(n_empty, 1)
    empty = set(split_rng.choice(n, size=min(n_empty, n), replace=False).tolist())
    images, annotations, ids = [], [], []
    for i in range(n):
        number = first_number + i
        image_id = f"{number:06d}"
        rng = np.random.default_rng([settings.seed, split_index, 1, i])
        pixels, objects = _make_image(rng, settings, classes, empty=i in empty)
        height, width = pixels.shape[:2]
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=int(rng.integers(80, 96)))
        (out / "JPEGImages" / f"{image_id}.jpg").write_bytes(buf.getvalue())
        (out / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, width, height, objects))
        ids.append(image_id)
        images.append({"id": number, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": number, "category_id": category_id[o["kind"]],
                "bbox": [x0, y0, x1 + 1 - x0, y1 + 1 - y0],  # continuous xywh of the same pixels
                "area": o["area"], "iscrowd": 0, "difficult": int(o["difficult"]), "truncated": int(o["truncated"]),
            })
    coco = {
        "info": {"description": "frcnn synthetic shapes", "version": str(GENERATOR_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_id[c], "name": c, "supercategory": "shape"} for c in classes],
    }
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


# ------------------------------------------------------------------------------------------------ entry points
def is_complete(root, settings: ShapesSettings, classes: Sequence[str]) -> bool:
    marker = Path(root) / MARKER
    try:
        return marker.read_text().strip() == settings_hash(settings, classes)
    except OSError:
        return False


@contextlib.contextmanager
def _lock(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: rely on the temp-dir + rename alone
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def generate_shapes(root, settings=None, classes: Sequence[str] | None = None, *, verbose: bool = True) -> Path:
    """Generate the shapes dataset into ``root`` unless it is already there with the same settings.
    ``settings``: ShapesSettings, ShapesConfig, OmegaConf node, dict or None. Returns ``root`` as a Path."""
    settings = ShapesSettings.from_config(settings)
    settings.validate()
    classes = check_classes(classes)
    root = Path(root).expanduser().absolute()
    if is_complete(root, settings, classes):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root.parent / f".{root.name}.lock"):
        if is_complete(root, settings, classes):  # another process generated it while we waited
            return root
        for stale in root.parent.glob(f".{root.name}.tmp-*"):  # left by an interrupted run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
            raise FileExistsError(f"shapes: {root} exists, is not empty and is not a generated shapes dataset; "
                                  f"refusing to overwrite it (choose another dataset.root)")
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        total = settings.num_train + settings.num_val + settings.num_test
        if verbose:
            logger.info("generating the shapes dataset (%d images) into %s", total, root)
        try:
            _write_dataset(tmp, settings, classes)
            (tmp / MARKER).write_text(settings_hash(settings, classes) + "\n")  # last: marks it complete
            old = None
            if root.exists():  # stale (other settings) or an empty folder
                old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.replace(root, old)
            os.replace(tmp, root)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure_shapes(dataset_cfg) -> Path:
    """Generate ``dataset_cfg.root`` from ``dataset_cfg.shapes`` / ``dataset_cfg.classes`` if needed."""
    return generate_shapes(dataset_cfg.root, getattr(dataset_cfg, "shapes", None),
                           list(getattr(dataset_cfg, "classes", None) or []) or None)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Generate the synthetic shapes dataset (VOC layout + COCO json).")
    parser.add_argument("root", help="output folder, e.g. data/shapes")
    for f in fields(ShapesSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # run as a script: show the progress line
    settings = ShapesSettings(**{f.name: getattr(args, f.name) for f in fields(ShapesSettings)})
    print(generate_shapes(args.root, settings))


if __name__ == "__main__":
    main()
