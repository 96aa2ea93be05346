"""Loss helpers shared by the RPN and the ROI head (always computed in float32)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.nn.functional as F
from torch import Tensor


def smooth_l1(pred: Tensor, target: Tensor, sigma: float) -> Tensor:
    """Elementwise smooth L1 of the seed code: 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2.

    That is PyTorch's ``smooth_l1_loss`` with ``beta = 1 / sigma^2``; summed over the last (box) dimension.
    """
    return F.smooth_l1_loss(pred.float(), target.float(), beta=1.0 / sigma**2, reduction="none").sum(dim=-1)


def masked_mean(values: Tensor, mask: Tensor, normalizer: Tensor) -> Tensor:
    """Sum of ``values`` where ``mask`` holds, divided by ``normalizer`` (clamped to at least 1).

    ``torch.where`` rather than a product: values outside the mask may be inf and must not turn the sum into NaN.
    """
    return torch.where(mask, values, torch.zeros_like(values)).sum() / normalizer.clamp(min=1).to(values.dtype)


def batch_count(count: Tensor) -> Tensor:
    """A loss normaliser counted over the whole batch (e.g. the anchors sampled in it): under torchrun, where each
    rank holds part of the batch, the mean of the ranks' counts. DDP averages the ranks' gradients, so each rank
    dividing its sum by (total count / world size) gives exactly the gradient of (sum over the batch / total count)
    that one process computes; a rank's own count would weigh its images differently."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return count
    total = funcol.all_reduce(count.float(), "sum", dist.group.WORLD)  # traceable by torch.compile
    return total / dist.get_world_size()
