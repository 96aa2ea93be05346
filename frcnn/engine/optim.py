"""SGD with per-group weight decay / learning rate, and the warmup + multistep / cosine schedule."""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn

from frcnn.errors import ConfigError

SCHEDULES = ("multistep", "cosine")

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


def parameter_groups(
    model: nn.Module, *, lr: float, weight_decay: float, weight_decay_norm: float, weight_decay_bias: float,
    bias_lr_factor: float,
) -> List[dict]:
    """Trainable parameters in up to three groups: weights, norm-layer parameters, biases.

    Norm parameters and biases get their own weight decay (usually none: decaying a BatchNorm scale or a bias
    only shrinks the output range), biases also ``bias_lr_factor`` times the learning rate (the Caffe recipes'
    "double bias lr"). Frozen parameters (``requires_grad=False``) are left out.
    """
    groups = {
        "weight": {"params": [], "lr": lr, "weight_decay": weight_decay},
        "norm": {"params": [], "lr": lr, "weight_decay": weight_decay_norm},
        "bias": {"params": [], "lr": lr * bias_lr_factor, "weight_decay": weight_decay_bias},
    }
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, _NORM_TYPES):
                key = "norm"
            elif name == "bias":
                key = "bias"
            else:
                key = "weight"
            groups[key]["params"].append(param)
    result = []
    for key, group in groups.items():
        if group["params"]:
            group["name"] = key
            result.append(group)
    if not result:
        raise ValueError("the model has no trainable parameters")
    return result


def build_optimizer(model: nn.Module, train_cfg) -> torch.optim.Optimizer:
    groups = parameter_groups(
        model,
        lr=float(train_cfg.lr),
        weight_decay=float(train_cfg.weight_decay),
        weight_decay_norm=float(train_cfg.weight_decay_norm),
        weight_decay_bias=float(train_cfg.weight_decay_bias),
        bias_lr_factor=float(train_cfg.bias_lr_factor),
    )
    params = [p for group in groups for p in group["params"]]
    # Not under fp16: when the gradient scaler skips a step (inf/NaN gradients), torch's fused SGD still stores
    # momentum buffers, made by torch.empty_like and never written, which the next applied step uses.
    fused = _fused_kernel_available(params) and str(getattr(train_cfg, "amp", "off")) != "fp16"
    return torch.optim.SGD(groups, lr=float(train_cfg.lr), momentum=float(train_cfg.momentum), fused=fused)


def _fused_kernel_available(params: Sequence[Tensor]) -> bool:
    """Whether SGD's fused kernel takes these parameters: float tensors on the CPU or a CUDA device.

    The fused kernel updates each parameter in one pass (decay, momentum, step) where the default "foreach" path
    makes several over all of them: several times faster for VGG16's 134 M trainable parameters (README: Speed).
    It unscales inside the kernel, but it also steps when the gradient scaler skips a step, so
    ``build_optimizer`` does not use it under fp16.
    """
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


class WarmupSchedule:
    """lr factor at an iteration: linear warmup from ``warmup_factor`` to 1 over ``warmup_iters``, times the
    decay: ``gamma ** (number of steps passed)`` (multistep) or a half cosine from 1 to 0 over ``max_iters``.

    A plain callable object (no closure), so ``LambdaLR.state_dict()`` stores it as a dict of numbers.
    """

    def __init__(self, *, schedule: str, max_iters: int, steps: Sequence[int] = (), gamma: float = 0.1,
                 warmup_iters: int = 0, warmup_factor: float = 0.001):
        if schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        steps = [int(s) for s in steps]
        if steps != sorted(steps):
            raise ConfigError(f"train.steps must be increasing, got {steps}")
        self.schedule = schedule
        self.max_iters = int(max_iters)
        self.steps = steps
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, iteration: int) -> float:
        if self.schedule == "multistep":
            decay = self.gamma ** sum(1 for step in self.steps if iteration >= step)
        else:
            progress = min(iteration, self.max_iters) / max(1, self.max_iters)
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            decay *= self.warmup_factor * (1.0 - alpha) + alpha
        return decay


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration; its state (``last_epoch`` = iterations done) goes into checkpoints."""
    schedule = WarmupSchedule(
        schedule=str(train_cfg.schedule),
        max_iters=int(train_cfg.max_iters),
        steps=list(train_cfg.steps),
        gamma=float(train_cfg.gamma),
        warmup_iters=int(train_cfg.warmup_iters),
        warmup_factor=float(train_cfg.warmup_factor),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
