"""What the tests share, importable from any test module (pytest puts tests/ on the path: pyproject.toml):

    from helpers import compose_config, tiny_overrides, run_command, output_of, pythonpath, SMALL_MODEL
    from helpers.data import write_voc, write_coco, coco_data, ...   (tiny VOC / COCO datasets on disk)

The real configs are composed from conf/ and shrunk; the commands (console scripts) run in a subprocess, found
the way a shell finds them, or run as their module where they are not installed (``command``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import frcnn  # noqa: F401  (registers the config schemas)

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = str(REPO / "conf")
# The console scripts of pyproject.toml's [project.scripts] and the module each one runs (its main() under -m).
COMMAND_MODULES = {"frcnn-train": "frcnn.cli.train", "frcnn-eval": "frcnn.cli.eval",
                   "frcnn-predict": "frcnn.cli.predict", "frcnn-export": "frcnn.cli.export"}

# Small but complete: every stage runs, in a fraction of a second on a CPU.
SMALL_MODEL = [
    "model.input.min_size=[128]",
    "model.input.max_size=192",
    "model.rpn.pre_nms_top_n.train=600",
    "model.rpn.post_nms_top_n.train=100",
    "model.rpn.pre_nms_top_n.test=300",
    "model.rpn.post_nms_top_n.test=50",
    "model.roi.batch_size_per_image=32",
    "model.anchor.scales=[2,4,8]",
    "model.rpn.min_size=2",
]


def compose_config(overrides=(), config_name: str = "train"):
    """The real config ``config_name`` (train, eval, predict) from conf/, with Hydra ``overrides``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name, overrides=list(overrides))


def tiny_overrides(data_root) -> list:
    """A complete training run in seconds on a CPU: 4 train images of ~100 px, ResNet-18, small top-N."""
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
        "train.progress_bar=false",
    ]


def command(name: str) -> list:
    """The command line that runs the console script ``name``: the script beside this interpreter (a virtual
    environment's bin, even when it is not on PATH), else the one a shell finds on PATH (e.g. ~/.local/bin), else
    this interpreter running the script's module, for a project that is only on PYTHONPATH (no scripts installed)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    on_path = shutil.which(name)
    if on_path:
        return [on_path]
    return [sys.executable, "-m", COMMAND_MODULES[name]]


def run_command(name: str, *args, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the command ``name`` (see ``command``) with ``args`` in ``cwd``, in this process's environment."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*command(name), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def pythonpath(*first) -> str:
    """A subprocess's PYTHONPATH: ``first`` ahead of this process's own, which it keeps (the project, or the packages
    an image beside its own torch has, may be importable only through it)."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*map(str, first), *([inherited] if inherited else [])])


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def metrics_on_test_split(cfg, checkpoint) -> dict:
    """The metrics of ``checkpoint`` (trained with ``cfg``) on the test split, evaluated as frcnn-eval does."""
    from frcnn.data.build import build_dataset, build_test_loader
    from frcnn.engine.checkpoint import load_checkpoint
    from frcnn.engine.inference import run_inference
    from frcnn.evaluation import evaluate_dataset
    from frcnn.modeling.build import build_model

    model = build_model(cfg, start_weights=False)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    test_set = build_dataset(cfg.dataset, "test", train=False)
    # The batch size of frcnn-eval and of the training's evaluation: padding depends on it.
    loader = build_test_loader(test_set, batch_size=cfg.train.eval_batch_size, loader_cfg=cfg.loader)
    detections = run_inference(model, loader, device=next(model.parameters()).device)
    return evaluate_dataset(test_set, detections, cfg.dataset.metric)
