"""The training loop and the function that sets a run up from its config.

``Trainer.run_step`` is the whole step, top to bottom: next batch, forward under autocast, backward (through the
gradient scaler for fp16), optional gradient clipping, optimizer and scheduler step, and keeping the detached
losses. Nothing in it waits for the device: the losses are read (and checked for NaN/inf) only when a hook asks,
every ``train.log_period`` iterations and before each checkpoint or evaluation.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from frcnn.engine.checkpoint import (CheckpointError, Checkpointer, check_model_state, describe_mismatch,
                                    load_checkpoint, resolve_resume)
from frcnn.engine.hooks import CheckpointHook, EvalHook, Hook, LoggingHook
from frcnn.engine.logger import TensorBoard, log, remove_handler, setup_file_logging
from frcnn.engine.optim import build_optimizer, build_scheduler
from frcnn.engine.run_dir import check_run_dir, clean_run_dir
from frcnn.engine.runtime import autocast, check_amp, resolve_device, rng_state, seed_everything, set_rng_state
from frcnn.errors import FrcnnError


class NonFiniteLossError(FrcnnError, FloatingPointError):
    def __init__(self, iteration: int, loss: str, value: float):
        self.iteration, self.loss, self.value = iteration, loss, value
        super().__init__(
            f"non-finite loss at iteration {iteration}: {loss} = {value} (training stopped; the checkpoints written "
            f"before are untouched; try a lower train.lr, train.warmup_iters, or train.clip_grad_norm)"
        )


class Trainer:
    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        data: Iterable,
        max_iters: int,
        batch_size: int,
        device: torch.device,
        amp: str = "off",
        scaler: Optional[torch.amp.GradScaler] = None,
        clip_grad_norm: float = 0.0,
        start_iter: int = 0,
        hooks: Sequence[Hook] = (),
        config: Optional[dict] = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.max_iters = int(max_iters)
        self.batch_size = int(batch_size)
        self.device = device
        self.amp = amp
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
        self.clip_grad_norm = float(clip_grad_norm)
        self.iter = int(start_iter)  # iterations completed
        self.hooks = list(hooks)
        self.config = config or {}
        self._data_iter: Optional[Iterator] = None
        self._loss_names: Optional[List[str]] = None
        self._pending: List[torch.Tensor] = []  # detached [L] loss vectors not yet read
        self._pending_start = self.iter + 1  # iteration number of _pending[0]
        self._window: List[torch.Tensor] = []  # read (and checked) loss vectors not yet logged
        self._rng_to_restore: Optional[dict] = None  # a resumed run's RNG states, set just before the first step

    # -------------------------------------------------------------------------------------------- loop
    def train(self) -> None:
        try:
            for hook in self.hooks:
                hook.before_train(self)
            self._data_iter = iter(self.data)
            self.model.train()
            if self._rng_to_restore is not None:  # after the hooks' set-up, as late as in an uninterrupted run
                set_rng_state(self._rng_to_restore)
                self._rng_to_restore = None
            while self.iter < self.max_iters:
                self.run_step()
                self.iter += 1
                for hook in self.hooks:
                    hook.after_step(self)
            self.check_losses()
            for hook in self.hooks:
                hook.after_train(self)
        finally:
            for hook in self.hooks:
                hook.close()
            self._data_iter = None

    def run_step(self) -> None:
        images, targets = next(self._data_iter)
        with autocast(self.amp, self.device):
            losses = self.model(images, targets)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._keep(losses)

    # ------------------------------------------------------------------------------------------ losses
    def _keep(self, losses: Dict[str, torch.Tensor]) -> None:
        if self._loss_names is None:
            self._loss_names = list(losses)
        self._pending.append(torch.stack([losses[name].detach().float() for name in self._loss_names]))

    def check_losses(self) -> None:
        """Read the losses kept since the last check (one device sync); raise on the first NaN/inf."""
        if not self._pending:
            return
        values = torch.stack(self._pending).cpu()
        start = self._pending_start
        self._pending = []
        self._pending_start = self.iter + 1
        bad = ~torch.isfinite(values)
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise NonFiniteLossError(start + row, self._loss_names[col], float(values[row, col]))
        self._window.append(values)

    def pop_loss_means(self) -> Dict[str, float]:
        """Mean of each loss over the iterations since the last call (checked for NaN/inf first)."""
        self.check_losses()
        if not self._window:
            return {}
        means = torch.cat(self._window).mean(dim=0).tolist()
        self._window = []
        return dict(zip(self._loss_names, means))

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iter,
            "rng": rng_state(),
            "hooks": {type(hook).__name__: hook.state_dict() for hook in self.hooks if hook.state_dict()},
            "config": self.config,
        }

    def resume(self, path) -> None:
        """Continue from the checkpoint at ``path``. It is read onto the CPU whatever ``self.device`` is (see
        :func:`load_checkpoint`); restoring puts each part on the device its consumer needs."""
        self.load_checkpoint_state(load_checkpoint(path), path)

    def load_checkpoint_state(self, state: dict, path) -> None:
        """Restore everything a checkpoint holds; refuse one of another model (naming the file and keys)."""
        diffs = describe_mismatch(state.get("config") or {}, self.config) if self.config else []
        if diffs:
            raise CheckpointError(f"checkpoint {path} is from another model: " + "; ".join(diffs))
        check_model_state(state["model"], self.model, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        hook_states = state.get("hooks", {})
        for hook in self.hooks:
            if type(hook).__name__ in hook_states:
                hook.load_state_dict(hook_states[type(hook).__name__])
        self._rng_to_restore = state["rng"]
        self.iter = int(state["iteration"])
        self._pending_start = self.iter + 1


# ------------------------------------------------------------------------------------------------- setup
def plain_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def train(cfg: DictConfig, run_dir) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the final evaluation's metrics.

    ``cfg`` is a composed train config (``frcnn-train``'s); ``cfg.dataset.classes`` is filled in when empty.
    """
    from frcnn.data.build import build_dataset, build_test_loader, build_train_loader, resolve_classes
    from frcnn.modeling.build import build_model

    run_dir = Path(run_dir)
    tc = cfg.train
    check_run_dir(run_dir, resume=str(tc.resume), overwrite=bool(tc.overwrite))
    file_log = setup_file_logging(run_dir / "train.log")
    tensorboard = None
    try:
        clean_run_dir(run_dir, resume=str(tc.resume), overwrite=bool(tc.overwrite))
        device = resolve_device(cfg.device)
        amp = check_amp(tc.amp, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(tc.cudnn_benchmark)
        seed_everything(tc.seed)

        classes = resolve_classes(cfg.dataset)
        with open_dict(cfg):
            cfg.dataset.classes = list(classes)
            # Stored in checkpoints: frcnn-eval, run from anywhere, must find the same data.
            cfg.dataset.root = str(Path(str(cfg.dataset.root)).expanduser().resolve())
        log.info("run directory: %s", run_dir.resolve())
        log.info("device %s, amp %s, %d classes: %s", device, amp, len(classes), ", ".join(classes))

        train_set = build_dataset(cfg.dataset, "train", train=True, loader_cfg=cfg.loader)
        log.info("training data: %s", train_set)
        model = build_model(cfg).to(device)
        if tc.compile:
            model.trunk.compile()
            model.roi_heads.box_head.compile()
        optimizer = build_optimizer(model, tc)
        scheduler = build_scheduler(optimizer, tc)
        scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))

        checkpointer = Checkpointer(run_dir / "checkpoints", keep=int(tc.keep_checkpoints))
        tensorboard = TensorBoard(run_dir / "tensorboard")

        def build_eval_loader():
            dataset = build_dataset(cfg.dataset, str(tc.eval_split), train=False, loader_cfg=cfg.loader)
            return build_test_loader(dataset, batch_size=int(tc.eval_batch_size), loader_cfg=cfg.loader)

        # Order matters at a shared iteration: the loss check and log line first, then the periodic checkpoint,
        # then evaluation (which may write best.pt).
        hooks: List[Hook] = [
            LoggingHook(period=int(tc.log_period), tensorboard=tensorboard,
                        progress_bar=bool(tc.progress_bar) and sys.stderr.isatty()),
            CheckpointHook(checkpointer, period=int(tc.checkpoint_period)),
            EvalHook(build_loader=build_eval_loader, metric=str(cfg.dataset.metric), device=device, amp=amp,
                     classes=classes, period=int(tc.eval_period), checkpointer=checkpointer,
                     tensorboard=tensorboard, metrics_path=run_dir / "metrics.json", vis_images=int(tc.vis_images)),
        ]
        trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler, data=(), max_iters=int(tc.max_iters),
                          batch_size=int(tc.batch_size), device=device, amp=amp, scaler=scaler,
                          clip_grad_norm=float(tc.clip_grad_norm), hooks=hooks, config=plain_config(cfg))

        resume = resolve_resume(tc.resume, checkpointer.folder)
        if resume is not None:
            trainer.resume(resume)
            log.info("resumed from %s at iteration %d", resume, trainer.iter)
        # The loader skips the batches already seen, so iteration k + 1 gets the batch it would have had.
        trainer.data = build_train_loader(train_set, batch_size=int(tc.batch_size), loader_cfg=cfg.loader,
                                          seed=int(tc.seed), start_iter=trainer.iter)
        with _redirect_console(bool(tc.progress_bar)):
            trainer.train()
        return hooks[-1].final_metrics
    finally:
        if tensorboard is not None:
            tensorboard.close()
        remove_handler(file_log)


def _redirect_console(enabled: bool):
    """Console log lines printed above the tqdm bar instead of through it."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    root = logging.getLogger()
    # Hydra's console handler sits on the root logger; without Hydra, setup_file_logging put one on ours.
    return logging_redirect_tqdm(loggers=[root] if root.handlers else [log])
