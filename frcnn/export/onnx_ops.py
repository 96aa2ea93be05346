"""ONNX translations the exporter's own library gets wrong, passed as ``custom_translation_table``.

``aten::repeat_interleave.self_int`` (onnxscript 0.7's torch_lib): with a symbolic repeat count -- the ROI head's
``arange(N).repeat_interleave(proposals per image)``, where that count is ``min(post_nms_top_n, anchors)``, a
function of the image size -- it builds the tile shape ``[repeats, 1]`` instead of ``[1, repeats]``, so the graph
fails in onnxruntime ("invalid expand shape") for any batch of more than one image. This is the same computation
with the tile axis right: unsqueeze after ``dim``, expand that axis to ``repeats``, merge it into ``dim``.
"""
from __future__ import annotations

from typing import Optional

_INT64_MAX = 2**63 - 1


def repeat_interleave_self_int(self, repeats, dim: Optional[int] = None, output_size=None):
    import onnx_ir as ir
    from onnxscript import opset18 as op

    def ints(values):
        return op.Constant(value=ir.tensor(list(values), dtype=ir.DataType.INT64))

    if dim is None:
        self, dim = op.Reshape(self, ints([-1])), 0
        rank = 1
    else:
        rank = len(self.shape)
    dim = dim % rank
    unsqueezed = op.Unsqueeze(self, ints([dim + 1]))
    count = ints([repeats]) if isinstance(repeats, int) else op.Reshape(repeats, ints([-1]))
    tiles = op.Concat(ints([1] * (dim + 1)), count, ints([1] * (rank - dim - 1)), axis=0)
    tiled = op.Expand(unsqueezed, tiles)
    merged = op.Concat(op.Shape(self, start=0, end=dim), ints([-1]), op.Shape(self, start=dim + 1), axis=0)
    return op.Reshape(tiled, merged)


def nms_keep(boxes, scores, iou_thresh: float, count: int):
    """``frcnn::nms_keep`` (greedy NMS keep mask ``[N, k]`` of score-sorted ``boxes [N, k, 4]``) -> ONNX
    ``NonMaxSuppression`` (one batch entry per image, one class), its selected (image, box) pairs scattered into a
    zero mask. Boxes at score -inf (padding) are never selected: the score threshold is the lowest float."""
    import onnx_ir as ir
    from onnxscript import opset18 as op

    max_keeps = op.Constant(value=ir.tensor([count if count > 0 else _INT64_MAX], dtype=ir.DataType.INT64))
    iou = op.Constant(value=ir.tensor([iou_thresh], dtype=ir.DataType.FLOAT))
    lowest = op.Constant(value=ir.tensor([-3.4028234663852886e38], dtype=ir.DataType.FLOAT))
    selected = op.NonMaxSuppression(boxes, op.Unsqueeze(scores, op.Constant(value_ints=[1])), max_keeps, iou, lowest)
    index = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)  # [M, 2]: (image, box)
    zeros = op.Expand(op.Constant(value_float=0.0), op.Shape(scores))
    ones = op.Expand(op.Constant(value_float=1.0), op.Shape(selected, start=0, end=1))
    keep = op.Cast(op.ScatterND(zeros, index, ones), to=ir.DataType.BOOL)
    return op.And(keep, op.Not(op.IsInf(scores)))


def translation_table() -> dict:
    import torch

    import frcnn.modeling.nms  # noqa: F401  (registers frcnn::nms_keep)

    return {torch.ops.frcnn.nms_keep.default: nms_keep,
            torch.ops.aten.repeat_interleave.self_int: repeat_interleave_self_int,
            torch.ops.torchvision.roi_pool.default: roi_pool}


def roi_pool(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
    """``torchvision::roi_pool`` -> ``MaxRoiPool`` (torch_lib's translation has another signature than the op's and
    fails). The op's second output (argmax, for its backward) has no ONNX counterpart and no use at inference."""
    from onnxscript import opset18 as op

    pooled = op.MaxRoiPool(input, rois, pooled_shape=(pooled_height, pooled_width), spatial_scale=spatial_scale)
    return pooled, op.Cast(pooled, to=7)
