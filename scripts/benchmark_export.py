#!/usr/bin/env python
"""Inference time of an exported model: PyTorch eager against onnxruntime, same model, same image, same process.

Usage (from the repository root; needs the export extra, pip install 'frcnn[export]')::

    .venv/bin/python scripts/benchmark_export.py                          # ResNet-50-C4, 600x1000, batch 1
    .venv/bin/python scripts/benchmark_export.py --backbone vgg16 --size 600x800 --reps 7

The model is the config frcnn-train composes (``--backbone``, the VOC classes, input size = ``--size``) with
random weights whose frozen BatchNorm statistics are set from one pass over the image (as scripts/benchmark.py does,
so the RPN proposes and the ROI head works as with trained weights; the BatchNorm layers stay unfolded, in both
backends). It is exported as ``frcnn-export`` exports it (:mod:`frcnn.export.writer`), then both run the image in
turn, alternating which goes first: PyTorch as ``model([image])`` (eval mode, ``torch.no_grad``), onnxruntime as
``frcnn-predict backend=onnxruntime`` runs it (resize and pad in PyTorch, then the session). Medians of ``--reps``
after one untimed run each; the detections of the two are compared too (max box / score difference).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from frcnn.bench.baseline import calibrate_frozen_batchnorm  # noqa: E402
from frcnn.bench.runner import compose_config  # noqa: E402
from frcnn.data.voc import VOC_CLASSES  # noqa: E402
from frcnn.export.runtime import load_onnx_detector  # noqa: E402
from frcnn.export.writer import export_program, write_onnx  # noqa: E402
from frcnn.modeling.build import build_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", default="600x1000", help="HxW of the image (= the network input)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.size = tuple(int(s) for s in args.size.lower().split("x"))
    return args


def build(args, image: torch.Tensor):
    """(the model, its config as the JSON frcnn-export stores with it)."""
    cfg = compose_config(args.backbone, args.size, VOC_CLASSES, 1, "off", "cpu")
    model = build_model(cfg, fold_frozen_bn=False).eval()
    calibrate_frozen_batchnorm(model, [image])
    return model, json.dumps(OmegaConf.to_container(cfg, resolve=True))


def timed_runs(runners: dict, image: torch.Tensor, reps: int) -> dict:
    """Seconds of each of ``reps`` runs per runner, alternating who goes first; one untimed run each before."""
    times = {name: [] for name in runners}
    with torch.no_grad():
        for run in runners.values():
            run([image])
        for rep in range(reps):
            for name in (list(runners) if rep % 2 == 0 else list(runners)[::-1]):
                start = time.perf_counter()
                runners[name]([image])
                times[name].append(time.perf_counter() - start)
    return times


def largest_difference(model, detector, image: torch.Tensor) -> tuple:
    """(detections, max box difference, max score difference) of the two backends, after sorting: each PyTorch
    detection is paired with the onnxruntime one of its label with the nearest box (near-equal scores may come
    in another order)."""
    with torch.no_grad():
        want, got = model([image])[0], detector([image])[0]
    if len(want["scores"]) != len(got["scores"]):
        return f"{len(want['scores'])} vs {len(got['scores'])}", float("nan"), float("nan")
    box_diff, score_diff, unmatched = 0.0, 0.0, set(range(len(got["scores"])))
    for box, score, label in zip(want["boxes"], want["scores"], want["labels"]):
        same_label = [j for j in unmatched if got["labels"][j] == label]
        if not same_label:
            return "different labels", float("nan"), float("nan")
        j = min(same_label, key=lambda j: float((got["boxes"][j] - box).abs().max()))
        unmatched.remove(j)
        box_diff = max(box_diff, float((got["boxes"][j] - box).abs().max()))
        score_diff = max(score_diff, float((got["scores"][j] - score).abs()))
    return len(want["scores"]), box_diff, score_diff


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    image = torch.rand(3, *args.size, generator=torch.Generator().manual_seed(args.seed))
    model, metadata = build(args, image)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_onnx(export_program(model), Path(folder) / "model.onnx", metadata)
        exported_in = time.perf_counter() - start
        detector = load_onnx_detector(Path(folder) / "model.onnx", torch.device("cpu"))
        times = timed_runs({"PyTorch eager": model, "onnxruntime": detector}, image, args.reps)
        detections, box, score = largest_difference(model, detector, image)
    eager, onnx = statistics.median(times["PyTorch eager"]), statistics.median(times["onnxruntime"])
    print(f"{args.backbone}-C4 at {args.size[0]}x{args.size[1]}, batch 1, {torch.get_num_threads()} threads, "
          f"median of {args.reps} (export took {exported_in:.0f} s)")
    print("| backend | median s/image | runs (s) |\n|---|---|---|")
    for name, median in (("PyTorch eager", eager), ("onnxruntime", onnx)):
        print(f"| {name} | {median:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    print(f"| ratio onnxruntime / PyTorch | {onnx / eager:.2f} | |")
    print(f"detections: {detections}, max box difference {box:.2e} px, max score difference {score:.2e}")


if __name__ == "__main__":
    main()
