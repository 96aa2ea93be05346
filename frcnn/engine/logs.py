"""The run's plain-text log: the ``frcnn`` logger and its file (``train.log``, ``eval.log``)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

LOGGER_NAME = "frcnn"
log = logging.getLogger(LOGGER_NAME)


def setup_file_logging(path) -> logging.Handler:
    """Send ``frcnn`` log records to ``path`` (unless a handler, e.g. Hydra's job log, already writes there)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for logger in (logging.getLogger(), log):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == path:
                return handler
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    log.addHandler(handler)
    if not logging.getLogger().handlers:  # plain Python use (no Hydra): also print to the console
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S"))
        log.addHandler(console)
    return handler


def remove_handler(handler: Optional[logging.Handler]) -> None:
    if handler is not None and handler in log.handlers:
        log.removeHandler(handler)
        handler.close()
