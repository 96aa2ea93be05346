"""Fixtures for the engine tests: the real configs shrunk to a few tiny shapes images and a tiny model."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import frcnn  # noqa: F401  (registers the config schemas)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def tiny_overrides(data_root) -> list:
    """A complete training run in seconds on a CPU: 4 train images of ~100 px, ResNet-18, small top-N."""
    return [
        "backbone=resnet18",
        "dataset=shapes",
        f"dataset.root={data_root}",
        "dataset.shapes.num_train=4",
        "dataset.shapes.num_val=2",
        "dataset.shapes.num_test=2",
        "dataset.shapes.image_min_side=96",
        "dataset.shapes.image_max_side=128",
        "dataset.shapes.max_objects=3",
        "model.input.min_size=[128]",
        "model.input.max_size=160",
        "model.anchor.scales=[1,2,4]",
        "model.rpn.min_size=2",
        "model.rpn.pre_nms_top_n.train=300",
        "model.rpn.post_nms_top_n.train=50",
        "model.rpn.pre_nms_top_n.test=100",
        "model.rpn.post_nms_top_n.test=20",
        "model.roi.batch_size_per_image=16",
        "loader.num_workers=0",
        "train.batch_size=2",
        "train.max_iters=2",
        "train.warmup_iters=0",
        "train.log_period=1",
        "train.vis_images=1",
        "train.progress_bar=false",
    ]


def compose_train(overrides) -> "DictConfig":  # noqa: F821
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A folder the tiny shapes data is generated into on first use (shared by the session's tests)."""
    return tmp_path_factory.mktemp("shapes_data") / "shapes"


@pytest.fixture
def tiny_cfg(shapes_root):
    def make(*extra):
        return compose_train([*tiny_overrides(shapes_root), *extra])

    return make
