"""What happens around the training steps: logging, checkpoints, evaluation. Each hook is called by the trainer
at ``before_train``, ``after_step`` (``trainer.iter`` = iterations done) and ``after_train``; ``close`` runs last
whatever happened (also after an error), to release files and bars."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from frcnn.engine.checkpoint import Checkpointer
from frcnn.engine.inference import run_inference
from frcnn.engine.logger import (ProgressBar, TensorBoard, draw_detections, format_losses, log, primary_metric,
                                 summary_metrics)
from frcnn.engine.runtime import preserved_rng

VIS_SCORE_THRESH = 0.5  # boxes drawn on the TensorBoard images


def _due(iteration: int, period: int) -> bool:
    return period > 0 and iteration % period == 0


class Hook:
    def before_train(self, trainer) -> None:
        pass

    def after_step(self, trainer) -> None:
        pass

    def after_train(self, trainer) -> None:
        pass

    def close(self) -> None:
        pass

    # Hooks with state that must survive a resume return it here (plain values only).
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LoggingHook(Hook):
    """Every ``period`` iterations: reads the losses (the only host sync of the loop), logs them with the lr and
    images/s to the log file, TensorBoard and the progress bar."""

    def __init__(self, *, period: int, tensorboard: Optional[TensorBoard], progress_bar: bool = True):
        self.period = max(1, int(period))
        self.tb = tensorboard
        self.progress_bar = progress_bar
        self.bar: Optional[ProgressBar] = None

    def before_train(self, trainer) -> None:
        self.bar = ProgressBar(start=trainer.iter, total=trainer.max_iters, enabled=self.progress_bar)
        self._mark(trainer)
        log.info("training from iteration %d to %d (batch size %d)", trainer.iter, trainer.max_iters,
                 trainer.batch_size)

    def _mark(self, trainer) -> None:
        self._time = time.perf_counter()
        self._iter = trainer.iter

    def after_step(self, trainer) -> None:
        self.bar.update(1)
        if _due(trainer.iter, self.period) or trainer.iter >= trainer.max_iters:
            self.write(trainer)

    def write(self, trainer) -> None:
        losses = trainer.pop_loss_means()  # raises NonFiniteLossError on a bad loss
        if not losses:
            return
        elapsed = time.perf_counter() - self._time
        speed = (trainer.iter - self._iter) * trainer.batch_size / max(elapsed, 1e-9)
        self._mark(trainer)
        lr = trainer.lr
        total = sum(losses.values())
        log.info("iter %d/%d  loss=%.4f %s  lr=%.3g  %.2f images/s", trainer.iter, trainer.max_iters, total,
                 format_losses(losses), lr, speed)
        self.bar.set_postfix(f"loss={total:.3f} {format_losses(losses)} lr={lr:.2g} {speed:.1f}img/s")
        if self.tb is not None:
            self.tb.losses(losses, trainer.iter)
            self.tb.scalar("lr", lr, trainer.iter)
            self.tb.scalar("speed/images_per_s", speed, trainer.iter)

    def after_train(self, trainer) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CheckpointHook(Hook):
    """``iter_0001000.pt-style`` + ``last.pt`` every ``period`` iterations and at the end. The losses seen since the
    last check are checked first, so a checkpoint of weights that went non-finite is never written."""

    def __init__(self, checkpointer: Checkpointer, *, period: int):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.saved_iter = -1

    def after_step(self, trainer) -> None:
        if _due(trainer.iter, self.period) and trainer.iter < trainer.max_iters:
            self.save(trainer)

    def after_train(self, trainer) -> None:
        if self.saved_iter != trainer.iter:
            self.save(trainer)

    def save(self, trainer) -> None:
        trainer.check_losses()
        path = self.checkpointer.save(trainer.checkpoint_state(), trainer.iter)
        self.saved_iter = trainer.iter
        log.info("checkpoint: %s (and %s)", path, self.checkpointer.last_path.name)


class EvalHook(Hook):
    """Evaluates every ``period`` iterations and at the end; logs the table, writes ``metrics/<name>`` and images
    with predicted boxes to TensorBoard, keeps ``best.pt`` by the primary metric (mAP or AP), and writes the final
    ``metrics.json``. Global RNG states are left as they were, so evaluating does not change training."""

    def __init__(self, *, build_loader, metric: str, device: torch.device, amp: str, classes: Sequence[str],
                 period: int, checkpointer: Optional[Checkpointer], tensorboard: Optional[TensorBoard],
                 metrics_path: Path, vis_images: int = 0):
        self.build_loader = build_loader
        self.metric = metric
        self.device = device
        self.amp = amp
        self.classes = list(classes)
        self.period = int(period)
        self.checkpointer = checkpointer
        self.tb = tensorboard
        self.metrics_path = Path(metrics_path)
        self.vis_images = int(vis_images)
        self.loader = None
        self.best: Optional[float] = None
        self.last_iter = -1
        self.final_metrics: dict = {}

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")

    def before_train(self, trainer) -> None:
        # Built up front so that a missing split fails now, not after hours of training.
        self.loader = self.build_loader()
        log.info("evaluation: %s, %d images, metric %s, every %s", getattr(self.loader.dataset, "name", "?"),
                 len(self.loader.dataset), self.metric, f"{self.period} iterations" if self.period > 0 else "run (end)")

    def after_step(self, trainer) -> None:
        if _due(trainer.iter, self.period) and trainer.iter < trainer.max_iters:
            self.evaluate(trainer)

    def after_train(self, trainer) -> None:
        metrics = self.final_metrics if self.last_iter == trainer.iter else self.evaluate(trainer)
        from frcnn.evaluation import write_json

        write_json(self.metrics_path, metrics)
        log.info("metrics: %s", self.metrics_path)

    def evaluate(self, trainer) -> dict:
        from frcnn.evaluation import evaluate_dataset, format_table

        trainer.check_losses()
        dataset = self.loader.dataset
        with preserved_rng():
            detections = run_inference(trainer.model, self.loader, device=self.device, amp=self.amp)
            metrics = evaluate_dataset(dataset, detections, self.metric)
        self.last_iter = trainer.iter
        self.final_metrics = metrics
        log.info("evaluation at iteration %d:\n%s", trainer.iter, format_table(metrics, self.classes))
        if self.tb is not None:
            self.tb.metrics(metrics, trainer.iter)
            if self.vis_images > 0:
                images = [
                    draw_detections(dataset[i][0], detections[i], self.classes, score_thresh=VIS_SCORE_THRESH)
                    for i in range(min(self.vis_images, len(dataset)))
                ]
                self.tb.images("predictions", images, trainer.iter)
            self.tb.flush()
        score = primary_metric(metrics)
        if score is not None and (self.best is None or score > self.best) and self.checkpointer is not None:
            self.best = score
            state = trainer.checkpoint_state()
            state["metrics"] = summary_metrics(metrics)
            self.checkpointer.save_best(state)
            log.info("best so far (%.4f): %s", score, self.checkpointer.best_path)
        return metrics
