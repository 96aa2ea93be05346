"""Frozen BatchNorm folded into the convolutions: the same function and gradients, fewer passes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.modeling.backbones import FrozenBNConv2d, build_backbone, fold_frozen_batchnorm


def _randomise_frozen_batchnorm(module: nn.Module) -> None:
    """Statistics away from the identity, so that a fold that ignored one of them would change the output."""
    generator = torch.Generator().manual_seed(1)
    for bn in (m for m in module.modules() if isinstance(m, FrozenBatchNorm2d)):
        bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=generator))
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.1)
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.1)
        bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=generator))


def test_folded_convolution_matches_conv_then_frozen_batchnorm_and_its_gradients():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    bn = FrozenBatchNorm2d(4)
    bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
    bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 3.0]))
    bn.running_mean.copy_(torch.tensor([0.5, -0.5, 0.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25, 9.0]) - bn.eps)  # sqrt(var + eps) = 2, 1, 0.5, 3
    folded = FrozenBNConv2d(conv, bn)
    assert folded.weight is conv.weight  # the same Parameter: optimizer, freezing and checkpoints see it
    torch.testing.assert_close(folded.scale, torch.tensor([0.5, 2.0, 1.0, -1 / 3]))
    torch.testing.assert_close(folded.shift, torch.tensor([-0.25, 2.0, -1.0, 3 + 2 / 3]))

    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    expected = bn(conv(x))
    (grad_weight_expected, grad_x_expected) = torch.autograd.grad(expected.square().sum(), (conv.weight, x))
    actual = folded(x)
    (grad_weight, grad_x) = torch.autograd.grad(actual.square().sum(), (folded.weight, x))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_weight, grad_weight_expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_x, grad_x_expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, trunk_pairs, head_pairs", [
    ("resnet18", 1 + 2 * (2 + 2 + 2) + 2, 2 * 2 + 1),  # stem; two convs per BasicBlock; downsamples
    ("resnet50", 1 + 3 * (3 + 4 + 6) + 3, 3 * 3 + 1),  # three convs per Bottleneck
])
def test_every_frozen_batchnorm_is_folded_and_the_backbone_computes_the_same(name, trunk_pairs, head_pairs):
    reference = build_backbone(name, fold_frozen_bn=False)
    _randomise_frozen_batchnorm(reference.trunk)
    _randomise_frozen_batchnorm(reference.box_head)
    trunk, head = copy.deepcopy(reference.trunk), copy.deepcopy(reference.box_head)
    assert fold_frozen_batchnorm(trunk) == trunk_pairs and fold_frozen_batchnorm(head) == head_pairs
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in [*trunk.modules(), *head.modules()])
    # The convolutions keep their state-dict keys (torchvision's layout); only the BatchNorm buffers move.
    conv_keys = {k for k in reference.trunk.state_dict() if k.endswith("weight") and ".bn" not in k
                 and not k.startswith("0.1.") and not k.endswith("downsample.1.weight")}
    assert conv_keys <= set(trunk.state_dict())

    reference.trunk.eval(), trunk.eval()
    x = torch.randn(1, 3, 64, 96)
    features, expected = trunk(x), reference.trunk(x)
    # float32 rounding differs (the product is taken in another order) and accumulates over 16 blocks: compare
    # against the features' own scale. A fold that dropped the mean or the variance would be off by O(1).
    torch.testing.assert_close(features, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    rois = torch.randn(3, features.shape[1], 7, 7)
    expected = reference.box_head(rois)
    torch.testing.assert_close(head(rois), expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())


def test_frozen_parts_stay_frozen_after_folding():
    backbone = build_backbone("resnet18")  # freeze_at 2: stem and layer1
    stem_conv, layer2_conv = backbone.trunk[0][0], backbone.trunk[2][0].conv1
    assert isinstance(stem_conv, FrozenBNConv2d) and not stem_conv.weight.requires_grad
    assert isinstance(layer2_conv, FrozenBNConv2d) and layer2_conv.weight.requires_grad
    assert not any(b.requires_grad for b in backbone.trunk.buffers())


def test_trainable_batchnorm_is_not_folded():
    backbone = build_backbone("resnet18", norm="bn")
    assert not any(isinstance(m, FrozenBNConv2d) for m in backbone.trunk.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.trunk.modules())
