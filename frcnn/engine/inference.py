"""The shared inference loop: the model over a test loader, detections back on the CPU, one per image index."""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

import torch
from torch import nn

from frcnn.engine.logs import log
from frcnn.engine.runtime import autocast


@torch.no_grad()
def run_inference(model: nn.Module, loader, *, device: torch.device, amp: str = "off", progress: bool = False,
                  desc: str = "eval") -> List[Dict[str, torch.Tensor]]:
    """Detections for every image of ``loader`` (which yields ``(images, targets)`` with ``target["index"]``),
    as a list indexed like the dataset: ``{"boxes" float32 [D, 4], "labels" int64 [D], "scores" float32 [D]}``
    on the CPU, boxes in the image's own pixels. The model is put in eval mode and back in its former mode."""
    was_training = model.training
    model.eval()
    total = _length(loader)
    results: Dict[int, Dict[str, torch.Tensor]] = {}
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0, leave=False)
    start = time.perf_counter()
    try:
        for images, targets in loader:
            with autocast(amp, device):
                outputs = model(images)
            for target, output in zip(targets, outputs):
                results[int(target["index"])] = {
                    "boxes": output["boxes"].float().to("cpu"),
                    "labels": output["labels"].to("cpu"),
                    "scores": output["scores"].float().to("cpu"),
                }
            if bar is not None:
                bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    elapsed = time.perf_counter() - start
    if results:
        log.info("inference: %d images in %.1f s (%.2f images/s)", len(results), elapsed,
                 len(results) / max(elapsed, 1e-9))
    size = total if total is not None else (max(results) + 1 if results else 0)
    missing = [i for i in range(size) if i not in results]
    if missing:
        raise RuntimeError(f"inference produced no output for {len(missing)} images (first: {missing[:5]})")
    return [results[i] for i in range(size)]


def _length(loader) -> Optional[int]:
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None
