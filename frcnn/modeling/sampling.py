"""Balanced sampling of foreground and background candidates, batched over images.

Shapes: N images, M candidates per image. Labels: 1 = foreground, 0 = background, -1 = ignored.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor


def sample_balanced(labels: Tensor, batch_size_per_image: int, positive_fraction: float,
                    uniform: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Pick up to ``batch_size_per_image`` candidates per image, at most ``positive_fraction`` of them foreground.

    Foreground is taken first (at most ``round(batch * fraction)``), background fills the rest of the batch
    (``batch - n_pos``, not ``n_pos`` as in seed 000). Both are drawn uniformly without replacement, all images
    at once: random keys, ``topk``, and a per-image count mask -- no Python loop, no host synchronisation.
    ``uniform [N, M]`` (numbers in [0, 1), e.g. :func:`frcnn.modeling.keyed_random.keyed_uniform`) decides the
    draw; without it they come from torch's generator. Returns boolean masks ``(positive [N, M], negative [N, M])``.
    """
    positive = labels == 1
    negative = labels == 0
    max_positive = int(round(batch_size_per_image * positive_fraction))
    num_positive = positive.sum(dim=1).clamp(max=max_positive)
    num_negative = negative.sum(dim=1).clamp(max=batch_size_per_image - num_positive)
    if uniform is None:
        uniform = torch.rand(labels.shape, device=labels.device)
    # One number per candidate serves both draws: positives and negatives are disjoint.
    return (_random_subset(positive, num_positive, max_positive, uniform),
            _random_subset(negative, num_negative, batch_size_per_image, uniform))


def _random_subset(candidates: Tensor, counts: Tensor, max_count: int, uniform: Tensor) -> Tensor:
    """``[N, M]`` mask with ``counts[n]`` entries chosen uniformly among ``candidates[n]``."""
    k = min(max_count, candidates.shape[1])
    if k == 0:
        return torch.zeros_like(candidates)
    keys = uniform.masked_fill(~candidates, -1.0)
    top = keys.topk(k, dim=1).indices  # the k highest keys: candidates first, in random order
    chosen = torch.arange(k, device=candidates.device)[None, :] < counts[:, None]
    return torch.zeros_like(candidates).scatter_(1, top, chosen)


def gather_selected(mask: Tensor, count: int) -> Tuple[Tensor, Tensor]:
    """Indices of the selected entries of ``mask [N, M]`` packed into ``[N, count]``, plus a validity mask.

    Images with fewer than ``count`` selected entries are padded (indices of unselected entries, valid=False),
    so downstream tensors keep a static shape. Selected entries come first, in index order.
    """
    k = min(count, mask.shape[1])
    # Selected entries score 2 - position/M (all > 1), others below 1; topk keeps them first and in order.
    position = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32) / max(mask.shape[1], 1)
    score = mask.float() - position[None, :] + 1.0
    indices = score.topk(k, dim=1).indices
    valid = mask.gather(1, indices)
    if k < count:
        pad = count - k
        indices = torch.cat([indices, indices.new_zeros(indices.shape[0], pad)], dim=1)
        valid = torch.cat([valid, valid.new_zeros(valid.shape[0], pad)], dim=1)
    return indices, valid
