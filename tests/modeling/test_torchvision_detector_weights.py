"""model.weights=PATH with torchvision's detection state dicts: our FPN detector, loaded from the file, detects what
torchvision's own model detects on the same images (the key map, the dropped background box, the anchors, the
per-level top-N and NMS, the ROI level mapping and the resize all have to be torchvision's for that)."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2

import frcnn
from frcnn.errors import ConfigError

from helpers import compose_config

CLASSES = ["a", "b", "c", "d"]  # torchvision's num_classes=5 (background + 4)
# torchvision's builder -> the overrides that make ours the same architecture
TORCHVISION = {"v1": (fasterrcnn_resnet50_fpn, ["backbone=resnet50_fpn"]),
               "v2": (fasterrcnn_resnet50_fpn_v2, ["backbone=resnet50_fpn", "fpn=torchvision_v2"])}
SMALL_INPUT = {"min_size": 320, "max_size": 512}  # torchvision's resize, at a size a CPU test affords
VARIANCE_FLOOR = 1.0  # see _calibrate_batchnorm
PROPOSALS = 300  # per image (torchvision's default 1000: more near-ties that float noise alone could decide)


def _smooth_images(generator):
    """Two images of different sizes and orientations, smooth colour fields: unlike pixel noise, they give ROIs
    that differ from each other, so the scores are well apart and the comparison is not decided by ties."""
    def smooth(height, width):
        low = torch.rand(1, 3, 6, 8, generator=generator)
        return F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    return [smooth(300, 400), smooth(350, 260)]


def _calibrate_batchnorm(model: nn.Module, images, generator) -> None:
    """Random affine parameters, and running statistics measured on ``images`` as training would leave them (each
    layer's inputs normalised): a mapping that dropped or swapped any of them would change the output, and the
    activations keep varying from place to place instead of drowning in fifty layers of random offsets."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]  # what weights=None builds
    for bn in norms:
        bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=generator))
        bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=generator))
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one pass, that batch's statistics
        bn.train()
    model(images)
    for bn in norms:
        bn.eval()
        # A channel nearly constant on two images would be scaled up a hundredfold, and float noise with it.
        bn.running_var.clamp_(min=VARIANCE_FLOOR)


def _spread_outputs(model: nn.Module, images, generator) -> None:
    """Give the RPN objectness, its box deltas and the box predictor outputs that vary across anchors and ROIs
    (randomly initialised heads on random features score everything alike): scale the objectness to std ~2, the
    deltas to 0.3, and point the class and box outputs along the main directions in which the ROI features of these
    images differ."""
    seen = {"logits": [], "deltas": [], "features": []}

    def keep(name):
        return lambda module, inputs, output: seen[name].append(output.flatten())  # returns None: output unchanged

    hooks = [model.rpn.head.cls_logits.register_forward_hook(keep("logits")),
             model.rpn.head.bbox_pred.register_forward_hook(keep("deltas")),
             model.roi_heads.box_head.register_forward_hook(keep("features"))]
    model(images)
    for hook in hooks:
        hook.remove()
    model.rpn.head.cls_logits.weight.mul_(2.0 / torch.cat(seen["logits"]).std())
    # Proposals well away from their anchors: neighbouring anchors overlap at IoUs near the NMS threshold (0.704 for
    # two 23 x 45 anchors 4 px apart), where float noise alone would decide which one NMS keeps.
    model.rpn.head.bbox_pred.weight.mul_(0.3 / torch.cat(seen["deltas"]).std())
    features = seen["features"][0].view(-1, model.roi_heads.box_predictor.cls_score.in_features)
    centre = features.mean(dim=0)
    _, spread, directions = torch.linalg.svd(features - centre, full_matrices=False)
    whiten = directions[:8] / (spread[:8, None] / features.shape[0] ** 0.5)  # 8 main directions, unit variance
    predictor = model.roi_heads.box_predictor
    for layer, scale in ((predictor.cls_score, 0.5), (predictor.bbox_pred, 0.1)):
        weight = scale * torch.randn(layer.weight.shape[0], 8, generator=generator) @ whiten
        layer.weight.copy_(weight)
        layer.bias.copy_(-(weight @ centre))


def _torchvision_model(version: str, images, generator) -> nn.Module:
    build, _ = TORCHVISION[version]
    model = build(weights=None, weights_backbone=None, num_classes=len(CLASSES) + 1, **SMALL_INPUT,
                  rpn_post_nms_top_n_test=PROPOSALS).eval()
    with torch.no_grad():
        _calibrate_batchnorm(model, images, generator)
        _spread_outputs(model, images, generator)
    return model


def _ours(version: str, weights_path, *extra) -> nn.Module:
    _, architecture = TORCHVISION[version]
    cfg = compose_config([*architecture, "dataset=shapes", f"dataset.classes=[{','.join(CLASSES)}]",
                          f"model.input.min_size=[{SMALL_INPUT['min_size']}]",
                          f"model.input.max_size={SMALL_INPUT['max_size']}",
                          f"model.rpn.post_nms_top_n.test={PROPOSALS}",
                          f"model.weights={weights_path}", *extra])
    return frcnn.build_model(cfg).eval()


def _sorted(result):
    order = torch.argsort(result["scores"], descending=True, stable=True)
    return {key: value[order] for key, value in result.items()}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_torchvision_detector_weights_give_torchvision_detections(version, tmp_path):
    generator = torch.Generator().manual_seed(0)
    images = _smooth_images(generator)
    theirs = _torchvision_model(version, images, generator)
    path = tmp_path / f"fasterrcnn_{version}.pt"
    torch.save(theirs.state_dict(), path)
    ours = _ours(version, path)
    with torch.no_grad():
        expected, actual = theirs(images), ours(images)
    for image, (want, got) in enumerate(zip(map(_sorted, expected), map(_sorted, actual))):
        assert len(want["boxes"]) >= 50, "too few detections to compare: the set-up no longer spreads the scores"
        assert len(got["boxes"]) == len(want["boxes"]), f"image {image}"
        assert torch.equal(got["labels"], want["labels"]), f"image {image}"
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=0)


def test_another_number_of_classes_keeps_a_fresh_predictor_and_loads_the_rest(tmp_path, caplog):
    theirs = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "coco.pt"
    torch.save(theirs.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="frcnn"):
        ours = _ours("v1", path)
    assert "predicts 90 classes, this model 4: the class predictor" in caplog.text
    assert ours.roi_heads.predictor.cls_score.weight.shape == (len(CLASSES) + 1, 1024)
    torch.testing.assert_close(ours.trunk.fpn.layer_blocks[0][0].weight, theirs.backbone.fpn.layer_blocks[0][0].weight)
    torch.testing.assert_close(ours.rpn.head.objectness.weight, theirs.rpn.head.cls_logits.weight)
    torch.testing.assert_close(ours.roi_heads.box_head.fc7.weight, theirs.roi_heads.box_head.fc7.weight)


def test_weights_of_another_architecture_are_refused_naming_the_file_and_keys(tmp_path):
    v2 = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=len(CLASSES) + 1)
    path = tmp_path / "v2.pt"
    torch.save(v2.state_dict(), path)
    with pytest.raises(ConfigError) as error:
        _ours("v1", path)  # a v1 model cannot take the v2 box head and RPN head
    message = str(error.value)
    assert str(path) in message and "does not fit this model" in message
    assert "rpn.head.extra_convs.0.weight" in message or "roi_heads.box_head.0.0.weight" in message


def test_a_file_that_is_no_detector_is_refused(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(ConfigError, match="neither an frcnn checkpoint nor a torchvision Faster R-CNN"):
        _ours("v1", path)
    with pytest.raises(ConfigError, match="file not found"):
        _ours("v1", tmp_path / "missing.pt")


def test_our_own_checkpoint_starts_a_model_with_its_weights(tmp_path):
    _, architecture = TORCHVISION["v1"]
    cfg = compose_config([*architecture, "dataset=shapes", f"dataset.classes=[{','.join(CLASSES)}]"])
    trained = frcnn.build_model(cfg)
    path = tmp_path / "last.pt"
    torch.save({"model": trained.state_dict(), "iteration": 10}, path)
    started = _ours("v1", path)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(started.state_dict()[key], value, msg=key)


@pytest.mark.parametrize("aligned", [False, True])
def test_pooling_the_stacked_levels_equals_pooling_level_by_level(aligned):
    """The GPU / compiled way (one call on edge-padded, stacked levels) against the eager CPU way (torchvision's
    ``MultiScaleRoIAlign``'s level by level), with ROIs of every level, some reaching the image's far borders."""
    from torchvision.ops import MultiScaleRoIAlign

    from frcnn.modeling.pooling import pool_rois_by_level, pool_stacked_levels, roi_levels

    generator = torch.Generator().manual_seed(0)
    levels = [torch.randn(2, 8, 128 // s, 192 // s, generator=generator) for s in (1, 2, 4, 8)]  # image 512 x 768
    corner = torch.rand(60, 2, generator=generator) * torch.tensor([500.0, 300.0])
    size = 8 + torch.rand(60, 2, generator=generator) * 800
    boxes = torch.cat([corner, torch.minimum(corner + size, torch.tensor([768.0, 512.0]))], dim=1)
    rois = torch.cat([torch.arange(60)[:, None].float() % 2, boxes], dim=1)
    strides, options = (4, 8, 16, 32), dict(pooler="align", output_size=7, sampling_ratio=2, aligned=aligned)
    level = roi_levels(rois[:, 1:], strides, 224.0, 4)
    assert set(level.tolist()) == {0, 1, 2, 3}
    eager = pool_rois_by_level(levels, rois, strides=strides, **options)
    torch.testing.assert_close(pool_stacked_levels(levels, rois, level, strides, options), eager)
    if not aligned:  # torchvision's own multi-level pooler
        theirs = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
        features = {str(i): f for i, f in enumerate(levels)}
        expected = theirs(features, [boxes[0::2], boxes[1::2]], [(512, 768), (512, 768)])
        order = torch.cat([torch.arange(0, 60, 2), torch.arange(1, 60, 2)])
        torch.testing.assert_close(eager[order], expected)
