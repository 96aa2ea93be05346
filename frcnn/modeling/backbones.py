"""Backbones split into a shared trunk (stride 16) and a per-ROI box head.

- ``vgg16``: trunk = ``features`` up to conv5_3 + ReLU (the last max-pool dropped); head = fc6, fc7 of the VGG
  classifier (so ImageNet weights load unchanged); ROI features must be 7 x 7 x 512.
- ``resnet18..152`` in the C4 layout: trunk = stem, layer1..layer3; head = layer4 + global average pooling.
- ``resnet18_fpn..resnet152_fpn``: trunk = the whole ResNet with a feature pyramid (:mod:`frcnn.modeling.fpn`),
  returning a list of five levels; the box head is built from ``model.fpn`` (``box_head`` is None here).
  With ``norm="frozen_bn"`` each convolution and the frozen BatchNorm after it are folded into one
  ``FrozenBNConv2d`` (see there): the same function, one pass over the activations fewer.

Shapes: trunk ``[N, 3, H, W] -> [N, C, H / 16, W / 16]`` (FPN: a list, one per level); head
``[R, C, p, p] -> [R, D]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torchvision
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.errors import ConfigError
from frcnn.modeling.fpn import LEVEL_STRIDES, FPNTrunk
from frcnn.state_dicts import read_state_dict, state_dict_mismatch, without_untracked_batch_counts

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FPN_BACKBONES = tuple(f"{name}_fpn" for name in RESNETS)
BACKBONES = ("vgg16",) + RESNETS + FPN_BACKBONES
# Default number of leading trunk parts frozen: VGG16's conv1 + conv2 blocks (10 modules of `features`, as in the
# paper and jwyang), a ResNet's stem + layer1 (torchvision's FPN detectors: trainable_backbone_layers=3, the same).
DEFAULT_FREEZE_AT = {"vgg16": 10, **{name: 2 for name in RESNETS + FPN_BACKBONES}}
NORMS = ("frozen_bn", "bn", "sync_bn", "gn")  # sync_bn: bn, synchronised over the ranks of a torchrun job


@dataclass
class Backbone:
    trunk: nn.Module
    trunk_channels: int
    box_head: Optional[nn.Module]  # None for FPN trunks: frcnn.modeling.build makes it from model.fpn
    representation_size: int
    stride: int = 16
    level_strides: Tuple[int, ...] = ()  # FPN: the stride of each level the trunk returns


def is_fpn(name: str) -> bool:
    return name.endswith("_fpn")


class WeightsMismatchError(ConfigError):
    """A weights file that does not fit the chosen backbone."""


def build_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: Optional[str] = None,
    norm: str = "frozen_bn",
    freeze_at: int = -1,
    width: float = 1.0,
    fold_frozen_bn: bool = True,
    fpn_channels: int = 256,
    fpn_norm: str = "none",
) -> Backbone:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    if norm not in NORMS:
        raise ConfigError(f"unknown backbone.norm {norm!r}; choose one of: {', '.join(NORMS)}")
    if width != 1.0 and (name == "vgg16" or pretrained or weights):
        raise ConfigError("backbone.width != 1 needs a ResNet trained from scratch (no pretrained weights)")
    classifier = name[: -len("_fpn")] if is_fpn(name) else name  # the ImageNet model the trunk comes from
    model = _torchvision_model(classifier, norm, width)
    if weights:
        load_torchvision_weights(model, weights, classifier)
    elif pretrained:
        _load_imagenet_weights(model, classifier)
    freeze_at = DEFAULT_FREEZE_AT[name] if freeze_at < 0 else freeze_at
    if is_fpn(name):
        backbone = _resnet_fpn(model, freeze_at, fpn_channels, fpn_norm)
    else:
        backbone = _split_vgg16(model, freeze_at) if name == "vgg16" else _split_resnet(model, freeze_at)
    if fold_frozen_bn:
        for part in (backbone.trunk, backbone.box_head):
            if part is not None:
                fold_frozen_batchnorm(part)
    return backbone


def _torchvision_model(name: str, norm: str, width: float = 1.0) -> nn.Module:
    if name == "vgg16":
        return torchvision.models.vgg16(weights=None)
    norm_layer = {
        "frozen_bn": FrozenBatchNorm2d,
        "bn": nn.BatchNorm2d,
        "sync_bn": nn.BatchNorm2d,  # made SyncBatchNorm when a job has several ranks (frcnn.engine.launch)
        "gn": lambda channels: nn.GroupNorm(min(32, channels // 4), channels),
    }[norm]
    if width != 1.0:
        return NarrowResNet(*_RESNET_BLOCKS[name], width=width, norm_layer=norm_layer)
    return getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)


_RESNET_BLOCKS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


class NarrowResNet(ResNet):
    """torchvision's ResNet with every stage's width scaled: a cheap trunk for training from scratch on a CPU."""

    def __init__(self, block, layers, *, width: float, norm_layer):
        super().__init__(block, layers, norm_layer=norm_layer)
        planes = [max(8, int(round(p * width))) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(planes[0])
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.fc = nn.Linear(planes[3] * block.expansion, 1000)
        for module in self.modules():  # torchvision's initialisation, for the rebuilt layers
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def load_torchvision_weights(model: nn.Module, path: str, name: str) -> None:
    """Load a state dict in torchvision's layout for ``name``; errors name the file and the keys that do not fit."""
    try:
        state = read_state_dict(path, "backbone.weights")
    except ConfigError as error:
        raise WeightsMismatchError(str(error)) from None
    expected = model.state_dict()
    given = without_untracked_batch_counts(state, expected)
    mismatch = state_dict_mismatch(expected, given, expected_name="expected")
    if mismatch:
        raise WeightsMismatchError(f"backbone.weights: {path} does not fit torchvision's {name}: {mismatch}")
    model.load_state_dict(given, strict=False)


def _load_imagenet_weights(model: nn.Module, name: str) -> None:
    weights_enum = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    try:
        state = weights_enum.get_state_dict(progress=False)
    except Exception as error:  # no network, proxy, corrupt cache
        raise ConfigError(
            f"could not fetch torchvision's ImageNet weights for {name} ({error}); download them where the "
            f"network works, or set backbone.weights=PATH to a local state-dict file"
        ) from None
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, strict=False)


def _freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def _split_vgg16(model: nn.Module, freeze_at: int) -> Backbone:
    trunk = nn.Sequential(*list(model.features)[:30])  # conv1_1 .. relu5_3; pool5 replaced by ROI pooling
    for layer in list(trunk)[:freeze_at]:
        _freeze(layer)
    head = nn.Sequential(nn.Flatten(), *list(model.classifier)[:-1])  # fc6, relu, dropout, fc7, relu, dropout
    return Backbone(trunk=trunk, trunk_channels=512, box_head=head, representation_size=4096)


class ResNetC4Head(nn.Module):
    """layer4 on each ROI, then global average pooling: ``[R, C, p, p] -> [R, D]``."""

    def __init__(self, layer4: nn.Module):
        super().__init__()
        self.layer4 = layer4

    def forward(self, x):
        return self.layer4(x).mean(dim=(2, 3))


def _split_resnet(model: nn.Module, freeze_at: int) -> Backbone:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    parts = [stem, model.layer1, model.layer2, model.layer3]
    for part in parts[:freeze_at]:
        _freeze(part)
    trunk = nn.Sequential(*parts)
    trunk_channels = _out_channels(model.layer3)
    head = ResNetC4Head(model.layer4)
    return Backbone(trunk, trunk_channels, head, representation_size=_out_channels(model.layer4))


def _resnet_fpn(model: nn.Module, freeze_at: int, channels: int, norm: str) -> Backbone:
    parts = [[model.conv1, model.bn1], model.layer1, model.layer2, model.layer3, model.layer4]
    for part in parts[:freeze_at]:
        for module in part if isinstance(part, list) else [part]:
            _freeze(module)
    in_channels = [_out_channels(layer) for layer in parts[1:]]
    trunk = FPNTrunk(model, in_channels=in_channels, channels=channels, norm=norm)
    return Backbone(trunk, channels, box_head=None, representation_size=0, level_strides=LEVEL_STRIDES)


def _out_channels(layer: nn.Sequential) -> int:
    last_block = layer[-1]  # Bottleneck ends in conv3, BasicBlock in conv2
    return (getattr(last_block, "conv3", None) or last_block.conv2).out_channels


class FrozenBNConv2d(nn.Module):
    """A bias-free convolution followed by a frozen BatchNorm, computed as one convolution.

    ``bn(conv(x, W)) = conv(x, W * scale) + shift`` per output channel, with ``scale = gamma / sqrt(var + eps)``
    and ``shift = beta - mean * scale``. Folding the scale into the (small) weight instead of applying it to the
    (large) activations saves an elementwise pass forward and backward, and under autocast the float32 round trip
    of the BatchNorm's output (about half the ResNet trunk's time under bf16 on a CPU: README, Speed).
    ``weight`` is the convolution's own Parameter (same name, same ``requires_grad``), so the optimizer,
    freezing and gradients see the same parameter as before; the gradient flows through the product exactly.
    """

    def __init__(self, conv: nn.Conv2d, bn: FrozenBatchNorm2d):
        super().__init__()
        if conv.bias is not None or conv.padding_mode != "zeros":
            raise ValueError("FrozenBNConv2d folds bias-free, zero-padded convolutions only")
        self.weight = conv.weight
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", (bn.bias - bn.running_mean * scale).detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.scale.view(-1, 1, 1, 1)
        return F.conv2d(x, weight, self.shift, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={tuple(self.weight.shape[-2:])}, "
                f"stride={self.stride}, padding={self.padding}")


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Replace every (Conv2d, FrozenBatchNorm2d) pair in ``module`` by a FrozenBNConv2d, in place; returns how many.

    Pairs are siblings named ``convK``/``bnK`` (torchvision's ResNet blocks) or neighbours in an ``nn.Sequential``
    (the stem, ``downsample``). The BatchNorm's slot becomes an ``nn.Identity`` so that the blocks' own forward
    and the Sequential indices (hence the state-dict keys of the convolutions) stay as they were.
    """
    folded = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        pairs = [(f"conv{n[2:]}", n) for n in children if n.startswith("bn")]
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs += list(zip(names, names[1:]))
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if type(conv) is nn.Conv2d and isinstance(bn, FrozenBatchNorm2d) and conv.bias is None:
                setattr(parent, conv_name, FrozenBNConv2d(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                children[conv_name], children[bn_name] = None, None
                folded += 1
    return folded
