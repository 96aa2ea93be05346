"""End to end: the detector learns a handful of shapes images (train and evaluate on the same images).

Slow (minutes on a CPU): run with ``pytest -m slow tests/engine/test_overfit.py``. The recipe below starts from
``experiment=shapes`` and is meant to be tuned; the assertion is the point: mAP > 0.9 on the training images.
"""
from __future__ import annotations

import json

import pytest

from frcnn.engine.launch import train

RECIPE = [
    "experiment=shapes",
    "dataset.shapes.num_train=8",
    "dataset.shapes.num_val=2",
    "dataset.shapes.num_test=2",
    "dataset.shapes.max_objects=3",
    "dataset.shapes.min_object_size=32",
    "dataset.shapes.difficult_fraction=0.0",
    "dataset.shapes.empty_fraction=0.0",
    "loader.num_workers=0",
    "loader.hflip_prob=0.0",
    "train.batch_size=4",
    "train.max_iters=400",
    "train.steps=[300]",
    "train.warmup_iters=50",
    "train.eval_split=train",  # evaluated on the very images it trained on
    "train.eval_period=0",
    "train.checkpoint_period=0",
    "train.log_period=20",
    "train.vis_images=0",
    "train.progress_bar=false",
]


@pytest.mark.slow
def test_overfits_a_few_shapes_images(tmp_path):
    from helpers import compose_config

    cfg = compose_config([*RECIPE, f"dataset.root={tmp_path / 'shapes'}"])
    metrics = train(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run/metrics.json").read_text())["mAP"] == pytest.approx(metrics["mAP"])
    assert metrics["mAP"] > 0.9, metrics
