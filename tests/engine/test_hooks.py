"""The hooks that report: the best checkpoint follows the evaluations' primary metric, metrics.json holds the last
evaluation, TensorBoard gets every stored scalar once; they read only what the storage holds."""
from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from frcnn.engine.checkpoint import Checkpointer, load_checkpoint
from frcnn.engine.events import EventStorage
from frcnn.engine.hooks import BestCheckpointHook, EvalHook, MetricsFileHook, TensorBoardHook
from frcnn.engine.tensorboard import TensorBoard


class _Trainer(SimpleNamespace):
    def checkpoint_state(self):
        return {"model": {}, "iteration": self.iter}

    def check_losses(self):
        pass


def test_best_checkpoint_follows_the_primary_metric_and_metrics_json_the_last_evaluation(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    scores = iter([0.3, 0.5, 0.4])

    def evaluate(model):
        return {"mAP": next(scores), "per_class": {}}, []

    hooks = [EvalHook(evaluate, period=1, classes=[]), BestCheckpointHook(checkpointer),
             MetricsFileHook(tmp_path / "metrics.json")]
    trainer = _Trainer(iter=0, max_iters=4, storage=EventStorage(), model=None, module=None)
    best_iterations = []
    for iteration in (1, 2, 3):
        trainer.iter = iteration
        for hook in hooks:
            hook.after_step(trainer)
        best_iterations.append(load_checkpoint(checkpointer.best_path)["iteration"])
    assert best_iterations == [1, 2, 2]  # 0.4 at iteration 3 is not better than 0.5
    assert load_checkpoint(checkpointer.best_path)["metrics"] == {"mAP": 0.5}
    assert hooks[1].state_dict() == {"best": 0.5}
    for hook in hooks:
        hook.after_train(trainer)  # iteration 3 was evaluated: no second evaluation at the end
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"mAP": 0.4, "per_class": {}}


def test_a_resumed_best_hook_keeps_the_old_best(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    hook = BestCheckpointHook(checkpointer)
    hook.load_state_dict({"best": 0.9})
    storage = EventStorage()
    storage.put_metrics(5, {"mAP": 0.6}, {"mAP": 0.6})
    hook.after_step(_Trainer(iter=5, storage=storage))
    assert not checkpointer.best_path.exists()


def test_tensorboard_gets_each_stored_scalar_and_picture_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    storage = EventStorage()
    hook = TensorBoardHook(TensorBoard(tmp_path))
    trainer = _Trainer(iter=1, storage=storage)
    storage.put_scalars(1, {"loss/total": 2.0})
    storage.put_metrics(1, {"mAP": 0.25, "per_class": {}}, {"mAP": 0.25})
    storage.put_images(1, "predictions", [torch.zeros(3, 8, 8, dtype=torch.uint8)])
    hook.after_step(trainer)
    hook.after_step(trainer)  # nothing new: nothing written twice
    hook.after_train(trainer)
    hook.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(1, 2.0)]
    assert [(e.step, e.value) for e in events.Scalars("metrics/mAP")] == [(1, 0.25)]
    assert events.Tags()["images"] == ["predictions/0"]

