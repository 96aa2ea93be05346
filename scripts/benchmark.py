#!/usr/bin/env python
"""Speed benchmark: frcnn's Faster R-CNN against torchvision's FasterRCNN built the same way.

Usage (from the repository root)::

    .venv/bin/python scripts/benchmark.py --quick                        # small images, few repetitions
    .venv/bin/python scripts/benchmark.py --device cuda --backbone vgg16,resnet50 --batch-size 1,4 --amp off,fp16
    .venv/bin/python scripts/benchmark.py --size 600x1000 --reps 3 --warmup 1 --amp bf16 --json bench.json

In one process, alternating between the two models every repetition (and which one goes first), it measures

(a) a training step: the trainer's own step, ``frcnn.engine.trainer.Trainer.run_step`` (forward under autocast,
    backward through the gradient scaler, clipping when configured, optimizer and scheduler step), with the
    optimizer and schedule frcnn-train builds from the config. torchvision's model goes through the same step with
    the optimizer of torchvision's detection reference (plain SGD);
(b) inference on the batch: eval mode, ``torch.no_grad()``, the same autocast;
(c) a per-stage breakdown of (a) and (b) for both, read from ``torch.profiler`` on profiled steps: the scopes the
    model opens in its own forward (``frcnn.bench.stages``), so the figures come from the real code.

This file is the command line; the measurements are ``frcnn.bench.runner``, the tables ``frcnn.bench.report``
and torchvision's model ``frcnn.bench.baseline``, all taking plain arguments.

Medians over ``--reps`` after ``--warmup`` untimed repetitions. On CUDA ``torch.cuda.synchronize()`` brackets
every timed region, the peak memory is ``torch.cuda.max_memory_allocated`` per model and kind of step, the
breakdown adds each stage's CUDA kernel time to its host time, and ``--sync-debug`` counts the host
synchronisations of one step of each kind with ``torch.cuda.set_sync_debug_mode("warn")``.

Inputs are synthetic and identical for both models: random images in [0, 1] of ``--size HxW`` with ``--boxes``
random boxes each, from a fixed seed. The config is the real one, composed by Hydra from conf/ as frcnn-train
composes it, with the backbone, the classes, ``train.batch_size``, ``train.amp`` and ``model.input.min_size`` /
``max_size`` set to the image's sides (the network input is exactly ``--size``, padded to a multiple of 32), then
``--override``.
How torchvision's model is made the same, and what differs, is in ``frcnn.bench.baseline``; ``--tv-with``
gives it any of our speed-ups too. Random weights: frozen BatchNorm statistics are first set from one inference
pass on the batch (``calibrate_frozen_batchnorm``; ``--no-calibrate`` skips it), so that the RPN proposes and the
ROI stages work as with trained weights. The learning rate is the config's (its warm-up starts at 1e-6), so
repeated steps stay finite; a non-finite loss is flagged in the table.

On a CPU shared with other jobs, prefer ``--threads 1``: with 2 threads on 2 busy cores the timings swung by 2-4x
between repetitions (OMP_WAIT_POLICY=PASSIVE, set here by default, helps).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

# Spinning OpenMP threads make CPU timings erratic when other processes share the cores, and the profiler's
# library warns on every start that it finds no GPU. Both must be set before torch loads (so they only act when
# this file runs as a script); values set in the environment win.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402

from frcnn.bench.baseline import TV_WITH  # noqa: E402
from frcnn.bench.report import environment, print_report  # noqa: E402
from frcnn.bench.runner import benchmark_case, compose_config, make_inputs  # noqa: E402
from frcnn.engine.runtime import check_amp  # noqa: E402
from frcnn.errors import ConfigError  # noqa: E402

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
QUICK = {"size": "224x320", "reps": 3, "warmup": 1}
FULL = {"size": "600x1000", "reps": 5, "warmup": 2}


# ------------------------------------------------------------------------------------------------------ CLI
def parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HxW, e.g. 600x1000, got {text!r}") from None
    return height, width


def comma_list(values: Optional[Sequence[str]], default: str) -> List[str]:
    return [v.strip() for value in (values or [default]) for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    add("--backbone", action="append", help="repeatable or comma list (default vgg16,resnet50)")
    add("--batch-size", action="append", help="comma list (default 1)")
    add("--size", type=parse_size, help="HxW of the images and network input (default 600x1000)")
    add("--amp", action="append", help="off | fp16 (CUDA) | bf16, comma list (default off)")
    add("--reps", type=int, help="timed repetitions per model (default 5; --quick 3)")
    add("--warmup", type=int, help="untimed repetitions first (default 2; --quick 1)")
    add("--quick", action="store_true", help=f"preset: {QUICK}")
    add("--threads", type=int, help="torch.set_num_threads")
    add("--tv-with", action="append",
        help=f"give torchvision's model one of our speed-ups too, to see what each is worth: comma list of "
             f"{', '.join(TV_WITH)} or all (default: none, torchvision as it ships). Ours follows its config: "
             f"--override model.channels_last=false turns its memory format off")  # fmt: skip
    add("--sync-debug", action="store_true", help="count host syncs of one step (CUDA only)")
    add("--classes", type=int, default=len(VOC_CLASSES), help="number of object classes (20)")
    add("--boxes", type=int, default=4, help="ground-truth boxes per image")
    add("--override", action="append", default=[], help="extra Hydra override, e.g. model.roi.pooler=pool")
    add("--no-calibrate", dest="calibrate", action="store_false",
        help="keep the identity statistics of random FrozenBatchNorm layers (see calibrate_frozen_batchnorm)")
    add("--seed", type=int, default=0)
    add("--json", type=Path, help="write all results here")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, with presets applied, lists split and every value checked."""
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.size = args.size or parse_size(preset["size"])
    args.reps = preset["reps"] if args.reps is None else args.reps
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    args.backbone = comma_list(args.backbone, "vgg16,resnet50")
    args.batch_size = [int(b) for b in comma_list(args.batch_size, "1")]
    args.amp = comma_list(args.amp, "off")
    args.tv_with = comma_list(args.tv_with, "")
    args.tv_with = list(TV_WITH) if "all" in args.tv_with else args.tv_with
    if bad := [t for t in args.tv_with if t not in TV_WITH]:
        parser.error(f"--tv-with: unknown {bad}; choose from {', '.join(TV_WITH)} or all")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    try:
        for amp in args.amp:
            check_amp(amp, torch.device(args.device))  # what frcnn-train accepts
    except ConfigError as error:
        parser.error(f"--amp: {error}")
    names = list(VOC_CLASSES) + [f"class{i}" for i in range(len(VOC_CLASSES) + 1, args.classes + 1)]
    args.classes = names[: args.classes]
    return args


def run(*, device: str, backbones: Sequence[str], batch_sizes: Sequence[int], amps: Sequence[str],
        size: Tuple[int, int], classes: Sequence[str], boxes: int, overrides: Sequence[str], tv_with: Sequence[str],
        calibrate: bool, reps: int, warmup: int, sync_debug: bool, seed: int) -> dict:
    """Every (backbone, batch size, amp) case; returns the results (printed by :func:`print_report`)."""
    dev = torch.device(device)
    print(f"frcnn benchmark: device {device}, size {size[0]}x{size[1]}, reps {reps} (warm-up {warmup}), threads "
          f"{torch.get_num_threads()}, torchvision with our {', '.join(tv_with) or 'nothing'}", flush=True)
    settings = {"device": device, "size": list(size), "reps": reps, "warmup": warmup, "tv_with": list(tv_with),
                "num_classes": len(classes), "boxes_per_image": boxes, "overrides": list(overrides), "seed": seed,
                "calibrate_frozen_bn": calibrate}  # fmt: skip
    result = {"settings": settings, "timings": [], "breakdown": [], "breakdown_counts": []}
    for backbone, batch_size, amp in itertools.product(backbones, batch_sizes, amps):
        print(f"... {backbone}, batch {batch_size}, amp {amp}", flush=True)
        torch.manual_seed(seed)
        cfg = compose_config(backbone, size, classes, batch_size, amp, device, overrides)
        torch.backends.cudnn.benchmark = bool(cfg.train.cudnn_benchmark)  # as frcnn-train sets it (CUDA only)
        images, targets = make_inputs(batch_size, size, len(classes), boxes, dev, seed)
        parts = benchmark_case(cfg, images, targets, dev, tv_with=tv_with, calibrate=calibrate, reps=reps,
                               warmup=warmup, sync_debug=sync_debug)
        case = {"backbone": backbone, "batch_size": batch_size, "amp": amp}
        for name, rows in zip(("timings", "breakdown", "breakdown_counts"), parts):
            result[name] += [{**case, **row} for row in rows]
    result["environment"] = environment(dev)
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        result = run(device=args.device, backbones=args.backbone, batch_sizes=args.batch_size, amps=args.amp,
                     size=args.size, classes=args.classes, boxes=args.boxes, overrides=args.override,
                     tv_with=args.tv_with, calibrate=args.calibrate, reps=args.reps, warmup=args.warmup,
                     sync_debug=args.sync_debug, seed=args.seed)  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests): leave the process as it was
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
