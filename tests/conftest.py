"""Shared test helpers: compose the real configs from conf/, shrunk for CPU tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import frcnn  # noqa: F401  (registers the config schemas)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Small but complete: every stage runs, in a fraction of a second on a CPU.
SMALL_MODEL = [
    "model.input.min_size=[128]",
    "model.input.max_size=192",
    "model.rpn.pre_nms_top_n.train=600",
    "model.rpn.post_nms_top_n.train=100",
    "model.rpn.pre_nms_top_n.test=300",
    "model.rpn.post_nms_top_n.test=50",
    "model.roi.batch_size_per_image=32",
    "model.anchor.scales=[2,4,8]",
    "model.rpn.min_size=2",
]


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


@pytest.fixture(scope="session")
def tiny_run_overrides():
    """``tiny_run_overrides(data_root)``: the overrides of a complete, seconds-long training run (engine, CLI)."""
    return tiny_overrides


def compose_config(overrides=(), config_name: str = "train"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture
def small_config():
    def make(*overrides):
        return compose_config([*SMALL_MODEL, *overrides])

    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
