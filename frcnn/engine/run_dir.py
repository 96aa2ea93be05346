"""The run directory's guard: writable, and never a finished run silently overwritten.

A run directory holds ``checkpoints/`` (``last.pt``, ``best.pt``, ``iter_*.pt``), ``metrics.json`` and
``tensorboard/``. Starting a fresh run over one that already holds checkpoints would mix two runs in one folder and
lose the first one's best checkpoint and metrics, so it is refused unless the user asks to continue it
(``train.resume=auto|PATH``) or to start over (``train.overwrite=true``, which deletes the old run's outputs).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import List

from frcnn.atomic_file import remove_stale_temporaries
from frcnn.errors import RunDirError

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
OUTPUTS = ("metrics.json", "tensorboard")  # beside checkpoints/: what a fresh start replaces


def previous_checkpoints(run_dir) -> List[Path]:
    folder = Path(run_dir) / CHECKPOINTS
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def check_run_dir(run_dir, *, resume: str, overwrite: bool) -> None:
    """Raise :class:`RunDirError` when ``run_dir`` cannot be written, or holds another run's checkpoints and
    neither ``resume`` nor ``overwrite`` says what to do with them. Changes nothing but creating the folders."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / CHECKPOINTS):
        check_writable(folder)
    found = previous_checkpoints(run_dir)
    if found and not str(resume or "") and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise RunDirError(
            f"the run directory {run_dir} already holds a run ({CHECKPOINTS}/: {names}); nothing was changed. "
            f"Continue it with train.resume=auto, start over in it with train.overwrite=true (deletes its "
            f"checkpoints, metrics.json and tensorboard/), or choose another directory with hydra.run.dir=PATH"
        )


def clean_run_dir(run_dir, *, resume: str, overwrite: bool) -> None:
    """After :func:`check_run_dir`: clear what killed writers left behind and, for ``overwrite`` without
    ``resume``, the previous run's outputs (logged, so call it once the run's log file is set up)."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / CHECKPOINTS):
        for path in remove_stale_temporaries(folder):
            log.info("removed %s, left by a write that was interrupted", path)
    if overwrite and not str(resume or ""):
        old = previous_checkpoints(run_dir) + [run_dir / name for name in OUTPUTS if (run_dir / name).exists()]
        for path in old:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if old:
            log.warning("train.overwrite=true: deleted the previous run's %s in %s",
                        ", ".join(str(p.relative_to(run_dir)) for p in old), run_dir)


def check_writable(folder) -> None:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunDirError(
            f"cannot write into {folder}: {error.strerror or error}. The run directory must be writable: fix its "
            f"permissions or choose another one with hydra.run.dir=PATH"
        ) from None
