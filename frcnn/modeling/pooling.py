"""ROI pooling with torchvision's ``roi_align`` / ``roi_pool``, split over CPU threads.

torchvision's CPU kernels for these ops run on one thread (a plain loop over the ROIs), a large share of a CPU
step with a C4 head (README, Speed). The ROIs are independent, so here they are cut into one chunk
per thread and the chunks are pooled concurrently (the ops release the GIL), forward and backward, and the
results are concatenated (forward) or summed (the feature gradient, backward). CUDA kernels are parallel already
and take the whole batch at once.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align, roi_pool

from frcnn.modeling.nms import host_reads_are_free

POOLERS = ("align", "pool")
MIN_ROIS_PER_THREAD = 16  # below this the thread hand-off costs more than it saves

_executor: Optional[ThreadPoolExecutor] = None
_executor_key = None
_executor_lock = threading.Lock()


def pool_rois(
    features: Tensor, rois: Tensor, *, pooler: str, output_size: int, spatial_scale: float, sampling_ratio: int,
    aligned: bool = True,
) -> Tensor:
    """``[R, C, output_size, output_size]`` features for ``rois [R, 5]`` (image index, x1, y1, x2, y2), float32.

    The result has the dtype of ``features``; the pooling itself runs in float32, as torchvision's autocast
    wrapper of these ops would run it.
    """
    if pooler == "align":
        # aligned=True (the detector's choice): pixel centres at +0.5, right for continuous box coordinates.
        op = partial(roi_align, output_size=output_size, spatial_scale=spatial_scale,
                     sampling_ratio=sampling_ratio, aligned=aligned)
    elif pooler == "pool":
        op = partial(roi_pool, output_size=output_size, spatial_scale=spatial_scale)
    else:
        raise ValueError(f"model.roi.pooler must be one of {', '.join(POOLERS)}, got {pooler!r}")
    # float32 as the kernels want it (box coordinates too: bfloat16 would round them to 4 px near 1000 px), and
    # contiguous once here rather than once per chunk inside the kernel.
    pooled_input = features.float().contiguous()
    rois = rois.float()
    threads = _useful_threads(pooled_input, rois)
    if threads <= 1:
        pooled = op(pooled_input, rois)
    else:
        pooled = _pool_in_threads(op, pooled_input, rois, threads)
    return pooled.to(features.dtype)


def pool_rois_by_level(
    levels: Sequence[Tensor], rois: Tensor, *, strides: Sequence[int], pooler: str, output_size: int,
    sampling_ratio: int, aligned: bool = True, canonical_size: float = 224.0, canonical_level: int = 4,
) -> Tensor:
    """Like :func:`pool_rois`, each ROI from the pyramid level its size selects (FPN paper, eq. 1, as torchvision's
    ``MultiScaleRoIAlign``): level ``floor(canonical_level + log2(sqrt(area) / canonical_size))``, clamped to the
    levels given (``strides`` = 4, 8, 16, 32 for P2..P5).

    In eager CPU code each level's ROIs are pooled from that level (:func:`_pool_level_by_level`); on a GPU and in
    compiled graphs, where a host read would wait for the device or break the graph, :func:`pool_stacked_levels`
    pools them all in one call with static shapes.
    """
    level = roi_levels(rois[:, 1:], strides, canonical_size, canonical_level)
    options = dict(pooler=pooler, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)
    if host_reads_are_free(rois):
        return _pool_level_by_level(levels, rois, level, strides, options)
    return pool_stacked_levels(levels, rois, level, strides, options)


def pool_stacked_levels(levels: Sequence[Tensor], rois: Tensor, level: Tensor, strides: Sequence[int],
                        options: dict) -> Tensor:
    """One pooling call for all levels, no host read: the levels are stacked into one batch of maps of the finest
    level's size, each padded on the right and bottom by repeating its last column and row (a sample the kernel
    would clamp to a level's border then reads the same value there), and each ROI is scaled to its level
    beforehand and pooled from its level's copy of its image (``spatial_scale=1``)."""
    num_images = levels[0].shape[0]
    scales = torch.tensor([1.0 / s for s in strides], dtype=torch.float32, device=rois.device)[level]
    scaled = torch.cat([(level * num_images + rois[:, 0].long()).to(rois.dtype)[:, None],
                        rois[:, 1:] * scales[:, None].to(rois.dtype)], dim=1)
    return pool_rois(stack_levels(levels), scaled, spatial_scale=1.0, **options)


def _pool_level_by_level(levels: Sequence[Tensor], rois: Tensor, level: Tensor, strides: Sequence[int],
                         options: dict) -> Tensor:
    """Eager CPU code: each level's ROIs pooled from that level alone (a host read per level, as torchvision's
    ``MultiScaleRoIAlign`` does), then put back in ROI order. Cheaper here than stacking the levels, which copies
    four times the finest level."""
    pieces, order = [], []
    for index, (features, stride) in enumerate(zip(levels, strides)):
        members = (level == index).nonzero().squeeze(1)
        if members.numel():
            pieces.append(pool_rois(features, rois[members], spatial_scale=1.0 / stride, **options))
            order.append(members)
    if not pieces:  # no ROI at all
        return pool_rois(levels[0], rois, spatial_scale=1.0 / strides[0], **options)
    return torch.cat(pieces)[torch.argsort(torch.cat(order))]


def roi_levels(boxes: Tensor, strides: Sequence[int], canonical_size: float, canonical_level: int) -> Tensor:
    """``[R]`` index into ``strides`` of each box's level (torchvision's ``LevelMapper``, in its float32 steps)."""
    k_min, k_max = math.log2(strides[0]), math.log2(strides[-1])
    side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    target = torch.floor(canonical_level + torch.log2(side / canonical_size) + torch.tensor(1e-6, dtype=side.dtype))
    return (target.clamp(min=k_min, max=k_max).to(torch.int64) - int(k_min))


def stack_levels(levels: Sequence[Tensor]) -> Tensor:
    """``[L * N, C, H_0, W_0]``: level l of image i at index ``l * N + i``, edge-padded to the first level's size."""
    height, width = levels[0].shape[-2:]
    padded: List[Tensor] = [levels[0]]
    for features in levels[1:]:
        pad = (0, width - features.shape[-1], 0, height - features.shape[-2])
        padded.append(F.pad(features, pad, mode="replicate"))
    return torch.cat(padded)


def _useful_threads(features: Tensor, rois: Tensor) -> int:
    if features.device.type != "cpu" or torch.compiler.is_compiling():  # a compiled graph takes the whole op
        return 1
    return max(1, min(torch.get_num_threads(), rois.shape[0] // MIN_ROIS_PER_THREAD))


def _pool_in_threads(op, features: Tensor, rois: Tensor, threads: int) -> Tensor:
    return _ThreadedPooling.apply(features, rois, op, threads)


class _ThreadedPooling(torch.autograd.Function):
    """``op(features, rois)`` with the ROIs split over ``threads`` worker threads, forward and backward.

    The backward of each chunk is autograd's own backward of ``op``, run in a worker thread on the chunk (pooling
    is linear in the features, so recomputing the chunk's forward there only rebuilds the graph; it costs about a
    quarter of the chunk's backward). The chunks' feature gradients are summed in float32.
    """

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, op, threads: int) -> Tensor:
        ctx.save_for_backward(features, rois)
        ctx.op, ctx.threads = op, threads
        chunks = rois.tensor_split(threads)
        return torch.cat(list(_thread_pool(threads).map(lambda chunk: op(features, chunk), chunks)))

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        features, rois = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None

        def chunk_gradient(chunk: Tensor, grad_chunk: Tensor) -> Tensor:
            with torch.enable_grad():
                leaf = features.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(ctx.op(leaf, chunk), leaf, grad_chunk)
            return grad

        pieces = zip(rois.tensor_split(ctx.threads), grad_output.tensor_split(ctx.threads))
        grads = list(_thread_pool(ctx.threads).map(lambda pair: chunk_gradient(*pair), pieces))
        return torch.stack(grads).sum(dim=0), None, None, None


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per process (threads do not survive a fork) and thread count."""
    global _executor, _executor_key
    key = (os.getpid(), threads)
    with _executor_lock:
        if _executor is None or _executor_key != key:
            _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="frcnn-roi-pool")
            _executor_key = key
        return _executor
