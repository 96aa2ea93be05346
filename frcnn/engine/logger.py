"""Where a run reports: the plain-text log file, the tqdm bar, TensorBoard, and box drawings."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

LOGGER_NAME = "frcnn"
log = logging.getLogger(LOGGER_NAME)

# Loss names of the model -> TensorBoard tags (the public interface).
LOSS_TAGS = {
    "loss_rpn_cls": "loss/rpn_cls",
    "loss_rpn_box": "loss/rpn_box",
    "loss_rcnn_cls": "loss/rcnn_cls",
    "loss_rcnn_box": "loss/rcnn_box",
}
_SHORT = {"loss_rpn_cls": "rpn_cls", "loss_rpn_box": "rpn_box", "loss_rcnn_cls": "rcnn_cls", "loss_rcnn_box": "rcnn_box"}


def setup_file_logging(path) -> logging.Handler:
    """Send ``frcnn`` log records to ``path`` (unless a handler, e.g. Hydra's job log, already writes there)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for logger in (logging.getLogger(), log):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == path:
                return handler
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    log.addHandler(handler)
    if not logging.getLogger().handlers:  # plain Python use (no Hydra): also print to the console
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S"))
        log.addHandler(console)
    return handler


def remove_handler(handler: Optional[logging.Handler]) -> None:
    if handler is not None and handler in log.handlers:
        log.removeHandler(handler)
        handler.close()


def format_losses(losses: Dict[str, float]) -> str:
    return " ".join(f"{_SHORT.get(k, k)}={v:.4f}" for k, v in losses.items())


class ProgressBar:
    """tqdm bar over the iterations: smoothed losses, lr and images/s in the postfix; tqdm gives the ETA."""

    def __init__(self, *, start: int, total: int, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True,
                             mininterval=1.0, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TensorBoard:
    """A SummaryWriter under ``RUN_DIR/tensorboard`` with the run's tags."""

    def __init__(self, folder):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def losses(self, losses: Dict[str, float], step: int) -> None:
        for name, value in losses.items():
            self.writer.add_scalar(LOSS_TAGS.get(name, f"loss/{name}"), value, step)
        self.writer.add_scalar("loss/total", sum(losses.values()), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def metrics(self, metrics: Dict, step: int) -> None:
        for name, value in summary_metrics(metrics).items():
            self.writer.add_scalar(f"metrics/{name}", value, step)

    def images(self, tag: str, images: Sequence[torch.Tensor], step: int) -> None:
        for i, image in enumerate(images):
            self.writer.add_image(f"{tag}/{i}", image, step, dataformats="CHW")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def summary_metrics(metrics: Dict) -> Dict[str, float]:
    """The scalar entries of an evaluation result (mAP, or AP/AP50/...), without per-class values or NaNs."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[name] = float(value)
    return out


def primary_metric(metrics: Dict) -> Optional[float]:
    """The number a run is judged by: ``mAP`` (VOC metrics) or ``AP`` (COCO)."""
    for key in ("mAP", "AP"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and value == value:
            return float(value)
    return None


def draw_detections(image: torch.Tensor, detection: Dict[str, torch.Tensor], classes: Sequence[str], *,
                    score_thresh: float = 0.5, width: int = 2) -> torch.Tensor:
    """uint8 [3, H, W] image with the detections at or above ``score_thresh`` drawn, labelled "class score"."""
    from torchvision.utils import draw_bounding_boxes

    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    keep = detection["scores"] >= score_thresh
    boxes = detection["boxes"][keep].float()
    labels: List[str] = [
        f"{classes[int(l) - 1] if 0 < int(l) <= len(classes) else int(l)} {float(s):.2f}"
        for l, s in zip(detection["labels"][keep], detection["scores"][keep])
    ]
    if len(boxes) == 0:
        return image
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
               "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]
    colors = [palette[(int(l) - 1) % len(palette)] for l in detection["labels"][keep]]
    return draw_bounding_boxes(image, boxes, labels=labels, colors=colors, width=width)
