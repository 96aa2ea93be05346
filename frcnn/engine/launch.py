"""A training run from its config: ``train(cfg, run_dir)`` is ``frcnn-train``.

It checks the config and the run directory, builds the data, model, optimizer and hooks, resumes when asked, and
runs the :class:`~frcnn.engine.trainer.Trainer`. Everything that can be checked cheaply is checked before the first
step: config ranges, the run directory and ``checkpoints/`` being writable, every split's annotations, and the
headers of every image the run will read.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from frcnn.config_checks import check_train_config
from frcnn.engine.checkpoint import Checkpointer, load_checkpoint, resolve_resume
from frcnn.engine.compile import compile_model
from frcnn.engine.distributed import (
    DistEnv,
    barrier,
    broadcast_from_main,
    env_from,
    init_process_group,
    is_main_process,
    shutdown,
    wrap,
)
from frcnn.engine.drawing import draw_detections
from frcnn.engine.hooks import (
    BestCheckpointHook,
    CheckpointHook,
    EvalHook,
    Hook,
    LoggingHook,
    MetricsFileHook,
    TensorBoardHook,
)
from frcnn.engine.inference import run_inference
from frcnn.engine.logs import log, remove_handler, setup_file_logging
from frcnn.engine.optim import build_optimizer, build_scheduler
from frcnn.engine.progress import log_lines_above_the_bar
from frcnn.engine.run_dir import check_run_dir, clean_run_dir
from frcnn.engine.runtime import check_amp, preserved_rng, resolve_device, seed_everything
from frcnn.engine.tensorboard import TensorBoard
from frcnn.engine.trainer import Trainer
from frcnn.errors import ConfigError

VIS_SCORE_THRESH = 0.5  # boxes drawn on the TensorBoard pictures


def plain_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def train(cfg: DictConfig, run_dir) -> dict:
    """Train as ``cfg`` (a composed train config) says, writing into ``run_dir``; returns the final evaluation's
    metrics. ``cfg.dataset.classes`` is filled in when empty and ``cfg.dataset.root`` made absolute.

    Under torchrun this is one rank of the job (:mod:`frcnn.engine.distributed`): rank 0's ``run_dir`` is the
    run's, and only rank 0 writes into it."""
    check_train_config(cfg)
    env = env_from()
    check_world_size(int(cfg.train.batch_size), env)
    device = init_process_group(env, resolve_device(cfg.device))
    file_log = None
    try:
        run_dir, tc = Path(broadcast_from_main(str(Path(run_dir).resolve()))), cfg.train
        if env.rank == 0:
            check_run_dir(run_dir, resume=str(tc.resume), overwrite=bool(tc.overwrite))
            file_log = setup_file_logging(run_dir / "train.log")
            clean_run_dir(run_dir, resume=str(tc.resume), overwrite=bool(tc.overwrite))
        barrier()  # the run directory is ready (and cleaned) before any rank reads a checkpoint from it
        trainer = build_trainer(cfg, run_dir, device)
        with log_lines_above_the_bar(bool(tc.progress_bar) and env.rank == 0, log):
            trainer.train()
        return trainer.storage.metrics or {}
    finally:
        if file_log is not None:
            remove_handler(file_log)
        shutdown()


def check_world_size(batch_size: int, env: DistEnv) -> None:
    """``train.batch_size`` is the global batch: each of the job's processes takes an equal share of it."""
    if batch_size % env.world_size:
        raise ConfigError(f"train.batch_size={batch_size} does not divide over the {env.world_size} processes of "
                          f"this job: make it a multiple of {env.world_size} (it is the batch of all processes "
                          "together, each takes batch_size / world_size images)")


def build_trainer(cfg: DictConfig, run_dir: Path, device: Optional[torch.device] = None) -> Trainer:
    """Data, model, optimizer and hooks of a run, resumed from ``train.resume`` when given."""
    from frcnn.data.build import build_train_loader

    tc = cfg.train
    device = device or resolve_device(cfg.device)
    amp = check_amp(tc.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(tc.cudnn_benchmark)
    seed_everything(tc.seed)
    log.info("run directory: %s", run_dir.resolve())
    train_set, classes = prepare_training_set(cfg)
    log.info("device %s, amp %s, %d classes: %s", device, amp, len(classes), ", ".join(classes))
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=int(tc.keep_checkpoints))
    resume = resolve_resume(tc.resume, checkpointer.folder)
    model = build_training_model(cfg, device, start_weights=resume is None)  # a resumed run has its own weights
    optimizer = build_optimizer(model, tc)
    state = load_checkpoint(resume) if resume is not None else None
    start_iter = int(state["iteration"]) if state is not None else 0
    # The loader skips the batches already seen, so iteration k + 1 gets the batch it would have had; under
    # torchrun each rank takes its share of every global batch.
    env = env_from()
    data = build_train_loader(train_set, batch_size=int(tc.batch_size), loader_cfg=cfg.loader, seed=int(tc.seed),
                              start_iter=start_iter, rank=env.rank, world_size=env.world_size)
    trainer = Trainer(model=wrap(model, device), optimizer=optimizer, scheduler=build_scheduler(optimizer, tc),
                      data=data, max_iters=int(tc.max_iters), batch_size=int(tc.batch_size), device=device, amp=amp,
                      scaler=torch.amp.GradScaler(device.type, enabled=(amp == "fp16")),
                      clip_grad_norm=float(tc.clip_grad_norm), config=plain_config(cfg),
                      hooks=build_hooks(cfg, run_dir, checkpointer, device, amp, classes))
    if state is not None:
        trainer.load_checkpoint_state(state, resume)
        log.info("resumed from %s at iteration %d", resume, trainer.iter)
    return trainer


def prepare_training_set(cfg: DictConfig):
    """The training set with every image header checked, and its classes (also written into ``cfg``)."""
    from frcnn.data.build import build_dataset

    with open_dict(cfg):  # stored in checkpoints: frcnn-eval, run from anywhere, must find the same data
        cfg.dataset.root = str(Path(str(cfg.dataset.root)).expanduser().resolve())
    # The training set resolves the classes when dataset.classes is empty (a COCO file is parsed once for both).
    train_set = build_dataset(cfg.dataset, "train", train=True, loader_cfg=cfg.loader)
    classes = list(train_set.classes)
    with open_dict(cfg):
        cfg.dataset.classes = classes
    if is_main_process():  # every header once, not once per rank (the others wait for rank 0 in DDP's set-up)
        train_set.check_images()
    log.info("training data: %s", train_set)
    return train_set, classes


def build_training_model(cfg: DictConfig, device: torch.device, *, start_weights: bool = True) -> torch.nn.Module:
    from frcnn.modeling.build import build_model

    model = build_model(cfg, start_weights=start_weights)
    model = synchronised_batchnorm(model, trained_batchnorm(cfg), device).to(device)
    if cfg.train.compile:
        compile_model(model, cfg.model.input.min_size, mode=cfg.train.compile_mode,
                      backend=cfg.train.compile_backend)
    return model


def trained_batchnorm(cfg: DictConfig) -> str:
    """sync_bn, bn or another norm: how the model's trained BatchNorm layers (the backbone's, an FPN's and its box
    head's) normalise; sync_bn in either part synchronises every BatchNorm layer."""
    from frcnn.modeling.backbones import is_fpn

    norms = {str(cfg.backbone.norm)} | ({str(cfg.model.fpn.norm)} if is_fpn(cfg.backbone.name) else set())
    return next((norm for norm in ("sync_bn", "bn") if norm in norms), str(cfg.backbone.norm))


def synchronised_batchnorm(model: torch.nn.Module, norm: str, device: torch.device) -> torch.nn.Module:
    """Trained BatchNorm in a job of several ranks: ``sync_bn`` computes the batch statistics over all of them
    (torch's SyncBatchNorm, CUDA only), ``bn`` over each rank's share of the batch only (a different model than one
    process trains: said once). Frozen BN and GroupNorm need nothing."""
    if env_from().world_size == 1 or norm not in ("bn", "sync_bn"):
        return model
    if norm == "bn":
        log.warning("BatchNorm (bn) with %d processes: each normalises over its own share of the batch; "
                    "sync_bn normalises over the whole batch, as one process does", env_from().world_size)
        return model
    if device.type != "cuda":
        raise ConfigError("sync_bn (backbone.norm or model.fpn.norm) needs CUDA (torch's SyncBatchNorm) when several "
                          "processes train; on the CPU use gn, frozen_bn or bn")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def build_hooks(cfg: DictConfig, run_dir: Path, checkpointer: Checkpointer, device: torch.device, amp: str,
                classes: List[str]) -> List[Hook]:
    """Measuring hooks first (losses, periodic checkpoint, evaluation), then those that report their results."""
    tc = cfg.train
    evaluation = TrainingEvaluation(cfg, device, amp, classes)
    main = is_main_process()
    hooks = [
        LoggingHook(period=int(tc.log_period), progress_bar=main and bool(tc.progress_bar) and sys.stderr.isatty()),
        CheckpointHook(checkpointer, period=int(tc.checkpoint_period)),
        EvalHook(evaluation, period=int(tc.eval_period), classes=classes, prepare=evaluation.prepare),
        BestCheckpointHook(checkpointer),
    ]
    if main:  # the other ranks of a torchrun job write nothing
        hooks += [TensorBoardHook(TensorBoard(run_dir / "tensorboard")), MetricsFileHook(run_dir / "metrics.json")]
    return hooks


class TrainingEvaluation:
    """The evaluation split of a run (``train.eval_split``) scored with the dataset's metric, plus pictures of the
    first ``train.vis_images`` images with their detections. Global RNG states are left as they were, so
    evaluating does not change training."""

    def __init__(self, cfg: DictConfig, device: torch.device, amp: str, classes: List[str]):
        self.cfg, self.device, self.amp, self.classes = cfg, device, amp, classes
        self.loader = None

    def prepare(self) -> None:
        from frcnn.data.build import build_dataset, build_test_loader

        tc = self.cfg.train
        dataset = build_dataset(self.cfg.dataset, str(tc.eval_split), train=False, loader_cfg=self.cfg.loader)
        if is_main_process():  # before the first step: a broken file must not surface after hours of training
            dataset.check_images()
        env = env_from()  # under torchrun each rank evaluates its share of the batches
        self.loader = build_test_loader(dataset, batch_size=int(tc.eval_batch_size), loader_cfg=self.cfg.loader,
                                        rank=env.rank, world_size=env.world_size)
        log.info("evaluation: %s, %d images, metric %s, every %s", dataset.name, len(dataset),
                 self.cfg.dataset.metric, f"{tc.eval_period} iterations" if tc.eval_period > 0 else "run (end)")

    def __call__(self, model: torch.nn.Module) -> Optional[tuple]:
        from frcnn.evaluation import evaluate_dataset

        if self.loader is None:
            self.prepare()
        dataset = self.loader.dataset
        with preserved_rng():
            detections = run_inference(model, self.loader, device=self.device, amp=self.amp)
            if detections is None:  # another rank of a torchrun job: rank 0 scores them
                return None
            metrics = evaluate_dataset(dataset, detections, str(self.cfg.dataset.metric))
        count = min(int(self.cfg.train.vis_images), len(dataset))
        pictures = [draw_detections(dataset[i][0], detections[i], self.classes, score_thresh=VIS_SCORE_THRESH)
                    for i in range(count)]
        return metrics, pictures
