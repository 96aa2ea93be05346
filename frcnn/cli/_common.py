"""What the three commands share: where the configs are, the run directory, and how input errors are reported."""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

log = logging.getLogger("frcnn")

CONFIG_PATH = "pkg://frcnn.conf"  # the configs ship inside the package (frcnn/conf -> conf/)
T = TypeVar("T")


def run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def run_job(job: Callable[..., T], cfg, *args) -> T:
    """``job(cfg, *args)``, with every input error of the project's own (:class:`frcnn.errors.FrcnnError`: a
    config value, dataset, checkpoint or run directory the user can fix) printed as one line and exit status 1.
    Anything else is a bug and keeps its traceback."""
    from frcnn.errors import FrcnnError

    try:
        return job(cfg, *args)
    except FrcnnError as error:
        fail(error)


def fail(error: BaseException) -> None:
    """A clean one-line error instead of a traceback for problems the user can fix (exit status 1)."""
    log.error("%s", error)
    raise SystemExit(1)
