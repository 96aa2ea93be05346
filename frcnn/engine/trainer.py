"""The training loop: ``Trainer`` runs the steps and calls its hooks; the run's set-up is ``frcnn.engine.launch``.

``Trainer.run_step`` is the whole step, top to bottom: next batch, forward under autocast, backward (through the
gradient scaler for fp16), optional gradient clipping, optimizer and scheduler step, and keeping the detached
losses. Nothing in it waits for the device: the losses are read (and checked for NaN/inf) only when a hook asks,
every ``train.log_period`` iterations and before each checkpoint or evaluation.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from torch import nn

from frcnn.engine.checkpoint import CheckpointError, check_model_state, describe_mismatch, load_checkpoint
from frcnn.engine.distributed import mean_over_ranks, unwrap
from frcnn.engine.events import EventStorage
from frcnn.engine.hooks import Hook
from frcnn.engine.runtime import autocast, rng_state, set_rng_state
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
        self.model = model  # what the step calls: the model, or its DistributedDataParallel wrapper under torchrun
        self.module = unwrap(model)  # the plain model: checkpoints, evaluation
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
        self.storage = EventStorage()
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
            self.start()
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

    def start(self) -> None:
        """Ready to step: the data iterator opened, the model in training mode (``train`` does this first; a
        caller that drives ``run_step`` itself, as the benchmark does, calls it once)."""
        self._data_iter = iter(self.data)
        self.model.train()

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
        """Read the losses kept since the last check (one device sync; under torchrun averaged over the ranks, so
        every rank reads the same values); raise on the first NaN/inf."""
        if not self._pending:
            return
        values = mean_over_ranks(torch.stack(self._pending)).cpu()
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
            "model": self.module.state_dict(),
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
        check_model_state(state["model"], self.module, path)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        hook_states = state.get("hooks", {})
        for hook in self.hooks:
            # Checkpoints written before the hooks were split kept the best metric under "EvalHook".
            for name in (type(hook).__name__, getattr(hook, "former_state_name", None)):
                if name in hook_states:
                    hook.load_state_dict(hook_states[name])
                    break
        self._rng_to_restore = state["rng"]
        self.iter = int(state["iteration"])
        self._pending_start = self.iter + 1
