"""Bad input at the checkpoint and run-directory boundary: files that are not checkpoints, resuming whatever device
the tensors were loaded to, a run directory that holds another run or cannot be written, interrupted writes."""
from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.engine.checkpoint import Checkpointer, CheckpointError, atomic_save, load_checkpoint
from frcnn.engine.launch import train
from frcnn.engine.optim import build_optimizer, build_scheduler
from frcnn.engine.run_dir import check_run_dir
from frcnn.engine.runtime import rng_state
from frcnn.engine.trainer import Trainer
from frcnn.errors import RunDirError

from helpers import compose_config, tiny_overrides


@pytest.fixture
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "bad_input_shapes"

    def make(*extra):
        return compose_config([*tiny_overrides(root), "train.vis_images=0", *extra])

    return make


# ------------------------------------------------------------------------------- files that are not checkpoints
def test_files_that_are_not_checkpoints_are_named_as_such(tmp_path):
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"text\.pt is not a PyTorch checkpoint \(not a zip archive"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is not a PyTorch checkpoint: the file is empty"):
        load_checkpoint(empty)
    cut = tmp_path / "cut.pt"
    atomic_save({"model": {"w": torch.zeros(10_000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"cut\.pt is not a readable PyTorch checkpoint: the archive is trunc"):
        load_checkpoint(cut)


def test_checkpoints_get_the_usual_file_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = Checkpointer(tmp_path).save({"model": {}}, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644


# -------------------------------------------------------------------- resuming, wherever torch.load puts tensors
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))

    def forward(self, x):
        return self.body(x)


def _trainer(device: torch.device) -> Trainer:
    model = _Net()
    tc = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=0.0,
              bias_lr_factor=1.0, schedule="multistep", steps=[8], gamma=0.1, warmup_iters=0, warmup_factor=0.1,
              max_iters=10)
    tc = type("TC", (), tc)
    optimizer = build_optimizer(model, tc)
    return Trainer(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, tc), data=(),
                   max_iters=10, batch_size=1, device=device, scaler=torch.amp.GradScaler("cpu", enabled=False),
                   config={"backbone": {"name": "net"}})


def _take_a_step(trainer: Trainer) -> None:
    loss = trainer.model(torch.randn(3, 4)).pow(2).mean()
    loss.backward()
    trainer.optimizer.step()
    trainer.scheduler.step()
    trainer.iter += 1


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_resume_restores_the_same_states_whatever_device_the_run_uses(tmp_path, device):
    """``meta`` stands in for CUDA: a checkpoint loaded onto the run's device there holds tensors that
    ``torch.set_rng_state`` refuses ("RNG state must be a torch.ByteTensor") and that cannot be copied from. The
    trainer must read checkpoints onto the CPU and let each consumer place its part."""
    source = _trainer(torch.device("cpu"))
    _take_a_step(source)
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    path = tmp_path / "last.pt"
    atomic_save(source.checkpoint_state(), path)
    expected_draws = (torch.rand(4), random.random(), np.random.rand(2))

    target = _trainer(torch.device(device))  # its model lives on the CPU; only the run's device differs
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    target.resume(path)
    target.model.train()
    from frcnn.engine.runtime import set_rng_state

    set_rng_state(target._rng_to_restore)  # what Trainer.train does before the first step
    draws = (torch.rand(4), random.random(), np.random.rand(2))
    assert torch.equal(draws[0], expected_draws[0]) and draws[1] == expected_draws[1]
    assert np.array_equal(draws[2], expected_draws[2])
    assert target.iter == 1
    for key, value in source.model.state_dict().items():
        assert torch.equal(target.model.state_dict()[key], value), key
    for (_, a), (_, b) in zip(source.optimizer.state_dict()["state"].items(),
                              target.optimizer.state_dict()["state"].items()):
        assert a["momentum_buffer"].device.type == "cpu"  # next to its parameter
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert target.scheduler.state_dict()["last_epoch"] == 1


def test_rng_states_restore_from_tensors_of_any_dtype_or_layout():
    """The restore path normalises what it is given (a state passed through another tool may not be uint8)."""
    from frcnn.engine.runtime import set_rng_state

    torch.manual_seed(7)
    state = rng_state()
    expected = torch.rand(3)
    state["torch"] = state["torch"].to(torch.int16)  # values 0..255 survive the round trip
    torch.manual_seed(1)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------------------------ run directory
def test_a_fresh_start_over_a_finished_run_is_refused_and_changes_nothing(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(), run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix in (".pt", ".json")}
    assert (run / "checkpoints/last.pt") in before and (run / "metrics.json") in before
    with pytest.raises(RunDirError) as info:
        train(tiny_cfg("train.max_iters=1"), run)
    message = str(info.value)
    assert str(run) in message and "last.pt" in message
    assert "train.resume=auto" in message and "train.overwrite=true" in message and "hydra.run.dir" in message
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix in (".pt", ".json")}
    assert after == before


def test_overwrite_starts_over_without_mixing_two_runs(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg("train.checkpoint_period=1", "train.max_iters=3"), run)
    assert (run / "checkpoints/iter_0000003.pt").exists()
    train(tiny_cfg("train.max_iters=1", "train.overwrite=true"), run)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "iter_0000001.pt", "last.pt"]
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 1
    assert load_checkpoint(run / "checkpoints/best.pt")["iteration"] == 1  # not the first run's best


def test_resume_auto_in_the_same_directory_is_allowed(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg("train.max_iters=1"), run)
    train(tiny_cfg("train.max_iters=2", "train.resume=auto"), run)
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 2


def test_a_run_directory_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=rf"cannot write into {blocker}/run.*must be writable.*hydra\.run\.dir"):
        check_run_dir(blocker / "run", resume="", overwrite=False)
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(RunDirError, match="locked"):
            check_run_dir(locked / "run", resume="", overwrite=False)


def test_an_unwritable_checkpoints_folder_fails_before_the_first_step(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(RunDirError, match="checkpoints"):
        train(tiny_cfg(), run)
    assert not (run / "train.log").exists() or "iter 1/" not in (run / "train.log").read_text()


def test_temporaries_left_by_a_killed_save_are_removed_at_the_next_start(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg("train.max_iters=1"), run)
    stale = [run / "checkpoints/.iter_0000002.pt.k3j2x9.tmp", run / "checkpoints/.last.pt.123.link.tmp",
             run / ".metrics.json.a8b7.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    train(tiny_cfg("train.max_iters=2", "train.resume=auto"), run)
    assert not any(path.exists() for path in stale)
    assert "interrupted" in (run / "train.log").read_text()


def test_the_checkpoint_remembers_where_the_data_is_from_any_directory(tiny_cfg, tmp_path, monkeypatch):
    """frcnn-eval run from another directory must find the training data, not generate a new copy there."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg()
    cfg.dataset.root = "relative/shapes"
    train(cfg, tmp_path / "run")
    stored = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["config"]["dataset"]["root"]
    assert stored == str(tmp_path / "relative/shapes")


def test_a_corrupt_image_in_the_evaluation_split_stops_the_run_before_the_first_step(tiny_cfg, tmp_path):
    from frcnn.data.build import build_dataset
    from frcnn.data.errors import DataError

    cfg = tiny_cfg(f"dataset.root={tmp_path / 'shapes'}")
    val = build_dataset(cfg.dataset, "val", train=False)  # generates the data
    broken = Path(val.image_path(1))
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=rf"1 of 2 images cannot be read: .*{broken.name}"):
        train(cfg, tmp_path / "run")
    assert "iter 1/" not in (tmp_path / "run/train.log").read_text()
    assert not list((tmp_path / "run/checkpoints").glob("*.pt"))
