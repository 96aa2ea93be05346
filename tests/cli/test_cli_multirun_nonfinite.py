"""Hydra multirun (one run directory per job) and a run stopped by a non-finite loss."""
from __future__ import annotations

import json

import torch


def test_multirun_gives_each_job_its_own_run_directory(cli, cli_shapes_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli.run("frcnn-train", "-m", *cli.tiny(cli_shapes_root), "train.max_iters=1", "train.vis_images=0",
                   "train.lr=0.001,0.002", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, cli.output(proc)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["mAP"] >= 0.0
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        state = torch.load(job / "checkpoints/last.pt", map_location="cpu", weights_only=True)
        lrs.append(state["config"]["train"]["lr"])
    assert lrs == [0.001, 0.002]


def test_an_absurd_lr_stops_the_run_naming_iteration_and_loss(cli, cli_shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = cli.run("frcnn-train", *cli.tiny(cli_shapes_root), "train.max_iters=10", "train.lr=1e10",
                   "train.checkpoint_period=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, cli.output(proc)
    assert "non-finite loss at iteration" in text and "loss_" in text, cli.output(proc)
    assert "Traceback" not in text
    bad_iteration = int(text.split("non-finite loss at iteration ")[1].split(":")[0])
    state = torch.load(run_dir / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] < bad_iteration
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "non-finite loss at iteration" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists()
