"""The console progress bar of a run (tqdm): iterations, ETA, and the latest losses, lr and speed."""
from __future__ import annotations

import contextlib
import logging
import sys


class ProgressBar:
    def __init__(self, *, start: int, total: int, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True,
                             mininterval=1.0, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def log_lines_above_the_bar(enabled: bool, logger: logging.Logger):
    """Console log lines printed above the tqdm bar instead of through it."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    root = logging.getLogger()
    # Hydra's console handler sits on the root logger; without Hydra, setup_file_logging put one on ours.
    return logging_redirect_tqdm(loggers=[root] if root.handlers else [logger])
