"""A Hydra callback of the commands: checks the run directory before Hydra writes into it.

Hydra creates the run directory and rewrites its ``.hydra/`` (config.yaml, overrides.yaml) before the training
function starts, so a check inside the function comes too late to keep another run's record intact or to name an
unwritable directory instead of Hydra's bare ``PermissionError``.
"""
from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class RunDirGuard(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from frcnn.engine.distributed import is_main_process
        from frcnn.engine.run_dir import check_run_dir, check_writable
        from frcnn.errors import FrcnnError

        if not is_main_process():  # under torchrun only rank 0 has a run directory (frcnn.cli._common)
            return
        try:
            if "train" in config:  # frcnn-train: also never over another run's checkpoints
                check_run_dir(config.hydra.run.dir, resume=str(config.train.resume),
                              overwrite=bool(config.train.overwrite))
            else:
                check_writable(config.hydra.run.dir)
        except FrcnnError as error:  # Hydra's own logging is set up, not the job's: print the job's error line
            print(f"[frcnn][ERROR] - {error}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
