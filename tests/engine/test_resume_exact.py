"""A run interrupted after its last checkpoint and resumed ends with exactly the weights of an uninterrupted one
(CPU, the real model and data: random flips and multi-scale sizes draw from the restored RNG states)."""
from __future__ import annotations

import pytest
import torch

from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.launch import train
from frcnn.engine.trainer import Trainer

COMMON = ["train.max_iters=3", "train.checkpoint_period=2", "model.input.min_size=[96,128]", "train.vis_images=0",
          "loader.hflip_prob=0.5", "train.lr=0.01"]


def _assert_same(a: dict, b: dict, what: str):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.allclose(a[key].float(), b[key].float(), rtol=0, atol=1e-7), f"{what}: {key} differs"


def test_a_resumed_run_ends_with_the_same_weights(tiny_cfg, tmp_path, monkeypatch):
    train(tiny_cfg(*COMMON), tmp_path / "straight")

    run_step = Trainer.run_step

    def interrupted(self):
        if self.iter == 2:  # right after the checkpoint of iteration 2: iteration 3 never runs
            raise KeyboardInterrupt
        run_step(self)

    monkeypatch.setattr(Trainer, "run_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(*COMMON), tmp_path / "resumed")
    monkeypatch.setattr(Trainer, "run_step", run_step)
    assert load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["iteration"] == 2

    train(tiny_cfg(*COMMON, "train.resume=auto"), tmp_path / "resumed")

    straight = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    resumed = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert straight["iteration"] == resumed["iteration"] == 3
    _assert_same(straight["model"], resumed["model"], "model")
    for (ka, va), (_, vb) in zip(straight["optimizer"]["state"].items(), resumed["optimizer"]["state"].items()):
        _assert_same(va, vb, f"optimizer state {ka}")
    assert straight["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"] == 3
    assert "resumed from" in (tmp_path / "resumed/train.log").read_text()


def test_resuming_from_another_models_checkpoint_is_refused(tiny_cfg, tmp_path):
    train(tiny_cfg("train.max_iters=1", "train.vis_images=0"), tmp_path / "a")
    path = tmp_path / "a/checkpoints/last.pt"
    with pytest.raises(Exception) as info:
        train(tiny_cfg("train.max_iters=2", f"train.resume={path}", "backbone.norm=bn"), tmp_path / "b")
    assert str(path) in str(info.value) and "backbone.norm" in str(info.value)
