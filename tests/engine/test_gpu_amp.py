"""CUDA paths: fp16 autocast with the gradient scaler, channels_last, device=auto. The fp16 training test is skipped
without a GPU; the device/amp choices and the optimizer-under-the-scaler check run on the CPU too."""
from __future__ import annotations

import json

import pytest
import torch

from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.launch import train
from frcnn.engine.optim import build_optimizer
from frcnn.engine.runtime import autocast, check_amp, resolve_device
from frcnn.engine.trainer import Trainer

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


def test_a_step_the_gradient_scaler_skips_leaves_the_optimizer_untouched(tiny_cfg):
    """torch's fused SGD steps even when the gradient scaler found inf/NaN: on a skipped first step it stored
    momentum buffers made by torch.empty_like (uninitialised memory) that the next applied step used. Under fp16
    the run's SGD is therefore not fused."""
    # The optimizer a run builds, driven the way Trainer.run_step drives it; on the CPU when there is no GPU (the
    # scaler works there too, and the fused kernel's Python side is the same on both devices).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.nn.Linear(8, 8).to(device)
    optimizer = build_optimizer(model, tiny_cfg("train.amp=fp16").train)
    scaler = torch.amp.GradScaler(device)
    before = {name: value.clone() for name, value in model.state_dict().items()}

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(model(torch.ones(1, 8, device=device)).sum() * float("inf")).backward()  # every gradient inf
    scaler.step(optimizer)
    scaler.update()

    assert scaler.get_scale() == 2.0**15  # the scaler saw the overflow and backed off
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not any(optimizer.state.values()), "a skipped step left optimizer state (momentum buffers) behind"


INIT_SCALE = 2.0**16  # torch.amp.GradScaler's initial scale; it grows only after 2000 clean steps


def observe_steps(monkeypatch) -> list:
    """Record each training step: the trunk's input layout and output dtype, the losses, the scaler's scale after."""
    steps = []
    run_step = Trainer.run_step

    def observed(self):
        seen = {}

        def on_trunk(module, inputs, output):
            seen["channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)
            seen["features_dtype"] = output.dtype

        def on_model(module, inputs, losses):
            seen["losses"] = {name: value.detach() for name, value in losses.items()}

        handles = [self.model.trunk.register_forward_hook(on_trunk), self.model.register_forward_hook(on_model)]
        try:
            run_step(self)
        finally:
            for handle in handles:
                handle.remove()
        seen["iteration"], seen["scale"] = self.iter + 1, self.scaler.get_scale()
        steps.append(seen)

    monkeypatch.setattr(Trainer, "run_step", observed)
    return steps


def replay_scaler(scales, scale=INIT_SCALE, tracker=0):
    """The (scale, growth tracker) a GradScaler reaches through ``scales`` (its scale after each step): a kept
    scale is a clean step (tracker + 1), a halved one a step skipped for inf/NaN gradients (tracker back to 0)."""
    for new in scales:
        assert new in (scale, scale / 2), f"scale went from {scale} to {new}"
        tracker = tracker + 1 if new == scale else 0
        scale = new
    return scale, tracker


def check_fp16_steps(steps, device: str, iterations):
    assert [s["iteration"] for s in steps] == list(iterations)
    for step in steps:
        assert step["channels_last"], "model.channels_last=true: the trunk takes a channels_last batch"
        assert step["features_dtype"] == torch.float16, "the trunk ran outside fp16 autocast"
        assert set(step["losses"]) == {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}
        for name, value in step["losses"].items():
            # The losses are computed in float32 whatever the autocast dtype, on the training device.
            assert value.dtype == torch.float32 and value.device.type == device, name
            assert torch.isfinite(value) and value >= 0, f"{name} = {value} at iteration {step['iteration']}"
        assert step["scale"] > 0


def check_fp16_training_and_resume(tiny_cfg, run_dir, monkeypatch, device: str):
    """fp16 + channels_last for 3 iterations (checkpoints at 2 and 3), then resumed to 4, on ``device`` ("cuda": fp16
    is refused on the CPU), watching every step."""
    fp16 = [f"device={device}", "train.amp=fp16", "model.channels_last=true"]
    steps = observe_steps(monkeypatch)
    metrics = train(tiny_cfg(*fp16, "train.max_iters=3", "train.checkpoint_period=2", "loader.pin_memory=true"),
                    run_dir)
    check_fp16_steps(steps, device, [1, 2, 3])
    scales = [s["scale"] for s in steps]
    assert any(new == old for new, old in zip(scales, [INIT_SCALE, *scales])), f"every step was skipped: {scales}"

    # The checkpoints hold the scaler's state as it was at their iteration.
    for iteration in (2, 3):
        state = load_checkpoint(run_dir / f"checkpoints/iter_{iteration:07d}.pt")
        assert state["iteration"] == iteration
        scale, tracker = replay_scaler(scales[:iteration])
        assert state["scaler"]["scale"] == scale and state["scaler"]["_growth_tracker"] == tracker
    assert state["scaler"] == load_checkpoint(run_dir / "checkpoints/last.pt")["scaler"]
    for name, tensor in state["model"].items():
        if tensor.is_floating_point():  # fp16 autocast keeps float32 master weights
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name
    if device == "cuda":
        assert "cuda" in state["rng"]

    assert 0.0 <= metrics["mAP"] <= 1.0 and set(metrics["per_class"]) == {"circle", "square", "triangle"}
    assert json.loads((run_dir / "metrics.json").read_text())["mAP"] == metrics["mAP"]

    # Resumed: only iteration 4 runs, from the stored scaler (a fresh one would restart at 2^16 with tracker 1).
    steps.clear()
    train(tiny_cfg(*fp16, "train.max_iters=4", "train.resume=auto"), run_dir)
    check_fp16_steps(steps, device, [4])
    resumed = load_checkpoint(run_dir / "checkpoints/last.pt")
    assert resumed["iteration"] == 4 and resumed["scheduler"]["last_epoch"] == 4
    scale, tracker = replay_scaler([steps[0]["scale"]], state["scaler"]["scale"], state["scaler"]["_growth_tracker"])
    assert resumed["scaler"]["scale"] == scale and resumed["scaler"]["_growth_tracker"] == tracker
    assert "resumed from" in (run_dir / "train.log").read_text()


@pytest.mark.gpu
@needs_cuda
def test_fp16_training_on_cuda_with_the_gradient_scaler(tiny_cfg, tmp_path, monkeypatch):
    check_fp16_training_and_resume(tiny_cfg, tmp_path / "run", monkeypatch, "cuda")
