"""The step loop with a stand-in model: NaN/inf detection, no host syncs between log periods, AMP on CPU."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from frcnn.engine.checkpoint import Checkpointer, load_checkpoint
from frcnn.engine.hooks import CheckpointHook, LoggingHook
from frcnn.engine.optim import build_optimizer, build_scheduler
from frcnn.engine.trainer import NonFiniteLossError, Trainer

NAMES = ("loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box")


class StandIn(nn.Module):
    """Four losses from a small network; ``bad_at`` (1-based call number) makes one loss non-finite."""

    def __init__(self, bad_at=None, bad_loss="loss_rcnn_box", bad_value=float("nan")):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, 4))
        self.calls = 0
        self.bad_at, self.bad_loss, self.bad_value = bad_at, bad_loss, bad_value

    def forward(self, images, targets):
        self.calls += 1
        x = torch.stack([im.float() / 255 for im in images])
        out = self.net(x).pow(2).mean(dim=0)
        losses = dict(zip(NAMES, out.unbind()))
        if self.calls == self.bad_at:
            losses[self.bad_loss] = losses[self.bad_loss] * self.bad_value
        return losses


def _data():
    gen = torch.Generator().manual_seed(0)
    while True:
        images = [torch.randint(0, 255, (3, 8, 8), generator=gen, dtype=torch.uint8) for _ in range(2)]
        yield images, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2


def _trainer(model, hooks, max_iters=10, **kw):
    tc = SimpleNamespace(lr=0.01, momentum=0.9, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=0.0,
                         bias_lr_factor=1.0, schedule="multistep", steps=[8], gamma=0.1, warmup_iters=2,
                         warmup_factor=0.1, max_iters=max_iters)
    optimizer = build_optimizer(model, tc)
    return Trainer(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, tc), data=_data(),
                   max_iters=max_iters, batch_size=2, device=torch.device("cpu"), hooks=hooks,
                   config={"backbone": {"name": "standin"}}, **kw)


@pytest.mark.parametrize("bad_value,shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_a_non_finite_loss_stops_the_run_naming_iteration_and_loss(tmp_path, bad_value, shown):
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    hooks = [LoggingHook(period=4, progress_bar=False), CheckpointHook(checkpointer, period=3)]
    trainer = _trainer(StandIn(bad_at=5, bad_loss="loss_rpn_box", bad_value=bad_value), hooks)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    assert info.value.iteration == 5 and info.value.loss == "loss_rpn_box"
    assert "iteration 5" in str(info.value) and "loss_rpn_box" in str(info.value) and shown in str(info.value)
    # found when the checkpoint at 6 was due: nothing was written after the bad step, the one at 3 is intact
    assert trainer.iter == 6
    state = load_checkpoint(checkpointer.last_path)
    assert state["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [p.name for p in checkpointer.periodic()] == ["iter_0000003.pt"]


def test_the_step_loop_reads_nothing_back_between_log_periods(monkeypatch):
    """No .item()/.cpu()/.tolist() inside steps; the losses are read once per log period."""
    reads = []
    in_step = {"on": False}
    for name in ("item", "cpu", "tolist"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, __original=original, __name=name, **k):
            if in_step["on"]:
                raise AssertionError(f"Tensor.{__name}() inside the training step")
            reads.append(__name)
            return __original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    trainer = _trainer(StandIn(), [LoggingHook(period=5, progress_bar=False)])
    run_step = trainer.run_step

    def watched():
        in_step["on"] = True
        try:
            run_step()
        finally:
            in_step["on"] = False

    trainer.run_step = watched
    trainer.train()
    assert trainer.iter == 10
    assert reads.count("cpu") == 2  # one read per log period (5 and 10)


def test_bf16_autocast_and_gradient_clipping_on_cpu():
    model = StandIn()
    trainer = _trainer(model, [], max_iters=3, amp="bf16", clip_grad_norm=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    trainer.check_losses()
    assert trainer.iter == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_checkpoint_state_restores_the_run(tmp_path):
    trainer = _trainer(StandIn(), [], max_iters=4)
    trainer.train()
    state = trainer.checkpoint_state()
    torch.save(state, tmp_path / "s.pt")
    loaded = load_checkpoint(tmp_path / "s.pt")
    other = _trainer(StandIn(), [], max_iters=6)
    other.load_checkpoint_state(loaded, tmp_path / "s.pt")
    assert other.iter == 4 and other.scheduler.last_epoch == 4
    for a, b in itertools.zip_longest(trainer.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)
    mismatched = _trainer(StandIn(), [])
    mismatched.config = {"backbone": {"name": "other"}}
    with pytest.raises(Exception, match=r"s\.pt.*backbone\.name"):
        mismatched.load_checkpoint_state(loaded, tmp_path / "s.pt")
