"""CUDA paths: fp16 autocast with the gradient scaler, channels_last, device=auto. Skipped without a GPU."""
from __future__ import annotations

import pytest
import torch

from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.runtime import autocast, check_amp, resolve_device
from frcnn.engine.launch import train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_device_and_amp_choices_on_this_machine():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert check_amp("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        check_amp("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="amp must be one of"):
        check_amp("fp8", torch.device("cpu"))
    with autocast("bf16", torch.device("cpu")):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.gpu
@needs_cuda
def test_fp16_training_on_cuda_with_the_gradient_scaler(tiny_cfg, tmp_path):
    cfg = tiny_cfg("device=cuda", "train.amp=fp16", "model.channels_last=true", "train.max_iters=3",
                   "train.checkpoint_period=2", "loader.pin_memory=true")
    metrics = train(cfg, tmp_path / "run")
    assert "mAP" in metrics
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert state["scaler"] and "scale" in state["scaler"]
    assert "cuda" in state["rng"]
    resumed = tiny_cfg("device=cuda", "train.amp=fp16", "model.channels_last=true", "train.max_iters=4",
                       "train.resume=auto")
    train(resumed, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["iteration"] == 4
