"""Parameter groups (decay and lr per kind) and the warmup + multistep / cosine schedule."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from frcnn.engine.optim import WarmupSchedule, build_optimizer, build_scheduler


def _train_cfg(**kw):
    base = dict(lr=0.01, momentum=0.9, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=0.0,
                bias_lr_factor=2.0, schedule="multistep", steps=[6, 8], gamma=0.1, warmup_iters=4,
                warmup_factor=0.1, max_iters=10)
    base.update(kw)
    return SimpleNamespace(**base)


def test_groups_split_weights_norms_and_biases_and_skip_frozen():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 1, bias=False),
                          nn.Linear(4, 2))
    model[3].weight.requires_grad_(False)
    optimizer = build_optimizer(model, _train_cfg())
    groups = {g["name"]: g for g in optimizer.param_groups}
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(groups["weight"]["params"]) == ids([model[0].weight, model[4].weight])
    assert ids(groups["norm"]["params"]) == ids([model[1].weight, model[1].bias, model[2].weight, model[2].bias])
    assert ids(groups["bias"]["params"]) == ids([model[0].bias, model[4].bias])
    assert groups["weight"]["weight_decay"] == 1e-4 and groups["norm"]["weight_decay"] == 0.0
    assert groups["bias"]["weight_decay"] == 0.0
    assert groups["bias"]["lr"] == pytest.approx(0.02) and groups["weight"]["lr"] == pytest.approx(0.01)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def test_sgd_steps_follow_the_update_rule_per_group_on_the_fused_kernel():
    """Two steps by hand: v = momentum * v + (g + wd * w); w -= lr * v, with each group's lr and decay."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(1.0)
    optimizer = build_optimizer(model, _train_cfg(lr=0.1, momentum=0.5, weight_decay=0.25, bias_lr_factor=2.0))
    assert optimizer.defaults["fused"] is True  # float CPU parameters: the one-pass kernel
    for _ in range(2):
        model.weight.grad = torch.tensor([[1.0]])
        model.bias.grad = torch.tensor([3.0])
        optimizer.step()
    # weight: v1 = 1 + 0.25 * 2 = 1.5, w1 = 2 - 0.1 * 1.5 = 1.85; v2 = 0.5 * 1.5 + (1 + 0.4625) = 2.2125,
    # w2 = 1.85 - 0.22125 = 1.62875. bias (lr 0.2, no decay): v1 = 3, b1 = 0.4; v2 = 4.5, b2 = -0.5.
    assert model.weight.item() == pytest.approx(1.62875)
    assert model.bias.item() == pytest.approx(-0.5)


def test_multistep_with_linear_warmup():
    f = WarmupSchedule(schedule="multistep", max_iters=10, steps=[6, 8], gamma=0.1, warmup_iters=4, warmup_factor=0.1)
    assert [round(f(i), 6) for i in range(10)] == [0.1, 0.325, 0.55, 0.775, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


def test_cosine_decays_to_zero():
    f = WarmupSchedule(schedule="cosine", max_iters=100, warmup_iters=0)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_steps_per_iteration_and_round_trips_its_state():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, _train_cfg())
    scheduler = build_scheduler(optimizer, _train_cfg())
    lrs = []
    for _ in range(9):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[4] == pytest.approx(0.01) and lrs[8] == pytest.approx(1e-4)
    state = scheduler.state_dict()
    other_opt = build_optimizer(model, _train_cfg())
    other = build_scheduler(other_opt, _train_cfg())
    other.load_state_dict(state)
    assert other.last_epoch == 9 and other.get_last_lr() == scheduler.get_last_lr()


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ValueError, match="schedule"):
        WarmupSchedule(schedule="poly", max_iters=10)
    with pytest.raises(ValueError, match="increasing"):
        WarmupSchedule(schedule="multistep", max_iters=10, steps=[8, 6])
