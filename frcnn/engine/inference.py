"""The shared inference loop: the model over a test loader, detections back on the CPU, one per image index."""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from frcnn.engine.distributed import is_main_process
from frcnn.engine.logs import log
from frcnn.engine.runtime import autocast


@torch.no_grad()
def run_inference(model: nn.Module, loader, *, device: torch.device, amp: str = "off", progress: bool = False,
                  desc: str = "eval") -> Optional[List[Dict[str, torch.Tensor]]]:
    """Detections for every image of ``loader`` (which yields ``(images, targets)`` with ``target["index"]``),
    as a list indexed like the dataset: ``{"boxes" float32 [D, 4], "labels" int64 [D], "scores" float32 [D]}``
    on the CPU, boxes in the image's own pixels. The model is put in eval mode and back in its former mode.

    Under torchrun each rank's loader holds its share of the batches; the detections are gathered on rank 0, which
    returns all of them; the other ranks return ``None``."""
    was_training = model.training
    model.eval()
    total = _length(loader)
    results: Dict[int, Dict[str, torch.Tensor]] = {}
    bar = None
    if progress and sys.stderr.isatty() and is_main_process():
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
    results = gather_on_main(results)
    if results is None:  # another rank: rank 0 has the detections
        return None
    if results:
        log.info("inference: %d images in %.1f s (%.2f images/s)", len(results), elapsed,
                 len(results) / max(elapsed, 1e-9))
    size = total if total is not None else (max(results) + 1 if results else 0)
    missing = [i for i in range(size) if i not in results]
    if missing:
        raise RuntimeError(f"inference produced no output for {len(missing)} images (first: {missing[:5]})")
    return [results[i] for i in range(size)]


def gather_on_main(results: Dict[int, dict]) -> Optional[Dict[int, dict]]:
    """All ranks' ``{index: detections}`` merged on rank 0 (``None`` on the others); a single process's as given."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return results
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(results, gathered, dst=0)
    if gathered is None:
        return None
    return {index: detection for part in gathered for index, detection in part.items()}


def _length(loader) -> Optional[int]:
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None
