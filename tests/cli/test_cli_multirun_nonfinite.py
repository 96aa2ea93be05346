"""Hydra multirun (one run directory per job) and a run stopped by a non-finite loss."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import output_of, pythonpath, run_command, tiny_overrides

# A Hydra callback that writes down what each job returned (the value a sweeper would optimise), since a
# multirun in a subprocess hands nothing back otherwise.
RECORDER = """
import json
from hydra.experimental.callback import Callback


class RecordReturns(Callback):
    def __init__(self, path):
        self.path = path

    def on_job_end(self, config, job_return, **kwargs):
        record = {"dir": config.hydra.runtime.output_dir, "value": job_return.return_value}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\\n")
"""


def test_multirun_gives_each_job_its_own_run_directory(cli_shapes_root, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    (tmp_path / "record_returns.py").write_text(RECORDER)
    monkeypatch.setenv("PYTHONPATH", pythonpath(tmp_path))
    returns = tmp_path / "returns.jsonl"
    proc = run_command("frcnn-train", "-m", *tiny_overrides(cli_shapes_root), "train.max_iters=1", "train.vis_images=0",
                   "train.lr=0.001,0.002", f"hydra.sweep.dir={sweep}",
                   "+hydra.callbacks.record._target_=record_returns.RecordReturns",
                   f"+hydra.callbacks.record.path={returns}", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]

    returned = {Path(r["dir"]).name: r["value"] for r in map(json.loads, returns.read_text().splitlines())}
    assert set(returned) == {"0", "1"}
    for job, lr in zip(jobs, [0.001, 0.002]):
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["mAP"] <= 1.0 and set(metrics["per_class"]) == {"circle", "square", "triangle"}
        # What the job returned to Hydra (for a sweeper to optimise) is the mAP it wrote.
        assert returned[job.name] == metrics["mAP"]
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        # The swept value reached the job's own composed config, its checkpoint and the optimizer it trained with.
        assert f"train.lr={lr}" in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
        assert yaml.safe_load((job / ".hydra/config.yaml").read_text())["train"]["lr"] == lr
        state = torch.load(job / "checkpoints/last.pt", map_location="cpu", weights_only=True)
        assert state["config"]["train"]["lr"] == lr
        assert state["scheduler"]["base_lrs"][0] == pytest.approx(lr)
        assert state["iteration"] == 1


def test_an_absurd_lr_stops_the_run_naming_iteration_and_loss(cli_shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_command("frcnn-train", *tiny_overrides(cli_shapes_root), "train.max_iters=10", "train.lr=1e10",
                   "train.checkpoint_period=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, output_of(proc)
    assert "non-finite loss at iteration" in text and "loss_" in text, output_of(proc)
    assert "Traceback" not in text
    bad_iteration = int(text.split("non-finite loss at iteration ")[1].split(":")[0])
    state = torch.load(run_dir / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] < bad_iteration
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "non-finite loss at iteration" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists()
