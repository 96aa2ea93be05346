"""The data layer's only config reader: ``dataset`` / ``loader`` config -> datasets and loaders.

    build_dataset(dataset_cfg, split, *, train, loader_cfg=None) -> VOCDataset | COCODataset
    build_train_loader(dataset, *, batch_size, loader_cfg, seed, start_iter=0) -> infinite (images, targets) batches
    build_test_loader(dataset, *, batch_size, loader_cfg) -> DataLoader, every image once, in index order
    resolve_classes(dataset_cfg) -> list of the K class names (label k is classes[k-1])

Relative paths (``dataset.root``) are taken from the current directory (the configs set hydra.job.chdir=false).
"""
from __future__ import annotations

from pathlib import Path

from frcnn.data.coco import COCODataset, read_coco_classes
from frcnn.data.errors import DataError
from frcnn.data.loader import make_test_loader, make_train_loader
from frcnn.data.shapes import check_classes, ensure_shapes
from frcnn.data.voc import VOCDataset, collect_voc_classes

SPLITS = ("train", "val", "test")
FORMATS = ("voc", "coco")
_PRINTED: set = set()


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


def _maybe_generate(dataset_cfg) -> None:
    if str(dataset_cfg.name) == "shapes":
        ensure_shapes(dataset_cfg)


def resolve_classes(dataset_cfg) -> list[str]:
    """``dataset.classes`` when given; otherwise the categories of a COCO file (sorted by id; the smallest of
    the split files, they must agree) or the sorted class names found in every VOC split's annotations."""
    classes = [str(c) for c in (dataset_cfg.classes or [])]
    if str(dataset_cfg.name) == "shapes":
        classes = check_classes(classes)
    if classes:
        if len(set(classes)) != len(classes):
            raise ValueError(f"dataset.classes has duplicates: {classes}")
        if any(c.lower() in ("__background__", "background") for c in classes):
            raise ValueError("dataset.classes lists the classes 1..K only; label 0 (background) is implicit")
        return classes
    fmt = _check(dataset_cfg)
    _maybe_generate(dataset_cfg)
    if fmt == "coco":
        files = []
        for split in SPLITS:
            ann = getattr(dataset_cfg.ann_file, split)
            if ann:
                path = Path(str(dataset_cfg.root)).expanduser() / ann
                if path.is_file():
                    files.append(path)
        if not files:
            raise DataError(f"dataset.classes is empty and none of the COCO files dataset.ann_file.* exists "
                            f"under {dataset_cfg.root}")
        return read_coco_classes(min(files, key=lambda p: p.stat().st_size))
    entries = [e for split in SPLITS for e in (getattr(dataset_cfg.sets, split) or [])]
    entries = list(dict.fromkeys(entries))  # unique, in order
    if not entries:
        raise DataError("dataset.classes is empty and dataset.sets names no split to collect them from")
    classes = collect_voc_classes(str(dataset_cfg.root), entries)
    if not classes:
        raise DataError(f"dataset.classes is empty and the annotations of {entries} under {dataset_cfg.root} "
                        f"hold no object")
    key = (str(dataset_cfg.root), tuple(entries), tuple(classes))
    if key not in _PRINTED:  # once per process, not at every build_dataset
        _PRINTED.add(key)
        print(f"[frcnn.data] dataset.classes is empty; {len(classes)} classes collected from the annotations "
              f"(label k = classes[k-1]): {classes}", flush=True)
    return classes


def build_dataset(dataset_cfg, split: str, *, train: bool, loader_cfg=None):
    """The dataset of one split. ``train=True``: random flip / jitter per ``loader_cfg`` (defaults when None),
    difficult objects (unless ``dataset.use_difficult``) and crowd regions left out of targets, images with no
    object dropped unless ``dataset.keep_empty``. Generates the shapes data first when ``dataset.name=shapes``."""
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
    classes = [str(c) for c in (dataset_cfg.classes or [])]
    if str(dataset_cfg.name) == "shapes":
        classes = check_classes(classes)
    dataset = COCODataset(ann_file, img_dir, classes or None, **common)
    if not classes:  # classes from this file: they must be the ones the model is built with
        expected = resolve_classes(dataset_cfg)
        if dataset.classes != expected:
            raise DataError(f"the categories of {ann_file} ({dataset.classes}) differ from those of the other "
                            f"split files ({expected}); set dataset.classes to fix the label order")
    return dataset


def build_train_loader(dataset, *, batch_size: int, loader_cfg, seed: int, start_iter: int = 0):
    """Infinite iterable of ``(images, targets)`` batches (lists), seeded, aspect-grouped when
    ``loader_cfg.aspect_grouping``; ``start_iter`` skips that many batches (resuming a run)."""
    return make_train_loader(dataset, batch_size=batch_size, loader_cfg=loader_cfg, seed=seed, start_iter=start_iter)


def build_test_loader(dataset, *, batch_size: int, loader_cfg):
    """Finite DataLoader of ``(images, targets)`` batches visiting every image once, in index order."""
    return make_test_loader(dataset, batch_size=batch_size, loader_cfg=loader_cfg)


__all__ = ["build_dataset", "build_train_loader", "build_test_loader", "resolve_classes"]
