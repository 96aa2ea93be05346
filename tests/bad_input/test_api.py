"""Bad input to the Python API: ``model(images, targets)`` in training mode refuses bad targets and empty images
with a ValueError naming the image, the field and the value (instead of segfaults, NaN losses or index errors deep
in the heads), and the data loader's collate refuses a bad target from a dataset before the training step."""
from __future__ import annotations

import math
import re

import pytest
import torch

import frcnn
from frcnn.data.errors import DataError
from frcnn.data.loader import collate
from frcnn.modeling.targets import check_targets

from helpers import SMALL_MODEL, compose_config

INF, NAN = math.inf, math.nan


def _compose():  # the small model on the smallest backbone, 3 classes
    return compose_config([*SMALL_MODEL, "backbone=resnet18", "dataset.classes=[a,b,c]"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return frcnn.build_model(_compose()).train()


def images():
    return [torch.rand(3, 120, 160), torch.rand(3, 100, 90)]


def targets(**second):
    """Two valid targets (3 classes); ``second`` replaces fields of the second image's target."""
    return [
        {"boxes": torch.tensor([[10.0, 20, 70, 90], [80, 30, 150, 110]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[10.0, 5, 60, 40]]), "labels": torch.tensor([3]), **second},
    ]


@pytest.mark.parametrize("boxes, message", [
    ([[10.0, 5, INF, 40]], r'targets[1]["boxes"][0] = [10.0, 5.0, inf, 40.0]: coordinates must be finite'),
    ([[10.0, 5, 60, 40], [NAN, 5, 60, 40]], r'targets[1]["boxes"][1] = [nan, 5.0, 60.0, 40.0]: coordinates must be '
                                            "finite"),
    ([[10.0, 5, 1e30, 40]], r'targets[1]["boxes"][0] = [10.0, 5.0, 1e+30, 40.0]: too far outside its 90x100 image; '
                            "coordinates must lie within one image side of it (x in [-90, 180], y in [-100, 200])"),
    ([[10.0, 5, 60, -101]], r'targets[1]["boxes"][0] = [10.0, 5.0, 60.0, -101.0]: x2 < x1 or y2 < y1'),
    ([[60.0, 5, 10, 40]], r'targets[1]["boxes"][0] = [60.0, 5.0, 10.0, 40.0]: x2 < x1 or y2 < y1; boxes are '
                          "(x1, y1, x2, y2) with x2 >= x1 and y2 >= y1"),
])
def test_bad_box_values_are_named(model, boxes, message):
    with pytest.raises(ValueError) as error:
        model(images(), targets(boxes=torch.tensor(boxes), labels=torch.ones(len(boxes), dtype=torch.int64)))
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize("label, why", [(4, "the model has 3 classes"), (7, "the model has 3 classes"),
                                        (-1, "negative"), (0, "0 is the background")])
def test_labels_outside_1_to_k_are_named(model, label, why):
    with pytest.raises(ValueError) as error:
        model(images(), targets(labels=torch.tensor([label])))
    assert str(error.value) == f'targets[1]["labels"][0] = {label}: labels must be class indices 1..3 ({why})'


@pytest.mark.parametrize("field, value, message", [
    ("boxes", torch.zeros(1, 5), r'targets[1]["boxes"] has shape [1, 5]: expected [N, 4]'),
    ("boxes", torch.tensor([10.0, 5, 60, 40]), r'targets[1]["boxes"] has shape [4]: expected [N, 4]'),
    ("boxes", torch.tensor([[10, 5, 60, 40]]), r'targets[1]["boxes"] has dtype torch.int64: expected a '
                                               "floating-point tensor"),
    ("boxes", [[10.0, 5, 60, 40]], r'targets[1]["boxes"] must be a torch.Tensor, got list'),
    ("labels", torch.tensor([1.0]), r'targets[1]["labels"] has dtype torch.float32: expected an integer tensor'),
    ("labels", torch.tensor([1, 2]), "targets[1] has 1 boxes but 2 labels: give one label per box"),
    ("labels", torch.tensor([[1]]), r'targets[1]["labels"] has shape [1, 1]: expected [N]'),
])
def test_bad_shapes_and_dtypes_are_named(model, field, value, message):
    with pytest.raises(ValueError) as error:
        model(images(), targets(**{field: value}))
    assert str(error.value).startswith(message), str(error.value)


def test_targets_that_do_not_fit_the_images_are_refused(model):
    with pytest.raises(ValueError, match="got 2 images but 1 targets: give one target dict per image"):
        model(images(), targets()[:1])
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'labels'"):
        model(images(), [{"boxes": torch.zeros(0, 4)}, targets()[1]])
    with pytest.raises(ValueError, match="targets must be a list with one dict per image, got dict"):
        model(images(), targets()[0])


@pytest.mark.parametrize("shape", [(3, 0, 0), (3, 0, 50), (3, 50, 0)])
def test_empty_images_are_refused_in_training_and_inference(model, shape):
    message = re.escape(f"images[1] has shape {list(shape)}: an image needs at least one pixel (H, W >= 1)")
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 50, 50), torch.rand(*shape)], [targets()[0], targets(boxes=torch.zeros(0, 4),
                                                                                labels=torch.zeros(0).long())[1]])
    model.eval()
    try:
        with pytest.raises(ValueError, match=message), torch.no_grad():
            model([torch.rand(3, 50, 50), torch.rand(*shape)])
    finally:
        model.train()


def test_valid_edge_cases_still_train(model):
    # No boxes at all ([0, 4] and [0]), int32 labels, boxes partly outside the image (within one side of it), a
    # degenerate box (x1 == x2: accepted, it overlaps nothing and adds nothing to the losses), float64 boxes.
    batch = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[-80.0, -90, 170, 190], [30, 5, 30, 40], [0, 0, 90, 100]], dtype=torch.float64),
         "labels": torch.tensor([1, 3, 2], dtype=torch.int32)},
    ]
    losses = model(images(), batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    losses = model(images(), targets())
    assert all(torch.isfinite(v) for v in losses.values()), losses


def test_a_degenerate_box_adds_nothing_to_the_losses(model):
    torch.manual_seed(1)
    image = [torch.rand(3, 120, 160)]
    with_point = model(image, [{"boxes": torch.tensor([[30.0, 40, 30, 80]]), "labels": torch.tensor([2])}])
    assert with_point["loss_rpn_box"].item() == 0.0 and with_point["loss_rcnn_box"].item() == 0.0


def test_check_targets_without_k_checks_all_but_the_upper_label_bound():
    good = [{"boxes": torch.tensor([[1.0, 2, 3, 4]]), "labels": torch.tensor([99])}]
    check_targets(good, [(10, 10)])
    with pytest.raises(ValueError, match=re.escape('targets[0]["labels"][0] = 0: labels must be class indices 1..K '
                                                   "(0 is the background)")):
        check_targets([{"boxes": good[0]["boxes"], "labels": torch.tensor([0])}], [(10, 10)])


def test_collate_refuses_a_bad_target_from_a_dataset_naming_the_item():
    def item(index, boxes):
        return torch.zeros(3, 20, 30, dtype=torch.uint8), {
            "boxes": torch.tensor(boxes), "labels": torch.ones(len(boxes), dtype=torch.int64), "index": index,
            "image_id": f"img{index}"}

    images_out, targets_out = collate([item(4, [[1.0, 2, 3, 4]]), item(7, [[1.0, 2, 3, 4]])])
    assert len(images_out) == 2 and [t["index"] for t in targets_out] == [4, 7]
    with pytest.raises(DataError) as error:
        collate([item(4, [[1.0, 2, 3, 4]]), item(7, [[1.0, 2, 3, 4], [5.0, 2, 3, 4]])])
    assert str(error.value).startswith('dataset[7][1]["boxes"][1] = [5.0, 2.0, 3.0, 4.0]: x2 < x1 or y2 < y1')
    assert "image_id 'img7'" in str(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_check_costs_no_sync_on_cpu_targets_and_one_on_cuda_targets():
    import warnings

    sizes = [(120, 160), (100, 90)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        check_targets(targets(), sizes, num_classes=3)  # what the loader gives: checked without the GPU
    finally:
        torch.cuda.set_sync_debug_mode(0)
    on_gpu = [{key: value.cuda() for key, value in target.items()} for target in targets()]
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            check_targets(on_gpu, sizes, num_classes=3)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert len([w for w in caught if "synchroniz" in str(w.message)]) == 1, [str(w.message) for w in caught]
    with pytest.raises(ValueError, match=re.escape('targets[1]["labels"][0] = 4: labels must be class indices 1..3')):
        check_targets([on_gpu[0], {**on_gpu[1], "labels": torch.tensor([4], device="cuda")}], sizes, num_classes=3)
