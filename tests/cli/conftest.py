"""Fixtures for the command tests: the installed console scripts, run in a subprocess on tiny shapes data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def tiny_overrides(data_root) -> list:
    """A complete 2-iteration training run on 4 images of ~100 px (ResNet-18, small top-N, no workers)."""
    return [
        "backbone=resnet18",
        "dataset=shapes",
        f"dataset.root={data_root}",
        "dataset.shapes.num_train=4",
        "dataset.shapes.num_val=2",
        "dataset.shapes.num_test=2",
        "dataset.shapes.image_min_side=96",
        "dataset.shapes.image_max_side=128",
        "dataset.shapes.max_objects=3",
        "model.input.min_size=[128]",
        "model.input.max_size=160",
        "model.anchor.scales=[1,2,4]",
        "model.rpn.min_size=2",
        "model.rpn.pre_nms_top_n.train=300",
        "model.rpn.post_nms_top_n.train=50",
        "model.rpn.pre_nms_top_n.test=100",
        "model.rpn.post_nms_top_n.test=20",
        "model.roi.batch_size_per_image=16",
        "loader.num_workers=0",
        "train.batch_size=2",
        "train.max_iters=2",
        "train.warmup_iters=0",
        "train.log_period=1",
        "train.vis_images=1",
    ]


def run_command(name: str, *args, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the console script ``name`` (from this interpreter's environment) with ``args`` in ``cwd``."""
    script = BIN / name
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .) to get the commands"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@pytest.fixture(scope="session")
def cli_shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_data") / "shapes"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli_shapes_root):
    """One 2-iteration frcnn-train run, shared by the tests that look at what it wrote."""
    work = tmp_path_factory.mktemp("cli_train")
    run_dir = work / "run"
    proc = run_command("frcnn-train", *tiny_overrides(cli_shapes_root), f"hydra.run.dir={run_dir}", cwd=work)
    assert proc.returncode == 0, output_of(proc)
    return run_dir, proc


@pytest.fixture(scope="session")
def cli():
    """The helpers above for the test modules: cli.run(name, *args, cwd=...), cli.output(proc), cli.tiny(root)."""
    from types import SimpleNamespace

    return SimpleNamespace(run=run_command, output=output_of, tiny=tiny_overrides)
