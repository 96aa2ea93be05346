"""Invariants of the whole detector: the torchvision calling contract, empty images, gradients, weights, AMP."""
import pytest
import torch
import torchvision

import frcnn
from frcnn.modeling.backbones import WeightsMismatchError

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}


def batch_with_objects():
    images = [torch.rand(3, 120, 160), (torch.rand(3, 150, 110) * 255).to(torch.uint8)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 70, 90], [80, 30, 150, 110]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[5.0, 5, 60, 140]]), "labels": torch.tensor([3])},
    ]
    return images, targets


def empty_targets(n):
    return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in range(n)]


@pytest.mark.parametrize("backbone", ["vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_every_backbone_trains_and_detects(small_config, backbone):
    model = frcnn.build_model(small_config(f"backbone={backbone}", "dataset.classes=[a,b,c]"))
    images, targets = batch_with_objects()
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for detection in detections:
        assert set(detection) == {"boxes", "labels", "scores"}


def test_images_without_objects_give_zero_box_losses(small_config):
    model = frcnn.build_model(small_config("backbone=resnet18", "dataset.classes=[a,b,c]"))
    model.train()
    losses = model([torch.rand(3, 100, 130), torch.rand(3, 90, 90)], empty_targets(2))
    assert losses["loss_rpn_box"].item() == 0.0
    assert losses["loss_rcnn_box"].item() == 0.0
    assert losses["loss_rpn_cls"].item() > 0 and losses["loss_rcnn_cls"].item() > 0
    sum(losses.values()).backward()  # and the backward pass goes through


def test_mixed_batch_with_one_empty_image(small_config):
    model = frcnn.build_model(small_config("backbone=resnet18", "dataset.classes=[a,b,c]"))
    images, targets = batch_with_objects()
    model.train()
    losses = model(images, [targets[0], empty_targets(1)[0]])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_rpn_box"].item() > 0


def test_eval_returns_at_most_n_boxes_inside_each_original_image(small_config):
    model = frcnn.build_model(
        small_config(
            "backbone=resnet18", "dataset.classes=[a,b,c]", "model.roi.score_thresh=0.0",
            "model.roi.detections_per_img=7", "model.roi.nms_thresh=0.9",
        )
    ).eval()
    sizes = [(120, 160), (300, 90), (57, 61)]
    with torch.no_grad():
        detections = model([torch.rand(3, h, w) for h, w in sizes])
    for (height, width), detection in zip(sizes, detections):
        boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
        assert boxes.shape[0] == 7  # score_thresh 0: plenty of candidates, capped at detections_per_img
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all())
        assert bool((boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all())
        assert bool(((labels >= 1) & (labels <= 3)).all())
        assert scores.tolist() == sorted(scores.tolist(), reverse=True)


@pytest.mark.parametrize("backbone, frozen_prefixes, trainable_prefixes", [
    ("vgg16", ["trunk.0.", "trunk.2.", "trunk.5.", "trunk.7."], ["trunk.10.", "trunk.28."]),
    ("resnet18", ["trunk.0.", "trunk.1."], ["trunk.2.", "trunk.3."]),
])
def test_gradients_reach_trainable_trunk_and_never_frozen(small_config, backbone, frozen_prefixes, trainable_prefixes):
    model = frcnn.build_model(small_config(f"backbone={backbone}", "dataset.classes=[a,b,c]"))
    model.train()
    images, targets = batch_with_objects()
    sum(model(images, targets).values()).backward()
    params = dict(model.named_parameters())
    for name, param in params.items():
        if any(name.startswith(p) for p in frozen_prefixes):
            assert not param.requires_grad and param.grad is None, name
        if any(name.startswith(p) for p in trainable_prefixes):
            assert param.requires_grad and param.grad is not None and param.grad.abs().sum() > 0, name
    assert any(name.startswith(p) for name in params for p in frozen_prefixes)


def test_weights_file_in_torchvision_layout_loads(small_config, tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # statistics and affine terms that are not the identity, as trained weights have
        for bn in (m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            for buffer in (bn.weight, bn.bias, bn.running_mean):
                buffer.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = frcnn.build_model(small_config("backbone=resnet18", f"backbone.weights={path}", "dataset.classes=[a]"))
    torch.testing.assert_close(model.trunk[0][0].weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.trunk[3][1].conv2.weight, reference.layer3[1].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        model.roi_heads.box_head.layer4[0].conv1.weight, reference.layer4[0].conv1.weight, rtol=0, atol=0
    )
    bn = reference.layer2[0].bn1  # folded into the convolution before it: scale = gamma / sqrt(var + eps)
    folded = model.trunk[2][0].conv1
    torch.testing.assert_close(folded.scale, bn.weight / torch.sqrt(bn.running_var + 1e-5))
    torch.testing.assert_close(folded.shift, bn.bias - bn.running_mean * folded.scale)


def test_weights_file_that_does_not_fit_names_file_and_keys(small_config, tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(WeightsMismatchError) as error:
        frcnn.build_model(small_config("backbone=resnet18", f"backbone.weights={path}", "dataset.classes=[a]"))
    message = str(error.value)
    assert str(path) in message and "unexpected keys" in message and "layer1.2." in message and "80 in all" in message

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="garbage.pth"):
        frcnn.build_model(small_config("backbone=resnet18", f"backbone.weights={garbage}", "dataset.classes=[a]"))


def test_bf16_autocast_keeps_losses_float32(small_config):
    model = frcnn.build_model(small_config("backbone=resnet18", "dataset.classes=[a,b,c]"))
    model.train()
    images, targets = batch_with_objects()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_unknown_backbone_and_empty_classes_are_clear_errors(small_config):
    config = small_config("dataset.classes=[a]")
    config.backbone.name = "resnet9"
    with pytest.raises(ValueError, match="resnet9.*vgg16"):
        frcnn.build_model(config)
    with pytest.raises(ValueError, match="dataset.classes is empty"):
        frcnn.build_model(small_config("dataset.classes=[]"))


def deterministic_config(small_config):
    # Sampling batches larger than the candidate pools take every candidate: no randomness, so CPU and CUDA
    # runs see identical samples.
    return small_config(
        "backbone=resnet18", "dataset.classes=[a,b,c]", "model.rpn.batch_size_per_image=100000",
        "model.rpn.positive_fraction=0.5", "model.roi.batch_size_per_image=100000",
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_losses_match_cpu(small_config):
    torch.manual_seed(0)
    model = frcnn.build_model(deterministic_config(small_config)).train()
    images, targets = batch_with_objects()
    cpu_losses = model(images, targets)
    gpu_losses = model.cuda()(images, targets)
    for key in LOSS_KEYS:
        torch.testing.assert_close(gpu_losses[key].cpu(), cpu_losses[key], rtol=1e-3, atol=1e-4)


def test_deterministic_config_gives_repeatable_losses(small_config):
    # The same property the CUDA test relies on, checked on the CPU: no randomness left in the step.
    model = frcnn.build_model(deterministic_config(small_config)).train()
    images, targets = batch_with_objects()
    first, second = model(images, targets), model(images, targets)
    for key in LOSS_KEYS:
        assert torch.equal(first[key], second[key])
