"""Batching: the detection collate, an infinite seeded (aspect-grouped) batch sampler for training, and the
DataLoader settings (workers, pinned memory, persistent workers) from ``LoaderConfig``.

Training is counted in iterations, so the training batch sampler never ends: it walks seeded permutations of the
dataset, one after another, and (with aspect grouping) puts each index into its orientation's bucket, yielding a
bucket as soon as it holds ``batch_size`` indices. Every batch is therefore all landscape (W >= H) or all
portrait, which keeps the padded batch small. Orientation comes from the annotations' sizes: no image is decoded.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from frcnn.modeling.keyed_random import combine_key


def collate(batch):
    """[(image, target), ...] -> (list of images, list of targets): torchvision's detection contract.

    Targets with boxes are checked here (``frcnn.modeling.targets``, all but the upper label bound, which only the
    model knows), so a bad one from a dataset or its transform stops the run in the loader, naming the dataset item,
    not deep inside the training step."""
    from frcnn.data.errors import DataError
    from frcnn.modeling.targets import check_targets

    images, targets = zip(*batch) if batch else ((), ())
    for image, target in zip(images, targets):
        if isinstance(target, dict) and "boxes" in target:
            name = f"dataset[{target['index']}][1]" if "index" in target else "a dataset target"
            try:
                check_targets([target], [tuple(image.shape[-2:])], names=[name])
            except ValueError as error:
                raise DataError(f"{error} (image_id {target.get('image_id')!r}: check its annotation and the "
                                "dataset's transforms)") from None
    return list(images), list(targets)


class KeyedSample(NamedTuple):
    """One image of a training batch: its dataset index, its key (seed, global batch number, position in the global
    batch: its flip and its samples in the model follow from it, whichever rank loads it) and the original (H, W)
    of every image of the global batch (each rank then pads its share to the single-process canvas)."""

    index: int
    key: int
    batch_sizes: Tuple[Tuple[int, int], ...] = ()


class InfiniteGroupedBatchSampler(Sampler):
    """Yields lists of ``batch_size`` dataset indices forever.

    group_ids: int per index (e.g. 0 landscape, 1 portrait); batches only hold indices of one group. ``None``
    mixes all indices. The order is fixed by ``seed``; ``start_iter`` skips that many batches (resuming).
    Under torchrun, ``batch_size`` is the global batch and rank ``r`` of ``world_size`` yields its slice
    ``[r * b, (r + 1) * b)`` (b = batch_size / world_size): together the ranks see exactly the single-process
    batches, so a run resumes on any world size.
    """

    def __init__(self, group_ids: Optional[Sequence[int]], num_samples: int, *, batch_size: int, seed: int = 0,
                 start_iter: int = 0, rank: int = 0, world_size: int = 1,
                 sizes: Optional[Sequence[Tuple[int, int]]] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} cannot take an equal share of batch_size {batch_size}")
        self.share = batch_size // world_size
        self.first = rank * self.share
        self.sizes = sizes  # with sizes, batches are lists of KeyedSample (the training loader's); else of indices
        if num_samples < 1:
            raise ValueError("cannot sample batches from an empty dataset")
        self.group_ids = None if group_ids is None else np.asarray(group_ids, dtype=np.int64)
        if self.group_ids is not None and len(self.group_ids) != num_samples:
            raise ValueError("group_ids must have one entry per sample")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_iter = int(start_iter)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        buckets: dict[int, list[int]] = {}
        produced = 0
        while True:
            for index in torch.randperm(self.num_samples, generator=generator).tolist():
                key = 0 if self.group_ids is None else int(self.group_ids[index])
                bucket = buckets.setdefault(key, [])
                bucket.append(index)
                if len(bucket) == self.batch_size:
                    buckets[key] = []
                    if produced >= self.start_iter:
                        yield self._share(bucket, produced)
                    produced += 1

    def _share(self, batch: list[int], number: int) -> list:
        if self.sizes is None:
            return batch[self.first:self.first + self.share]
        sizes = tuple(tuple(self.sizes[i]) for i in batch)
        keyed = [KeyedSample(i, combine_key(self.seed, number, position), sizes) for position, i in enumerate(batch)]
        return keyed[self.first:self.first + self.share]


def _loader_kwargs(loader_cfg) -> dict:
    workers = int(getattr(loader_cfg, "num_workers", 0) or 0)
    kwargs = dict(
        num_workers=workers,
        collate_fn=collate,
        pin_memory=bool(getattr(loader_cfg, "pin_memory", False)) and torch.cuda.is_available(),
    )
    if workers > 0:
        kwargs["persistent_workers"] = bool(getattr(loader_cfg, "persistent_workers", False))
    return kwargs


def make_train_loader(dataset, *, batch_size: int, loader_cfg, seed: int, start_iter: int = 0, rank: int = 0,
                      world_size: int = 1) -> DataLoader:
    """Infinite DataLoader of (images, targets) batches, aspect-grouped when ``loader_cfg.aspect_grouping``; this
    rank's share of each global batch of ``batch_size``."""
    group_ids = dataset.aspect_groups() if getattr(loader_cfg, "aspect_grouping", True) else None
    sizes = [dataset.image_size(i) for i in range(len(dataset))]
    sampler = InfiniteGroupedBatchSampler(group_ids, len(dataset), batch_size=batch_size, seed=seed,
                                          start_iter=start_iter, rank=rank, world_size=world_size, sizes=sizes)
    generator = torch.Generator()
    generator.manual_seed(int(seed))  # seeds the workers' torch RNG (flips, jitter) reproducibly
    return DataLoader(dataset, batch_sampler=sampler, generator=generator, **_loader_kwargs(loader_cfg))


class ShardedBatchSampler(Sampler):
    """The batches of a single process's index-order test loader (``[0, b), [b, 2b), ...``), every
    ``world_size``-th one from ``rank``: under torchrun each rank evaluates whole batches of that single-process
    loader, so every image is padded and batched exactly as one process would (the same detections)."""

    def __init__(self, num_samples: int, *, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.batch_size, self.rank, self.world_size = num_samples, batch_size, rank, world_size

    def _batches(self) -> range:
        return range(self.rank, -(-self.num_samples // self.batch_size), self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield list(range(batch * self.batch_size, min((batch + 1) * self.batch_size, self.num_samples)))

    def __len__(self) -> int:
        return len(self._batches())


def make_test_loader(dataset, *, batch_size: int, loader_cfg, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Finite DataLoader visiting every image exactly once, in index order (this rank's batches under torchrun)."""
    sampler = ShardedBatchSampler(len(dataset), batch_size=batch_size, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_sampler=sampler, **_loader_kwargs(loader_cfg))
