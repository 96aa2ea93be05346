"""The detector's core (trunk, RPN, ROI head, losses or detections) is one static graph: it traces under
``torch.compile(fullgraph=True)`` without a graph break, in training and in inference. A graph break is where a
host read or a data-dependent shape would sit, so this is the CPU's proof of a step that never waits for a GPU.
The static path (what CUDA and compiled code run) detects exactly what the eager CPU path detects."""
from __future__ import annotations

import pytest
import torch

import frcnn
import frcnn.modeling.nms
import frcnn.modeling.pooling
import frcnn.modeling.roi_heads

BOXES = {"boxes": torch.tensor([[10.0, 20, 70, 90], [80, 30, 150, 110]]), "labels": torch.tensor([1, 2])}
ONE_BOX = {"boxes": torch.tensor([[5.0, 5, 60, 140]]), "labels": torch.tensor([3])}


@pytest.fixture(params=["resnet18", "resnet18_fpn"])
def model(request, small_config):
    fpn = ["model.anchor.sizes=[16,32,64,128,256]", "model.fpn.channels=32", "model.fpn.representation_size=64"]
    return frcnn.build_model(small_config(f"backbone={request.param}", "backbone.pretrained=false",
                                          "dataset.classes=[a,b,c]", *(fpn if "fpn" in request.param else [])))


def core_inputs(model, targets=None):
    images = [torch.rand(3, 120, 160), torch.rand(3, 130, 110)]
    batch, gt = model.preprocessor(images, targets)
    gt_tensors = (gt.boxes, gt.labels, gt.valid, gt.keys) if gt is not None else ()
    return (batch.tensor, batch.image_sizes, batch.scales, batch.original_sizes, *gt_tensors)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_core_is_one_graph(model, mode):
    model.train(mode == "train")
    keyed = [{**BOXES, "sample_key": torch.tensor(11)}, {**ONE_BOX, "sample_key": torch.tensor(12)}]  # the loader's
    inputs = core_inputs(model, keyed if mode == "train" else None)
    explanation = torch._dynamo.explain(model.core)(*inputs)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_a_compiled_training_step_gives_losses_and_gradients(model):
    model.train()
    model.compile_core(fullgraph=True, backend="aot_eager")
    losses = model([torch.rand(3, 120, 160), torch.rand(3, 90, 130)], [BOXES, ONE_BOX])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())
    sum(losses.values()).backward()
    trained = [p for p in model.trunk.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)  # gradients reach the trunk
    assert trained[0].grad.abs().sum() > 0


def test_the_static_path_detects_what_the_eager_cpu_path_detects(model, monkeypatch):
    model.eval()
    images = [torch.rand(3, 120, 160), torch.rand(3, 130, 110), torch.rand(3, 64, 64)]
    with torch.no_grad():
        eager = model(images)
        # As on CUDA: fixed-point NMS, no host read, FPN levels pooled stacked in one call.
        for module in (frcnn.modeling.nms, frcnn.modeling.roi_heads, frcnn.modeling.pooling):
            monkeypatch.setattr(module, "host_reads_are_free", lambda tensor: False)
        static = model(images)
    assert sum(len(d["boxes"]) for d in eager) > 20  # an untrained head scores every class above 0.05
    for e, s in zip(eager, static):
        assert len(e["boxes"]) <= model.roi_heads.detections_per_img
        torch.testing.assert_close(s["boxes"], e["boxes"])
        torch.testing.assert_close(s["scores"], e["scores"])
        assert torch.equal(s["labels"], e["labels"])
