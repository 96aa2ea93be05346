"""Flip (exact boxes), jitter, the grouped infinite batch sampler and collate."""
import itertools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from frcnn.data.build import build_test_loader, build_train_loader
from frcnn.data.loader import InfiniteGroupedBatchSampler, collate
from frcnn.data.transforms import TrainTransform
from frcnn.data.voc import VOCDataset

from helpers import data as tiny

LOADER0 = OmegaConf.create(dict(num_workers=0, pin_memory=False, persistent_workers=False, aspect_grouping=True,
                                hflip_prob=0.5, color_jitter=0.0))


def test_flip_moves_boxes_exactly():
    image = torch.arange(3 * 4 * 10, dtype=torch.uint8).reshape(3, 4, 10)
    boxes = torch.tensor([[0.0, 0.0, 5.0, 4.0], [2.5, 1.0, 10.0, 3.0], [3.0, 0.5, 4.0, 1.5]])
    flipped_image, flipped = TrainTransform(hflip_prob=1.0)(image, boxes)
    # x1' = W - x2, x2' = W - x1 with W = 10
    assert torch.equal(flipped, torch.tensor([[5.0, 0.0, 10.0, 4.0], [0.0, 1.0, 7.5, 3.0], [6.0, 0.5, 7.0, 1.5]]))
    assert not torch.signbit(flipped).any()  # no -0.0
    assert torch.equal(flipped_image, image.flip(-1)) and flipped_image.dtype == torch.uint8
    same_image, same = TrainTransform(hflip_prob=0.0)(image, boxes)
    assert torch.equal(same, boxes) and torch.equal(same_image, image)
    empty_image, empty = TrainTransform(hflip_prob=1.0)(image, torch.zeros(0, 4))
    assert empty.shape == (0, 4)


def test_dataset_flip_matches_ground_truth(voc_root):
    ds = VOCDataset(voc_root, ["VOC2007/trainval"], tiny.VOC_CLASSES, train=True, hflip_prob=1.0,
                    use_difficult=True)
    image, target = ds[0]
    plain = VOCDataset(voc_root, ["VOC2007/trainval"], tiny.VOC_CLASSES, train=False)[0][0]
    assert torch.equal(image, plain.flip(-1))
    # W = 100: [0,0,50,40] -> [50,0,100,40]; [9,19,30,60] -> [70,19,91,60]; [47.5,9,100,80] -> [0,9,52.5,80]
    assert torch.equal(target["boxes"], torch.tensor([[50, 0, 100, 40], [70, 19, 91, 60], [0, 9, 52.5, 80.0]]))
    assert target["orig_size"] == (80, 100)


def test_color_jitter_changes_pixels_only():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out, out_boxes = TrainTransform(hflip_prob=0.0, color_jitter=0.4)(image, boxes)
    assert out.dtype == torch.uint8 and out.shape == image.shape and not torch.equal(out, image)
    assert torch.equal(out_boxes, boxes)
    with pytest.raises(ValueError):
        TrainTransform(hflip_prob=1.5)


def test_grouped_sampler_batches_one_orientation_only():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 2, size=23)
    sampler = InfiniteGroupedBatchSampler(groups, 23, batch_size=3, seed=5)
    batches = list(itertools.islice(iter(sampler), 200))
    assert all(len(b) == 3 for b in batches)
    assert all(len({int(groups[i]) for i in b}) == 1 for b in batches)
    assert {i for b in batches for i in b} == set(range(23))  # every image gets used
    again = list(itertools.islice(iter(InfiniteGroupedBatchSampler(groups, 23, batch_size=3, seed=5)), 200))
    assert again == batches  # seeded
    other = list(itertools.islice(iter(InfiniteGroupedBatchSampler(groups, 23, batch_size=3, seed=6)), 200))
    assert other != batches
    resumed = list(itertools.islice(iter(InfiniteGroupedBatchSampler(groups, 23, batch_size=3, seed=5,
                                                                      start_iter=50)), 150))
    assert resumed == batches[50:]
    mixed = list(itertools.islice(iter(InfiniteGroupedBatchSampler(None, 23, batch_size=4, seed=0)), 30))
    assert all(len(b) == 4 for b in mixed)


def test_train_loader_groups_by_annotation_sizes_without_decoding(voc_root, monkeypatch):
    ds = VOCDataset(voc_root, ["VOC2007/trainval"], tiny.VOC_CLASSES, train=True)  # sizes: L, P, L
    calls = []
    monkeypatch.setattr("frcnn.data.dataset.read_image",
                        lambda p: calls.append(p) or torch.zeros(3, *ds.image_size(ds.image_ids.index(
                            p.rsplit("/", 1)[-1][:-4])), dtype=torch.uint8))
    groups = ds.aspect_groups()
    assert groups.tolist() == [0, 1, 0] and not calls
    loader = build_train_loader(ds, batch_size=2, loader_cfg=LOADER0, seed=0)
    for images, targets in itertools.islice(iter(loader), 10):
        orientations = {int(im.shape[1] > im.shape[2]) for im in images}
        assert len(orientations) == 1 and len(images) == 2
        assert [t["orig_size"] for t in targets] == [tuple(im.shape[1:]) for im in images]


def test_test_loader_is_sequential_and_complete(voc_root):
    ds = VOCDataset(voc_root, ["VOC2007/trainval"], tiny.VOC_CLASSES, train=False)
    loader = build_test_loader(ds, batch_size=2, loader_cfg=LOADER0)
    seen = [t["index"] for _, targets in loader for t in targets]
    assert seen == [0, 1, 2] and len(loader) == 2


def test_collate_keeps_lists():
    batch = [(torch.zeros(3, 2, 2), {"a": 1}), (torch.ones(3, 4, 5), {"a": 2})]
    images, targets = collate(batch)
    assert isinstance(images, list) and isinstance(targets, list)
    assert [im.shape for im in images] == [(3, 2, 2), (3, 4, 5)] and targets == [{"a": 1}, {"a": 2}]
