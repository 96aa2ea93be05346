"""CUDA end to end: fp16 and bf16 training steps that learn, frcnn-train then frcnn-eval as commands with
device=cuda, and a CUDA run resumed to more iterations. Skipped without a GPU (the CPU runs these paths in bf16 in
the other tests); on a GPU machine they run with the rest of the suite."""
from __future__ import annotations

import json
import re

import pytest
import torch

import frcnn
from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.optim import build_optimizer
from frcnn.engine.runtime import autocast

from helpers import output_of, run_command, tiny_overrides

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
pytestmark = [pytest.mark.gpu, needs_cuda]

DEVICE = "cuda"
AMPS = ["fp16", "bf16"]
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
CLASSES = ["circle", "square", "triangle"]


def fixed_batch(device: torch.device):
    """Two 128x160 images with a few filled boxes of three colours (class = colour), and their targets."""
    generator = torch.Generator().manual_seed(0)
    boxes_per_image = [[(10, 12, 60, 70, 1), (80, 30, 140, 90, 2)], [(20, 60, 90, 120, 3), (100, 8, 150, 50, 1)]]
    images, targets = [], []
    for boxes in boxes_per_image:
        image = 0.5 + 0.05 * torch.randn(3, 128, 160, generator=generator)
        for x1, y1, x2, y2, label in boxes:
            image[:, y1:y2, x1:x2] = 0.1
            image[label - 1, y1:y2, x1:x2] = 0.9
        images.append(image.clamp(0, 1).to(device))
        targets.append({"boxes": torch.tensor([b[:4] for b in boxes], dtype=torch.float32, device=device),
                        "labels": torch.tensor([b[4] for b in boxes], dtype=torch.int64, device=device)})
    return images, targets


def conv_output_dtypes(model: torch.nn.Module) -> set:
    """The dtypes the model's convolutions produce in its next forward passes (filled in by forward hooks)."""
    seen = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    return seen


@pytest.mark.parametrize("amp", AMPS)
def test_training_steps_under_amp_learn_a_fixed_batch(tiny_cfg, amp):
    """The run's model and optimizer, stepped as the trainer does (autocast, the gradient scaler for fp16) on one
    batch over and over: every loss stays finite and the total falls (sampling makes single steps noisy, so the
    means of the first and last iterations are compared)."""
    cfg = tiny_cfg(f"train.amp={amp}", "train.lr=0.01")  # the optimizer depends on amp (not fused under fp16)
    device = torch.device(DEVICE)
    model = frcnn.build_model(cfg).to(device).train()
    optimizer = build_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    dtypes = conv_output_dtypes(model)
    images, targets = fixed_batch(device)
    history = []
    for _ in range(40):
        with autocast(amp, device):
            losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()
        history.append(torch.stack([value.detach().float() for value in losses.values()]))

    assert AMP_DTYPES[amp] in dtypes, f"no convolution ran in {amp}: {dtypes}"
    values = torch.stack(history).cpu()  # [iterations, losses]
    assert torch.isfinite(values).all(), f"non-finite losses {dict(zip(losses, values.T.tolist()))}"
    total = values.sum(dim=1)
    # From about 2.2 to under 60 % of it by the last ten on the CPU (bf16 and fp32, six seeds; one bad step can
    # double a single loss, hence means).
    first, last = total[:5].mean().item(), total[-10:].mean().item()
    assert last < 0.75 * first, f"{amp}: the total loss did not fall: {total.tolist()}"


def train_command(run_dir, data_root, *extra):
    return run_command("frcnn-train", *tiny_overrides(data_root), f"device={DEVICE}", "train.vis_images=0",
                       f"hydra.run.dir={run_dir}", *extra, cwd=run_dir.parent)


@pytest.mark.parametrize("amp", AMPS)
def test_frcnn_train_then_frcnn_eval_on_cuda(shapes_root, tmp_path, amp):
    run_dir = tmp_path / "run"
    proc = train_command(run_dir, shapes_root, f"train.amp={amp}", "train.max_iters=3")
    assert proc.returncode == 0, output_of(proc)
    state = load_checkpoint(run_dir / "checkpoints/last.pt")
    assert state["iteration"] == 3 and state["config"]["device"] == DEVICE and state["config"]["train"]["amp"] == amp
    assert f"device {DEVICE}" in (run_dir / "train.log").read_text()

    eval_dir = tmp_path / "eval"
    proc = run_command("frcnn-eval", f"checkpoint={run_dir / 'checkpoints/last.pt'}", f"device={DEVICE}",
                       f"amp={amp}", "loader.num_workers=0", f"hydra.run.dir={eval_dir}", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert "mAP" in proc.stdout and all(name in proc.stdout for name in CLASSES), output_of(proc)  # the table
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0 and set(metrics["per_class"]) == set(CLASSES)
    assert (eval_dir / "detections.json").is_file()


def logged_iterations(log: str) -> list:
    """The iteration numbers of train.log's loss lines (train.log_period=1: one per iteration)."""
    return [int(n) for n in re.findall(r"iter (\d+)/\d+ ", log)]


def test_a_cuda_run_resumed_to_more_iterations_continues_from_its_checkpoint(shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    first = train_command(run_dir, shapes_root, "train.amp=fp16", "train.max_iters=4", "train.checkpoint_period=2")
    assert first.returncode == 0, output_of(first)
    assert load_checkpoint(run_dir / "checkpoints/last.pt")["iteration"] == 4
    assert logged_iterations((run_dir / "train.log").read_text()) == [1, 2, 3, 4]

    resumed = train_command(run_dir, shapes_root, "train.amp=fp16", "train.max_iters=7", "train.checkpoint_period=2",
                            "train.resume=auto")
    assert resumed.returncode == 0, output_of(resumed)
    log = (run_dir / "train.log").read_text()
    assert re.search(r"resumed from \S*last\.pt at iteration 4\b", log), log
    assert logged_iterations(log) == [1, 2, 3, 4, 5, 6, 7], log  # the resumed run stepped 5..7 only
    state = load_checkpoint(run_dir / "checkpoints/last.pt")
    assert state["iteration"] == 7 and state["scheduler"]["last_epoch"] == 7
    assert state["config"]["train"]["max_iters"] == 7 and "cuda" in state["rng"]
    assert state["scaler"]["scale"] > 0  # fp16: the gradient scaler's state went on with the run
    assert 0.0 <= json.loads((run_dir / "metrics.json").read_text())["mAP"] <= 1.0
