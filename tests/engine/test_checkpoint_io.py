"""Checkpoint files: atomic writes that survive SIGKILL, rotation, safe loading, RNG state, model checks."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from frcnn.engine.checkpoint import (
    Checkpointer,
    CheckpointError,
    atomic_save,
    check_model_state,
    describe_mismatch,
    load_checkpoint,
    resolve_resume,
)
from frcnn.engine.runtime import rng_state, set_rng_state


def test_save_rotates_and_points_last_at_the_newest(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    for it in (10, 20, 30):
        ckpt.save({"model": {"w": torch.tensor([float(it)])}, "iteration": it}, it)
    names = sorted(p.name for p in ckpt.folder.iterdir())
    assert names == ["iter_0000020.pt", "iter_0000030.pt", "last.pt"]
    assert load_checkpoint(ckpt.last_path)["iteration"] == 30
    ckpt.save_best({"model": {"w": torch.tensor([1.0])}, "iteration": 20})
    assert load_checkpoint(ckpt.best_path)["iteration"] == 20
    assert not [p for p in ckpt.folder.iterdir() if p.name.endswith(".tmp")]


def test_resolve_resume(tmp_path):
    assert resolve_resume("", tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None
    atomic_save({"model": {}}, tmp_path / "last.pt")
    assert resolve_resume("auto", tmp_path) == tmp_path / "last.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        resolve_resume(str(tmp_path / "nope.pt"), tmp_path)


class _RunsCode:
    """Unpickling this creates a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "config": _RunsCode(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_unreadable_files_are_reported_with_their_name(tmp_path):
    bad = tmp_path / "truncated.pt"
    atomic_save({"model": {"w": torch.zeros(1000)}}, bad)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    atomic_save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an frcnn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_states_round_trip_through_a_weights_only_load(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    atomic_save({"model": {}, "rng": rng_state()}, tmp_path / "s.pt")
    expected = (torch.rand(3), random.random(), np.random.rand(3))
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "s.pt")["rng"])
    got = (torch.rand(3), random.random(), np.random.rand(3))
    assert torch.equal(expected[0], got[0]) and expected[1] == got[1] and np.array_equal(expected[2], got[2])


def test_a_state_dict_of_another_model_is_refused_naming_file_and_keys():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    other = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    with pytest.raises(CheckpointError) as info:
        check_model_state(other.state_dict(), model, "runs/a/last.pt")
    text = str(info.value)
    assert "runs/a/last.pt" in text and "1.weight" in text and "unexpected keys: 3.bias, 3.weight" in text
    check_model_state(model.state_dict(), model, "ok.pt")  # fits: no error
    diffs = describe_mismatch({"backbone": {"name": "vgg16"}, "dataset": {"classes": ["a"]}},
                              {"backbone": {"name": "resnet18"}, "dataset": {"classes": ["a"]}})
    assert diffs == ["backbone.name: checkpoint 'vgg16', config 'resnet18'"]


_WRITER = textwrap.dedent("""
    import sys, torch
    from frcnn.engine.checkpoint import Checkpointer
    ckpt = Checkpointer(sys.argv[1], keep=2)
    it = int(sys.argv[2])
    while True:
        it += 1
        ckpt.save({"model": {"w": torch.full((4_000_000,), float(it))}, "iteration": it}, it)
""")


def test_sigkill_while_writing_never_leaves_an_unreadable_last_pt(tmp_path):
    folder = tmp_path / "checkpoints"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = random.Random(0)
    iteration = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(folder), str(iteration)])
        try:
            deadline = time.monotonic() + 60
            start = iteration
            while True:  # wait until this writer has finished at least one checkpoint, then kill at random
                last = folder / "last.pt"
                if last.exists() and load_checkpoint(last)["iteration"] > start:
                    break
                assert time.monotonic() < deadline, "the writer wrote nothing"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        state = load_checkpoint(folder / "last.pt")  # always whole
        iteration = state["iteration"]
        assert torch.all(state["model"]["w"] == float(iteration))
        for path in Checkpointer(folder).periodic():  # the periodic files are written the same way
            load_checkpoint(path)
