"""The run's record of the current iteration: what hooks measure goes in, what writers report comes out.

Hooks that measure (the loss logger, the evaluation) put scalars, metrics and pictures here; hooks that report
(TensorBoard, the best checkpoint, metrics.json) read them. No hook needs to know another one.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch


class EventStorage:
    def __init__(self) -> None:
        self._scalars: List[Tuple[str, float, int]] = []  # not yet written: (tag, value, iteration)
        self._images: List[Tuple[str, List[torch.Tensor], int]] = []
        self.metrics: Optional[dict] = None  # the latest evaluation's full result (metrics.json)
        self.metrics_iter: int = -1  # the iteration it was computed at

    def put_scalars(self, iteration: int, values: Dict[str, float]) -> None:
        self._scalars.extend((tag, float(value), iteration) for tag, value in values.items())

    def put_metrics(self, iteration: int, metrics: dict, summary: Dict[str, float]) -> None:
        """An evaluation's result, with its scalar summary (``mAP``, or ``AP``, ``AP50``...) as ``metrics/*``."""
        self.metrics, self.metrics_iter = metrics, iteration
        self.put_scalars(iteration, {f"metrics/{name}": value for name, value in summary.items()})

    def put_images(self, iteration: int, tag: str, images: Sequence[torch.Tensor]) -> None:
        self._images.append((tag, list(images), iteration))

    def pop_scalars(self) -> List[Tuple[str, float, int]]:
        scalars, self._scalars = self._scalars, []
        return scalars

    def pop_images(self) -> List[Tuple[str, List[torch.Tensor], int]]:
        images, self._images = self._images, []
        return images
