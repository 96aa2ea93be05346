"""The data layer's only config reader: ``dataset`` / ``loader`` config -> datasets and loaders.

    build_dataset(dataset_cfg, split, *, train, loader_cfg=None) -> VOCDataset | COCODataset
    build_train_loader(dataset, *, batch_size, loader_cfg, seed, start_iter=0) -> infinite (images, targets) batches
    build_test_loader(dataset, *, batch_size, loader_cfg) -> DataLoader, every image once, in index order
    resolve_classes(dataset_cfg) -> list of the K class names (label k is classes[k-1])

Relative paths (``dataset.root``) are taken from the current directory (the configs set hydra.job.chdir=false).
"""
from __future__ import annotations

import logging
from pathlib import Path

from frcnn.data.coco import COCODataset, read_coco_categories
from frcnn.data.errors import DataError
from frcnn.data.loader import make_test_loader, make_train_loader
from frcnn.data.shapes import check_classes, ensure_shapes
from frcnn.data.voc import VOCDataset, collect_voc_classes

SPLITS = ("train", "val", "test")
FORMATS = ("voc", "coco")
_LOGGED: set = set()

logger = logging.getLogger(__name__)


def _check(dataset_cfg, split: str | None = None) -> str:
    fmt = str(dataset_cfg.format)
    if fmt not in FORMATS:
        raise ValueError(f"dataset.format must be one of {FORMATS}, got {fmt!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return fmt


def _voc_entries(dataset_cfg, split: str) -> list[str]:
    entries = list(getattr(dataset_cfg.sets, split) or [])
    if not entries:
        raise DataError(f"dataset {dataset_cfg.name!r} has no '{split}' split: dataset.sets.{split} is empty")
    return entries


def _coco_paths(dataset_cfg, split: str) -> tuple[str, str]:
    ann, img = getattr(dataset_cfg.ann_file, split), getattr(dataset_cfg.img_dir, split)
    if not ann:
        raise DataError(f"dataset {dataset_cfg.name!r} has no '{split}' split: dataset.ann_file.{split} is empty")
    root = Path(str(dataset_cfg.root)).expanduser()
    return str(root / ann), str(root / (img or ""))


GENERATORS = ("", "shapes")  # dataset.generate: "" = the data is on disk


def _generates_shapes(dataset_cfg) -> bool:
    return str(dataset_cfg.get("generate") or "") == "shapes"


def _maybe_generate(dataset_cfg) -> None:
    if _generates_shapes(dataset_cfg):
        ensure_shapes(dataset_cfg)


def _given_classes(dataset_cfg) -> list[str]:
    """``dataset.classes`` as given (generated data: checked against what the generator draws, its default)."""
    classes = [str(c) for c in (dataset_cfg.classes or [])]
    return check_classes(classes) if _generates_shapes(dataset_cfg) else classes


def _coco_classes(dataset_cfg) -> list[str]:
    """The category names (sorted by id) of the training split's file, else of the first existing of val, test;
    every existing split file must have the same categories (id -> name)."""
    root = Path(str(dataset_cfg.root)).expanduser()
    files = [root / ann for ann in (getattr(dataset_cfg.ann_file, split) for split in SPLITS) if ann]
    files = [f for f in dict.fromkeys(files) if f.is_file()]  # unique, in split order
    if not files:
        raise DataError(f"dataset.classes is empty and none of the COCO files dataset.ann_file.* exists "
                        f"under {dataset_cfg.root}")
    categories = read_coco_categories(files[0])
    if not categories:
        raise DataError(f"dataset.classes is empty and the COCO file {files[0]} has no categories")
    for other in files[1:]:
        other_categories = read_coco_categories(other)
        if other_categories != categories:
            raise DataError(f"dataset.classes is empty and the COCO files differ in their categories (id: name): "
                            f"{files[0]} has {categories}, {other} has {other_categories}. Set dataset.classes "
                            f"to choose the classes and their order (annotations of other categories are "
                            f"skipped)")
    names = [str(n) for n in categories.values()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"the categories of {files[0]} name {duplicates} more than once ({categories}); give "
                        f"each category its own name")
    return names


def resolve_classes(dataset_cfg) -> list[str]:
    """``dataset.classes`` when given; otherwise the categories of the COCO training file (sorted by id; every
    split file must have the same ones) or the sorted class names found in every VOC split's annotations."""
    classes = _given_classes(dataset_cfg)
    if classes:
        if len(set(classes)) != len(classes):
            raise ValueError(f"dataset.classes has duplicates: {classes}")
        if any(c.lower() in ("__background__", "background") for c in classes):
            raise ValueError("dataset.classes lists the classes 1..K only; label 0 (background) is implicit")
        return classes
    fmt = _check(dataset_cfg)
    _maybe_generate(dataset_cfg)
    if fmt == "coco":
        return _coco_classes(dataset_cfg)
    entries = [e for split in SPLITS for e in (getattr(dataset_cfg.sets, split) or [])]
    entries = list(dict.fromkeys(entries))  # unique, in order
    if not entries:
        raise DataError("dataset.classes is empty and dataset.sets names no split to collect them from")
    classes = collect_voc_classes(str(dataset_cfg.root), entries)
    if not classes:
        raise DataError(f"dataset.classes is empty and the annotations of {entries} under {dataset_cfg.root} "
                        f"hold no object")
    key = (str(dataset_cfg.root), tuple(entries), tuple(classes))
    if key not in _LOGGED:  # once per process, not at every build_dataset
        _LOGGED.add(key)
        logger.info("dataset.classes is empty; %d classes collected from the annotations (label k = "
                    "classes[k-1]): %s", len(classes), classes)
    return classes


def build_dataset(dataset_cfg, split: str, *, train: bool, loader_cfg=None):
    """The dataset of one split. ``train=True``: random flip / jitter per ``loader_cfg`` (defaults when None),
    difficult objects (unless ``dataset.use_difficult``) and crowd regions left out of targets, images with no
    object dropped unless ``dataset.keep_empty``. Generates the shapes data first when ``dataset.generate=shapes``."""
    fmt = _check(dataset_cfg, split)
    _maybe_generate(dataset_cfg)
    if loader_cfg is None:
        from frcnn.config import LoaderConfig

        loader_cfg = LoaderConfig()
    name = f"{dataset_cfg.name}/{split}"
    common = dict(
        train=train,
        use_difficult=bool(dataset_cfg.use_difficult),
        keep_empty=bool(dataset_cfg.keep_empty),
        hflip_prob=float(loader_cfg.hflip_prob),
        color_jitter=float(loader_cfg.color_jitter),
        name=name,
    )
    if fmt == "voc":
        entries = _voc_entries(dataset_cfg, split)
        return VOCDataset(str(Path(str(dataset_cfg.root)).expanduser()), entries, resolve_classes(dataset_cfg),
                          **common)
    ann_file, img_dir = _coco_paths(dataset_cfg, split)
    classes = _given_classes(dataset_cfg)
    dataset = COCODataset(ann_file, img_dir, classes or None, **common)
    if not classes:  # classes from this file: they must be the ones the model is built with
        expected = resolve_classes(dataset_cfg)
        if dataset.classes != expected:
            raise DataError(f"the categories of {ann_file} ({dataset.classes}) differ from those of the other "
                            f"split files ({expected}); set dataset.classes to fix the label order")
    return dataset


def build_train_loader(dataset, *, batch_size: int, loader_cfg, seed: int, start_iter: int = 0, rank: int = 0,
                       world_size: int = 1):
    """Infinite iterable of ``(images, targets)`` batches (lists), seeded, aspect-grouped when
    ``loader_cfg.aspect_grouping``; ``start_iter`` skips that many batches (resuming a run). Under torchrun,
    ``batch_size`` is the global batch and this rank gets its share of each."""
    return make_train_loader(dataset, batch_size=batch_size, loader_cfg=loader_cfg, seed=seed, start_iter=start_iter,
                             rank=rank, world_size=world_size)


def build_test_loader(dataset, *, batch_size: int, loader_cfg, rank: int = 0, world_size: int = 1):
    """Finite DataLoader of ``(images, targets)`` batches visiting every image once, in index order; under torchrun
    this rank's share of the batches (``frcnn.engine.inference.run_inference`` gathers the detections)."""
    return make_test_loader(dataset, batch_size=batch_size, loader_cfg=loader_cfg, rank=rank, world_size=world_size)


__all__ = ["build_dataset", "build_train_loader", "build_test_loader", "resolve_classes"]
