"""``model.weights=PATH``: start from a whole trained detector -- one of our checkpoints, or torchvision's
``fasterrcnn_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn_v2`` state dicts (what torchvision downloads, or
``torch.save(model.state_dict(), PATH)``).

torchvision's names map onto ours by :data:`TORCHVISION_KEY_MAP` (prefix renames); the one change of content is
the box regression, which torchvision predicts for the background class too: its first 4 outputs are dropped.
When the file's classes differ from the model's (COCO's 91 ids against a dataset's K), the class-specific
predictor keeps its fresh initialisation and everything else loads; any other difference is an error.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Tuple

from torch import Tensor, nn

from frcnn.modeling.backbones import WeightsMismatchError, fold_frozen_batchnorm
from frcnn.state_dicts import read_state_dict, state_dict_mismatch, without_untracked_batch_counts

log = logging.getLogger(__name__)

# torchvision's prefix -> ours, first match wins.
TORCHVISION_KEY_MAP = (
    ("backbone.body.", "trunk.body."),
    ("backbone.fpn.", "trunk.fpn."),
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    ("rpn.head.conv.1.0.", "rpn.head.extra_convs.0."),
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_heads.box_head."),
    ("roi_heads.box_predictor.", "roi_heads.predictor."),
)
PREDICTOR = "roi_heads.predictor."


def load_detector_weights(model: nn.Module, path: str, *, fold_frozen_bn: bool = True) -> None:
    """Load ``path`` into ``model`` (built with frozen BatchNorm not yet folded), then fold it if asked."""
    state = read_state_dict(path, "model.weights")
    if is_torchvision_detector(state):
        load_matching(model, from_torchvision(state), path)
        if fold_frozen_bn:
            fold_frozen_batchnorm(model)
        return
    if isinstance(state.get("model"), Mapping):  # one of our checkpoints: its weights, saved from a folded model
        state = state["model"]
    if not any(key.startswith(("trunk.", "rpn.", "roi_heads.")) for key in state):
        raise WeightsMismatchError(f"model.weights: {path} is neither an frcnn checkpoint nor a torchvision Faster "
                                   f"R-CNN state dict (its first keys: {', '.join(list(state)[:3])})")
    if fold_frozen_bn:
        fold_frozen_batchnorm(model)
    load_matching(model, state, path)


def is_torchvision_detector(state: Mapping) -> bool:
    return any(isinstance(key, str) and key.startswith("backbone.body.") for key in state)


def from_torchvision(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """torchvision's detection state dict under our names (unmapped keys stay, to be reported as unexpected)."""
    mapped = {}
    for key, value in state.items():
        new_key = next((ours + key[len(theirs):] for theirs, ours in TORCHVISION_KEY_MAP if key.startswith(theirs)),
                       key)
        if new_key.startswith(PREDICTOR + "bbox_pred."):
            value = value[4:]  # the background class's box
        mapped[new_key] = value
    return mapped


def load_matching(model: nn.Module, state: Mapping[str, Tensor], path: str) -> None:
    """Load ``state``; a predictor for another number of classes is left as initialised (said once)."""
    expected = model.state_dict()
    state = without_untracked_batch_counts(state, expected)
    state, skipped = _without_other_classes(state, expected)
    mismatch = state_dict_mismatch(expected, state, expected_name="model")
    if mismatch:
        raise WeightsMismatchError(f"model.weights: {path} does not fit this model (another backbone, "
                                   f"model.fpn or model.rpn setting?): {mismatch}")
    model.load_state_dict(state, strict=False)
    if skipped:
        log.info("model.weights: %s predicts %d classes, this model %d: the class predictor (%s) starts fresh, "
                 "everything else is loaded", path, skipped[0] - 1, skipped[1] - 1, PREDICTOR.rstrip("."))


def _without_other_classes(state: Dict[str, Tensor], expected: Mapping[str, Tensor]
                           ) -> Tuple[Dict[str, Tensor], Tuple[int, ...]]:
    """``state`` without the predictor's tensors when they are for another number of classes (then also the
    file's and the model's class counts, background included)."""
    key = PREDICTOR + "cls_score.weight"
    if key not in state or key not in expected or state[key].shape == expected[key].shape:
        return state, ()
    kept = {k: v for k, v in state.items() if not k.startswith(PREDICTOR)}
    kept.update({k: v for k, v in expected.items() if k.startswith(PREDICTOR)})  # the fresh ones count as given
    return kept, (state[key].shape[0], expected[key].shape[0])
