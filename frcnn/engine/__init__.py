"""Training engine: the step loop and its hooks, optimizer and schedule, checkpoints, logging, inference.

    train(cfg, run_dir) -> metrics                 frcnn-train (frcnn.engine.launch)
    evaluate_checkpoint(cfg, run_dir) -> metrics   frcnn-eval (frcnn.engine.evaluate)
    predict(cfg) -> detections.json entries        frcnn-predict (frcnn.engine.predict)
    run_inference(model, loader, device=...)       the shared inference loop (frcnn.engine.inference)
"""
from frcnn.engine.checkpoint import Checkpointer, CheckpointError, load_checkpoint
from frcnn.engine.evaluate import evaluate_checkpoint
from frcnn.engine.inference import run_inference
from frcnn.engine.launch import train
from frcnn.engine.predict import predict
from frcnn.engine.trainer import NonFiniteLossError, Trainer

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "NonFiniteLossError",
    "Trainer",
    "evaluate_checkpoint",
    "load_checkpoint",
    "predict",
    "run_inference",
    "train",
]
