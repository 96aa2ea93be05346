"""Data problems: one error type for data that cannot be used, and a counter for data that was skipped.

Every message names the file it is about. Problems that can be skipped (a box clipped to its image, a box of zero
area dropped) are counted while a dataset is built and logged once per kind as a warning of the ``frcnn`` logger
(so they reach the run's log file), e.g.
``clipped 3 boxes outside their image in 2 files (first: data/VOCdevkit/VOC2007/Annotations/000123.xml)``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from frcnn.errors import FrcnnError

logger = logging.getLogger(__name__)


class DataError(FrcnnError, ValueError):
    """The dataset cannot be used as it is (the message names the file and what is wrong with it).

    A DataError raised in a DataLoader worker reaches the main process with its original message: torch re-creates
    the exception there as ``DataError("Caught DataError in DataLoader worker process 1.\\nOriginal Traceback ...")``
    (``torch._utils.ExceptionWrapper.reraise``, from the exception's type and the worker's formatted traceback).
    The constructor is the one place that sees every such re-creation, whichever DataLoader the caller built (the
    trainer's, the evaluator's, a user's own), so it keeps the message the worker raised and moves the worker's
    traceback to ``worker_traceback`` (None for an error raised in this process).
    """

    def __init__(self, *args) -> None:
        self.worker_traceback = None
        if len(args) == 1 and isinstance(args[0], str):
            original = _original_message(type(self), args[0])
            if original is not None:
                self.worker_traceback = args[0]
                args = (original,)
        super().__init__(*args)


def _original_message(cls: type, text: str) -> str | None:
    """The message of the exception that ``text`` (torch's "Caught X in DataLoader worker..." re-raise message)
    ends with, or None when ``text`` is not such a message."""
    if not (text.startswith(f"Caught {cls.__name__} ") and "\nOriginal Traceback" in text):
        return None
    # traceback.format_exception ends with "module.QualName: message"; a cause ("raise ... from e") comes first.
    marker = f"\n{cls.__module__}.{cls.__qualname__}: "
    start = text.rfind(marker)
    if start < 0:
        return None
    return text[start + len(marker):].rstrip("\n")


class IssueCounter:
    """Counts skippable problems by kind while annotations are read, then reports each kind once.

    ``add("clipped {n} boxes", path, n)`` records ``n`` items of that kind in ``path``; ``report()`` logs one
    warning per kind with the number of items, the number of files and the first file.
    """

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._kinds: "OrderedDict[str, list]" = OrderedDict()  # kind -> [items, files(set), first_file]

    def add(self, what: str, path: str, count: int = 1) -> None:
        entry = self._kinds.setdefault(what, [0, set(), str(path)])
        entry[0] += count
        entry[1].add(str(path))

    def messages(self) -> list[str]:
        out = []
        for what, (items, files, first) in self._kinds.items():
            where = f" in {len(files)} file{'s' if len(files) != 1 else ''} (first: {first})"
            prefix = f"{self.source}: " if self.source else ""
            out.append(f"{prefix}{what.format(n=items)}{where}")
        return out

    def report(self) -> None:
        for message in self.messages():
            logger.warning("%s", message)
