"""How a state dict differs from the one a module expects: the keys it lacks, the keys it has too many, the
tensors of another shape. Used wherever weights are loaded (checkpoints, backbone weights), so that a file that
does not fit is refused with the same, complete answer everywhere."""
from __future__ import annotations

from typing import Mapping

import torch


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], *,
                        given_name: str = "file", expected_name: str = "model") -> str:
    """``""`` when ``given`` fits ``expected``; otherwise ``"missing keys: ...; unexpected keys: ...; shape
    mismatch: key (file (2, 3), model (4, 3))"``, at most 8 keys of each kind."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{key} ({given_name} {tuple(given[key].shape)}, {expected_name} {tuple(expected[key].shape)})"
        for key in set(expected) & set(given)
        if tuple(given[key].shape) != tuple(expected[key].shape)
    )
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def read_state_dict(path, setting: str) -> dict:
    """The dict of tensors saved in ``path`` (``torch.load(weights_only=True)``: nothing but tensors and plain
    containers is unpickled); a ``ConfigError`` naming ``setting`` and the file when it cannot be one."""
    from frcnn.errors import ConfigError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{setting}: file not found: {path}") from None
    except Exception as error:  # unreadable, truncated, or a pickle that is more than tensors
        raise ConfigError(f"{setting}: cannot read {path} as a state dict: {error}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{setting}: {path} holds a {type(state).__name__}, not a state dict")
    return state


def without_untracked_batch_counts(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict:
    """``state`` less the BatchNorm ``num_batches_tracked`` counters ``expected`` has no slot for: torchvision's
    BatchNorm2d files keep them, FrozenBatchNorm2d has none. Not a mismatch."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in expected}
