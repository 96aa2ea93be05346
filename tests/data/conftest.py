"""Fixtures for the data-layer tests: tiny VOC / COCO datasets written to tmp_path and a small shapes dataset
generated once per session (the writers themselves are in tests/helpers/data.py)."""
from __future__ import annotations

import pytest

from helpers.data import SMALL_SHAPES, VOC_IMAGES, coco_data, write_coco, write_voc


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "voc"
    write_voc(root / "VOC2007", VOC_IMAGES, {"trainval": ["000001", "000002", "000003"], "test": ["000002"]})
    return root


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    write_coco(root, coco_data())
    return root


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A small shapes dataset (14 images), generated once per session."""
    from frcnn.data.shapes import generate_shapes

    root = tmp_path_factory.mktemp("shapes") / "shapes"
    generate_shapes(root, SMALL_SHAPES, verbose=False)
    return root
