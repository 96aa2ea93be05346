"""Checkpoints: atomic writes, safe loads, rotation, and the model-compatibility check.

A checkpoint is a dict of tensors and plain containers only, so it loads with ``torch.load(weights_only=True)``:

    model       the detector's state dict
    optimizer   SGD state (momentum buffers, param groups)
    scheduler   LambdaLR state (iterations done, the schedule's numbers)
    scaler      GradScaler state (empty when fp16 is off)
    iteration   iterations completed
    rng         global RNG states: torch CPU, CUDA (if used), Python ``random``, NumPy
    config      the composed config as a plain dict, ``dataset.classes`` resolved
    metrics     the last evaluation's summary numbers, when there was one

Files go to a temporary file in the same folder, are fsync'ed and renamed over the target: a crash or a kill at
any moment leaves either the old or the new file, never a truncated one.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from frcnn.atomic_file import atomic_write, fsync_folder
from frcnn.errors import FrcnnError
from frcnn.state_dicts import state_dict_mismatch

LAST = "last.pt"
BEST = "best.pt"
_ITER_RE = re.compile(r"^iter_(\d{7,})\.pt$")


class CheckpointError(FrcnnError, RuntimeError):
    """A checkpoint that cannot be used: unreadable, unsafe, or from another model."""


# --------------------------------------------------------------------------------------------------- files
def atomic_save(obj: Any, path) -> None:
    """``torch.save`` to ``path`` atomically (see :mod:`frcnn.atomic_file`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_link(source, target) -> None:
    """Make ``target`` the same file as ``source`` (a hard link, or a copy where links are not supported),
    replacing ``target`` atomically."""
    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_folder(target.parent)


def load_checkpoint(path) -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only. A file that holds
    anything else (a pickle that would run code) is refused with a :class:`CheckpointError`, and nothing in it
    runs.

    Every tensor is loaded onto the CPU, whatever device the run uses: each consumer puts its part where it
    belongs (``load_state_dict`` copies into the parameters' device, the optimizer casts its state to its
    parameters' device), and RNG states must stay host byte tensors (``torch.set_rng_state`` refuses a CUDA one).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_is_torch_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, which could run "
            f"code when unpickled (weights_only load failed: {_first_line(error)})"
        ) from None
    except Exception as error:  # a damaged archive
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not an frcnn checkpoint (no 'model' entry)")
    return state


def _check_is_torch_archive(path: Path) -> None:
    """``torch.save`` has written zip archives since PyTorch 1.6; anything else gets a plain answer instead of
    the legacy unpickler's ``KeyError: 101`` or ``EOFError``."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: the file is empty")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: the archive is truncated "
                                  f"({size} bytes; was it copied or written completely?)")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive as torch.save writes)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------- compatibility
def check_model_state(model_state: Mapping[str, torch.Tensor], model: torch.nn.Module, path) -> None:
    """Refuse a state dict that does not fit ``model``, naming the file and the keys that differ."""
    mismatch = state_dict_mismatch(model.state_dict(), model_state, given_name="checkpoint")
    if mismatch:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model (another backbone, class list or head?): {mismatch}"
        )


def describe_mismatch(saved_cfg: Mapping, cfg: Mapping) -> List[str]:
    """The model-defining keys (backbone name/norm, classes) that differ between two plain config dicts."""
    diffs = []
    for section, key in (("backbone", "name"), ("backbone", "norm"), ("dataset", "classes")):
        a = (saved_cfg.get(section) or {}).get(key)
        b = (cfg.get(section) or {}).get(key)
        if a != b:
            diffs.append(f"{section}.{key}: checkpoint {a!r}, config {b!r}")
    return diffs


# -------------------------------------------------------------------------------------------- rotation
class Checkpointer:
    """Writes ``iter_0001000.pt-style`` (keeping the newest ``keep``), ``last.pt`` and ``best.pt`` in ``folder``."""

    def __init__(self, folder, *, keep: int = 3):
        self.folder = Path(folder)
        self.keep = int(keep)

    @property
    def last_path(self) -> Path:
        return self.folder / LAST

    @property
    def best_path(self) -> Path:
        return self.folder / BEST

    def iteration_path(self, iteration: int) -> Path:
        return self.folder / f"iter_{iteration:07d}.pt"

    def save(self, state: Dict[str, Any], iteration: int) -> Path:
        """Write the periodic checkpoint of ``iteration`` and point ``last.pt`` at it; prune old ones."""
        path = self.iteration_path(iteration)
        atomic_save(state, path)
        atomic_link(path, self.last_path)
        self._prune()
        return path

    def save_best(self, state: Dict[str, Any]) -> Path:
        atomic_save(state, self.best_path)
        return self.best_path

    def periodic(self) -> List[Path]:
        found = []
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                match = _ITER_RE.match(entry.name)
                if match:
                    found.append((int(match.group(1)), entry))
        return [p for _, p in sorted(found)]

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        for path in self.periodic()[: -self.keep]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def resolve_resume(resume: str, folder) -> Optional[Path]:
    """``""`` -> None; ``auto`` -> ``folder/last.pt`` if it exists; otherwise the path given (must exist)."""
    resume = str(resume or "")
    if not resume:
        return None
    if resume == "auto":
        last = Path(folder) / LAST
        return last if last.is_file() else None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise CheckpointError(f"train.resume={resume}: no such file")
    return path
