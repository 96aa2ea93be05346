"""Shared test helpers: compose the real configs from conf/, shrunk for CPU tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import frcnn  # noqa: F401  (registers the config schemas)
from hydra import compose, initialize_config_dir

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
