"""Atomic file writes: a crash or ``kill -9`` at any moment leaves either the old file or the new one.

The content goes to a hidden temporary file in the target's folder (``.NAME.<random>.tmp``), is fsync'ed and renamed
over the target, and the folder is fsync'ed so the rename survives a power cut. A process killed mid-write leaves
its temporary file behind; :func:`remove_stale_temporaries` clears those when the next run starts.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Callable, List

_TEMPORARY = re.compile(r"^\..+\.tmp$")


def atomic_write(path, write: Callable[[IO], None], *, binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint or metrics file is as any other file
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(folder) -> List[Path]:
    """Delete the ``.NAME.*.tmp`` files that writers killed mid-write left in ``folder``; returns them.

    Only call it where no other process is writing into ``folder`` (a run's own directory at its start).
    """
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for entry in folder.iterdir():
            if _TEMPORARY.match(entry.name) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then put back at once
    os.umask(mask)
    return mask
