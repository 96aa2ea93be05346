"""Data problems: one error type for data that cannot be used, one warning type for data that was skipped.

Every message names the file it is about. Problems that can be skipped (a box clipped to its image, a box of zero
area dropped, a missing image left out) are counted while a dataset is built and reported once per kind, e.g.
``clipped 3 boxes outside their image in 2 files (first: data/VOCdevkit/VOC2007/Annotations/000123.xml)``.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

from frcnn.errors import FrcnnError


class DataError(FrcnnError, ValueError):
    """The dataset cannot be used as it is (the message names the file and what is wrong with it)."""


class DataWarning(UserWarning):
    """Something in the dataset was repaired or skipped (clipped boxes, dropped boxes, missing images...)."""


def warn(message: str, stacklevel: int = 2) -> None:
    warnings.warn(message, DataWarning, stacklevel=stacklevel + 1)


class IssueCounter:
    """Counts skippable problems by kind while annotations are read, then reports each kind once.

    ``add("clipped", path, n)`` records ``n`` items of that kind in ``path``; ``report()`` emits one
    :class:`DataWarning` per kind with the number of items, the number of files and the first file.
    """

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._kinds: "OrderedDict[str, list]" = OrderedDict()  # kind -> [items, files(set), first_file, what]

    def add(self, what: str, path: str, count: int = 1) -> None:
        entry = self._kinds.setdefault(what, [0, set(), str(path)])
        entry[0] += count
        entry[1].add(str(path))

    def count(self, what: str) -> int:
        entry = self._kinds.get(what)
        return entry[0] if entry else 0

    def messages(self) -> list[str]:
        out = []
        for what, (items, files, first) in self._kinds.items():
            where = f" in {len(files)} file{'s' if len(files) != 1 else ''} (first: {first})"
            prefix = f"{self.source}: " if self.source else ""
            out.append(f"{prefix}{what.format(n=items)}{where}")
        return out

    def report(self) -> None:
        for message in self.messages():
            warn(message, stacklevel=3)
