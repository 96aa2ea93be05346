"""Data layer: VOC and COCO loaders, the synthetic shapes generator, augmentation and batching.

The engine uses the four entry points of :mod:`frcnn.data.build`; the dataset contract (items, ``classes``,
``image_ids``, ``image_size``, ``ground_truth``) is described in :mod:`frcnn.data.dataset`.
"""
from frcnn.data.build import build_dataset, build_test_loader, build_train_loader, resolve_classes
from frcnn.data.coco import COCODataset
from frcnn.data.dataset import DetectionDataset
from frcnn.data.errors import DataError
from frcnn.data.loader import InfiniteGroupedBatchSampler, collate
from frcnn.data.shapes import generate_shapes
from frcnn.data.voc import VOC_CLASSES, VOCDataset

__all__ = [
    "build_dataset", "build_train_loader", "build_test_loader", "resolve_classes",
    "DetectionDataset", "VOCDataset", "COCODataset", "DataError",
    "InfiniteGroupedBatchSampler", "collate", "generate_shapes", "VOC_CLASSES",
]
