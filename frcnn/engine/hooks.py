"""What happens around the training steps, one job per hook. The trainer calls each hook at ``before_train``,
``after_step`` (``trainer.iter`` = iterations done) and ``after_train``; ``close`` runs last whatever happened
(also after an error), to release files and bars. Hooks that measure put their results into
``trainer.storage`` (:class:`frcnn.engine.events.EventStorage`); hooks that report read them from there, so the
order of the hook list is: measure (losses, checkpoint, evaluation), then report (best checkpoint, TensorBoard,
metrics.json).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from frcnn.engine.checkpoint import Checkpointer
from frcnn.engine.distributed import is_main_process
from frcnn.engine.logs import log
from frcnn.engine.progress import ProgressBar
from frcnn.engine.tensorboard import TensorBoard
from frcnn.evaluation import format_table, primary_metric, summary_metrics, write_json

# Loss names of the model -> short names in the log line and TensorBoard tags (loss/<short>).
SHORT_NAMES = {"loss_rpn_cls": "rpn_cls", "loss_rpn_box": "rpn_box", "loss_rcnn_cls": "rcnn_cls",
               "loss_rcnn_box": "rcnn_box"}


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
    images/s, shows them on the progress bar and puts them into the storage (``loss/*``, ``lr``, ``speed/*``)."""

    def __init__(self, *, period: int, progress_bar: bool = True):
        self.period = max(1, int(period))
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
        speed = (trainer.iter - self._iter) * trainer.batch_size / max(time.perf_counter() - self._time, 1e-9)
        self._mark(trainer)
        lr, total = trainer.lr, sum(losses.values())
        text = " ".join(f"{SHORT_NAMES.get(k, k)}={v:.4f}" for k, v in losses.items())
        log.info("iter %d/%d  loss=%.4f %s  lr=%.3g  %.2f images/s", trainer.iter, trainer.max_iters, total, text,
                 lr, speed)
        self.bar.set_postfix(f"loss={total:.3f} {text} lr={lr:.2g} {speed:.1f}img/s")
        scalars = {f"loss/{SHORT_NAMES.get(k, k)}": v for k, v in losses.items()}
        trainer.storage.put_scalars(trainer.iter, {**scalars, "loss/total": total, "lr": lr,
                                                   "speed/images_per_s": speed})

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
        trainer.check_losses()  # on every rank: under torchrun it averages the losses over them
        self.saved_iter = trainer.iter
        if not is_main_process():  # the ranks hold the same weights: rank 0 writes them
            return
        path = self.checkpointer.save(trainer.checkpoint_state(), trainer.iter)
        log.info("checkpoint: %s (and %s)", path, self.checkpointer.last_path.name)


# evaluate(model) -> (metrics.json dict, pictures with the predicted boxes drawn); None on a torchrun job's other ranks
Evaluation = Callable[[torch.nn.Module], Optional[Tuple[Dict, List[torch.Tensor]]]]


class EvalHook(Hook):
    """Runs ``evaluate`` every ``period`` iterations and at the end; logs the per-class table and puts the result
    into the storage. ``before_train`` calls ``prepare`` (e.g. build the loader), so a broken evaluation split
    fails before the first step, not after hours of training."""

    def __init__(self, evaluate: Evaluation, *, period: int, classes: Sequence[str], prepare=None):
        self.evaluate = evaluate
        self.period = int(period)
        self.classes = list(classes)
        self.prepare = prepare
        self.last_iter = -1

    def before_train(self, trainer) -> None:
        if self.prepare is not None:
            self.prepare()

    def after_step(self, trainer) -> None:
        if _due(trainer.iter, self.period) and trainer.iter < trainer.max_iters:
            self.run(trainer)

    def after_train(self, trainer) -> None:
        if self.last_iter != trainer.iter:
            self.run(trainer)

    def run(self, trainer) -> None:
        trainer.check_losses()
        self.last_iter = trainer.iter
        result = self.evaluate(trainer.module)  # under torchrun every rank evaluates its share
        if result is None:  # another rank: rank 0 has the metrics
            return
        metrics, pictures = result
        log.info("evaluation at iteration %d:\n%s", trainer.iter, format_table(metrics, self.classes))
        trainer.storage.put_metrics(trainer.iter, metrics, summary_metrics(metrics))
        if pictures:
            trainer.storage.put_images(trainer.iter, "predictions", pictures)


class BestCheckpointHook(Hook):
    """Keeps ``best.pt``: the checkpoint of the best primary metric (mAP or AP) the evaluations reported."""

    former_state_name = "EvalHook"  # where checkpoints of earlier versions kept ``best``

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer
        self.best: Optional[float] = None
        self._seen_iter = -1

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")

    def after_step(self, trainer) -> None:
        storage = trainer.storage
        if storage.metrics is None or storage.metrics_iter == self._seen_iter:
            return
        self._seen_iter = storage.metrics_iter
        score = primary_metric(storage.metrics)
        if score is not None and (self.best is None or score > self.best):
            self.best = score
            state = trainer.checkpoint_state()
            state["metrics"] = summary_metrics(storage.metrics)
            self.checkpointer.save_best(state)
            log.info("best so far (%.4f): %s", score, self.checkpointer.best_path)

    def after_train(self, trainer) -> None:
        self.after_step(trainer)


class TensorBoardHook(Hook):
    """Writes what the storage holds to TensorBoard after every step (cheap: most steps hold nothing)."""

    def __init__(self, tensorboard: TensorBoard):
        self.tensorboard = tensorboard

    def after_step(self, trainer) -> None:
        self.tensorboard.write(trainer.storage)

    def after_train(self, trainer) -> None:
        self.tensorboard.write(trainer.storage)
        self.tensorboard.flush()

    def close(self) -> None:
        self.tensorboard.close()


class MetricsFileHook(Hook):
    """Writes the last evaluation's result to ``metrics.json`` at the end of training."""

    def __init__(self, path):
        self.path = Path(path)

    def after_train(self, trainer) -> None:
        if trainer.storage.metrics is not None:
            write_json(self.path, trainer.storage.metrics)
            log.info("metrics: %s", self.path)
