"""What the three commands share."""
from __future__ import annotations

import logging

log = logging.getLogger("frcnn")

CONFIG_PATH = "pkg://frcnn.conf"  # the configs ship inside the package (frcnn/conf -> conf/)


def run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def fail(error: BaseException) -> None:
    """A clean one-line error instead of a traceback for problems the user can fix (exit status 1)."""
    log.error("%s", error)
    raise SystemExit(1)
