#!/usr/bin/env python
"""Training loader throughput (decode + flip [+ jitter] + collate) on the default shapes data.

    python scripts/bench_loader.py [--root data/shapes] [--batches 100] [--batch-size 4] [--workers 0 2]
                                   [--color-jitter 0.2] [--image-sides 375 500 --root data/shapes_voc_size]

Generates the shapes dataset into --root first if needed (default settings, a few seconds) and prints images/s
per worker count; the first batches (worker start-up) are excluded from the timing.
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
from omegaconf import OmegaConf

from frcnn.config import DatasetConfig, LoaderConfig
from frcnn.data import build_dataset, build_train_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/shapes")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--color-jitter", type=float, default=0.0)
    parser.add_argument("--image-sides", type=int, nargs=2, metavar=("MIN", "MAX"), default=None,
                        help="generate larger images (e.g. 375 500 for VOC-sized JPEGs; use another --root)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    dataset_cfg = OmegaConf.structured(DatasetConfig)
    shapes_yaml = OmegaConf.load("conf/dataset/shapes.yaml")
    dataset_cfg = OmegaConf.merge(dataset_cfg, shapes_yaml, {"root": args.root})
    if args.image_sides:
        dataset_cfg.shapes.image_min_side, dataset_cfg.shapes.image_max_side = args.image_sides
    print(f"{'workers':>7} {'batch':>5} {'images/s':>9} {'ms/image':>9}")
    for workers in args.workers:
        loader_cfg = OmegaConf.structured(LoaderConfig(num_workers=workers, pin_memory=False,
                                                       persistent_workers=False, color_jitter=args.color_jitter))
        dataset = build_dataset(dataset_cfg, "train", train=True, loader_cfg=loader_cfg)
        loader = build_train_loader(dataset, batch_size=args.batch_size, loader_cfg=loader_cfg, seed=0)
        batches = iter(loader)
        warmup = max(2, 2 * workers)
        for _ in itertools.islice(batches, warmup):
            pass
        start = time.perf_counter()
        n = 0
        for images, _ in itertools.islice(batches, args.batches):
            n += len(images)
        elapsed = time.perf_counter() - start
        print(f"{workers:>7} {args.batch_size:>5} {n / elapsed:>9.1f} {1000 * elapsed / n:>9.2f}")
        del batches, loader


if __name__ == "__main__":
    main()
