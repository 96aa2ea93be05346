"""FPN models train from scratch: losses fall within a few dozen steps (fast), and the shipped recipe
``experiment=shapes_fpn`` detects on the held-out test split (slow: about 12 minutes on 2 CPU cores)."""
from __future__ import annotations

import math

import pytest
import torch

from frcnn.data.build import build_dataset
from frcnn.engine.launch import train
from frcnn.modeling.build import build_model

from helpers import compose_config, metrics_on_test_split


def test_resnet18_fpn_from_scratch_has_finite_falling_losses(tmp_path):
    cfg = compose_config(["experiment=shapes_fpn", f"dataset.root={tmp_path / 'shapes'}", "dataset.shapes.num_train=4",
                          "dataset.shapes.num_val=1", "dataset.shapes.num_test=1", "dataset.shapes.empty_fraction=0",
                          "model.input.min_size=[160]", "model.input.max_size=224"])
    torch.manual_seed(0)
    images, targets = zip(*(build_dataset(cfg.dataset, "train", train=False)[i][:2] for i in range(4)))
    model = build_model(cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    totals = []
    for _ in range(40):
        losses = model(list(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        assert all(math.isfinite(v.item()) for v in losses.values()), losses
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    first, last = sum(totals[:10]) / 10, sum(totals[-10:]) / 10
    assert last < 0.75 * first, " ".join(f"{t:.2f}" for t in totals)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about 12 minutes alone on 2 cores
def test_shapes_fpn_recipe_detects_on_the_test_split(tmp_path):
    cfg = compose_config(["experiment=shapes_fpn", f"dataset.root={tmp_path / 'shapes'}", "train.progress_bar=false",
                          "train.checkpoint_period=0"])
    val_metrics = train(cfg, tmp_path / "run")
    metrics = metrics_on_test_split(cfg, tmp_path / "run/checkpoints/last.pt")
    print(f"shapes_fpn recipe: val mAP {val_metrics['mAP']:.4f}, test mAP {metrics['mAP']:.4f}")
    assert metrics["mAP"] >= 0.8, metrics
