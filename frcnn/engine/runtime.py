"""Process-level settings of a run: device, seeds, mixed precision."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from frcnn.errors import ConfigError

AMP_MODES = ("off", "fp16", "bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given (CUDA must exist)."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name}: frcnn trains on cpu or cuda (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}, but CUDA is not available here (use device=auto or device=cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_amp(amp: str, device: torch.device) -> str:
    amp = str(amp)
    if amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"amp=fp16 needs CUDA (with a gradient scaler); on {device.type} use amp=bf16 or amp=off")
    return amp


def autocast(amp: str, device: torch.device):
    """The autocast context of ``amp`` on ``device`` (a no-op context for ``off``)."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), Python's ``random`` and NumPy's global generator."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    """All global RNG states as tensors and plain containers (loadable with ``weights_only=True``)."""
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_plain(random.getstate()),
        "numpy": _numpy_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned. Generator states are host-side byte tensors whatever the device
    they describe, so each is brought to the CPU first: the state may come from a ``torch.load`` that put every
    tensor on the training device (``set_rng_state`` refuses a CUDA tensor)."""
    torch.set_rng_state(_host_bytes(state["torch"]))
    random.setstate(_from_plain(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.cpu().numpy() if torch.is_tensor(keys) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [_host_bytes(s) for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _host_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(device="cpu", dtype=torch.uint8)


def _numpy_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]


def _to_plain(obj):
    # random.getstate() is (version, tuple_of_625_ints, gauss_next): tuples become lists.
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _from_plain(obj):
    if isinstance(obj, list):
        return tuple(_from_plain(v) for v in obj)
    return obj


@contextlib.contextmanager
def preserved_rng():
    """Run a block without changing any global RNG stream (evaluation inside training stays invisible to it)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
