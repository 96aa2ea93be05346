"""frcnn-export and the exported model in use: a tiny ResNet-18-C4 and a tiny ResNet-18-FPN model, trained a few
iterations, exported to ONNX (the command) and to a torch.export program, give the detections PyTorch eval gives --
on 3 images of different sizes, in batches of 1 and 2 -- in onnxruntime (directly and through frcnn-predict
backend=onnxruntime) and after the program is reloaded. An image with no detections gives empty outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import compose_config, output_of, run_command, tiny_overrides

pytest.importorskip("onnxruntime", reason="the export extra (pip install 'frcnn[export]') is not installed")
REPO = Path(__file__).resolve().parents[2]
BOX_TOL, SCORE_TOL = 1e-2, 1e-3  # pixels, score units (the acceptance figures)


FAMILIES = {"c4": [], "fpn": ["backbone=resnet18_fpn", "model.anchor.sizes=[16,32,64,128,256]",
                             "model.fpn.channels=32", "model.fpn.representation_size=64"]}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request, tmp_path_factory):
    """(checkpoint, its model in eval mode, 3 decoded images of different sizes), for a C4 and an FPN model."""
    from frcnn.data.decode import read_image
    from frcnn.engine.checkpoint import load_checkpoint
    from frcnn.engine.launch import train
    from frcnn.engine.restore import checkpoint_config, load_trained_model

    work = tmp_path_factory.mktemp("export")
    # A model this young scores every class low: a low threshold (stored in the checkpoint, so the export has it too)
    # keeps dozens of detections per image to compare.
    cfg = compose_config([*tiny_overrides(work / "shapes"), "train.max_iters=3", "train.vis_images=0",
                          "model.roi.score_thresh=0.001", *FAMILIES[request.param]])
    train(cfg, work / "run")
    ckpt = work / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    model = load_trained_model(checkpoint_config(state, ckpt), state, ckpt, torch.device("cpu"))
    images, sizes = [], set()
    for path in sorted((work / "shapes" / "JPEGImages").glob("*.jpg")):
        image = read_image(path)
        if tuple(image.shape) not in sizes and len(images) < 3:
            sizes.add(tuple(image.shape))
            images.append(image)
    assert len(images) == 3, sizes
    return ckpt, model, images


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    """model.onnx, written by the frcnn-export command."""
    ckpt = trained[0]
    work = tmp_path_factory.mktemp("onnx")
    proc = run_command("frcnn-export", f"checkpoint={ckpt}", "format=onnx", f"output={work / 'model.onnx'}",
                       f"hydra.run.dir={work / 'run'}", cwd=work)
    assert proc.returncode == 0, output_of(proc)
    assert (work / "model.onnx").is_file() and (work / "run" / "export.log").is_file()
    return work / "model.onnx"


def batches(images):
    return [[images[0]], [images[1]], [images[2]], images[:2], images[1:]]


def assert_same_detections(expected, actual, figures=None):
    """Same detections after sorting: each expected one matched to an actual one of its label (the closest box)."""
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert got["boxes"].shape == want["boxes"].shape and len(want["scores"]) > 0
        assert sorted(got["labels"].tolist()) == sorted(want["labels"].tolist())
        unmatched = list(range(len(got["scores"])))
        for box, score, label in zip(want["boxes"], want["scores"], want["labels"]):
            same_label = [j for j in unmatched if got["labels"][j] == label]
            j = min(same_label, key=lambda j: float((got["boxes"][j] - box).abs().max()))
            unmatched.remove(j)
            box_diff, score_diff = float((got["boxes"][j] - box).abs().max()), float((got["scores"][j] - score).abs())
            assert box_diff <= BOX_TOL and score_diff <= SCORE_TOL, (box_diff, score_diff)
            if figures is not None:
                figures["box"], figures["score"] = max(figures["box"], box_diff), max(figures["score"], score_diff)
                figures["detections"] += 1


def test_onnx_in_onnxruntime_gives_the_pytorch_detections(trained, onnx_file):
    import onnx

    from frcnn.export.runtime import load_onnx_detector

    _, model, images = trained
    detector = load_onnx_detector(onnx_file, torch.device("cpu"))
    figures = {"box": 0.0, "score": 0.0, "detections": 0}
    for batch in batches(images):
        with torch.no_grad():
            assert_same_detections(model(batch), detector(batch), figures)
    print(f"\nONNX vs PyTorch eval: {figures['detections']} detections, max box difference {figures['box']:.2e} px, "
          f"max score difference {figures['score']:.2e}")
    proto = onnx.load(str(onnx_file))
    assert proto.opset_import[0].version == 18
    ops = {node.op_type for node in proto.graph.node}
    assert {"RoiAlign", "NonMaxSuppression"} <= ops  # torchvision's roi_align and our NMS as standard operators
    assert all(opset.domain in ("", "ai.onnx") for opset in proto.opset_import)
    batch_dim, _, height, width = (d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim)
    assert isinstance(batch_dim, str) and isinstance(height, str) and isinstance(width, str)  # dynamic


# Reloading the FPN model's program takes torch about 20 s (the export another 20): with the slow tests.
@pytest.mark.parametrize("trained", ["c4", pytest.param("fpn", marks=pytest.mark.slow)], indirect=True)
def test_torch_export_program_reloads_and_gives_the_pytorch_detections(trained, tmp_path):
    from frcnn.export.graph import prepare_inputs, split_outputs
    from frcnn.export.runtime import load_program
    from frcnn.export.writer import export_checkpoint

    ckpt, model, images = trained
    cfg = compose_config([f"checkpoint={ckpt}", "format=torch_export", f"output={tmp_path / 'model.pt2'}"], "export")
    program, config = load_program(export_checkpoint(cfg))
    assert list(config.dataset.classes) == ["circle", "square", "triangle"]
    for batch in (images[:2], images[2:]):  # the 3 sizes, batches of 2 and 1 (a program runs slowly on a CPU)
        boxes, scores, labels, valid, count = program(*prepare_inputs(batch, model.preprocessor))
        assert torch.equal(valid, torch.arange(valid.shape[1])[None, :] < count[:, None])
        with torch.no_grad():
            assert_same_detections(model(batch), split_outputs(boxes, scores, labels, count))


@pytest.mark.parametrize("trained", ["c4"], indirect=True)  # not a family's matter: one model is enough
def test_images_with_no_detections_give_empty_outputs(trained, tmp_path):
    from frcnn.export.graph import prepare_inputs
    from frcnn.export.runtime import load_onnx_detector
    from frcnn.export.writer import export_checkpoint

    ckpt, model, images = trained
    cfg = compose_config([f"checkpoint={ckpt}", f"output={tmp_path / 'none.onnx'}", "model.roi.score_thresh=1.0"],
                         "export")
    detector = load_onnx_detector(export_checkpoint(cfg), torch.device("cpu"))
    for result in detector(images[:2]):
        assert result["boxes"].shape == (0, 4) and result["scores"].shape == (0,) and result["labels"].shape == (0,)
    inputs = prepare_inputs(images[:2], model.preprocessor)
    boxes, scores, labels, valid, count = detector.session.run(None, {
        name: tensor.numpy() for name, tensor in zip(("images", "image_sizes", "original_sizes"), inputs)})
    assert count.tolist() == [0, 0] and not valid.any() and not boxes.any() and not scores.any() and not labels.any()


@pytest.mark.parametrize("trained", ["c4"], indirect=True)  # not a family's matter: one model is enough
def test_frcnn_predict_runs_the_onnx_model(trained, onnx_file, tmp_path):
    from PIL import Image

    ckpt, _, images = trained
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    outputs = {}
    for name, args in (("onnx", ["backend=onnxruntime", f"exported={onnx_file}"]), ("torch", [f"checkpoint={ckpt}"])):
        out = tmp_path / name
        proc = run_command("frcnn-predict", *args, f"input={folder}", f"output={out}", "score_thresh=0.0",
                           "batch_size=2", cwd=tmp_path)
        assert proc.returncode == 0, output_of(proc)
        outputs[name] = json.loads((out / "detections.json").read_text())
        assert {f"{i}.png" for i in range(3)} <= {p.name for p in out.iterdir()}
    assert "(onnxruntime)" in (tmp_path / "onnx" / "predict.log").read_text()
    key = lambda e: (e["image_id"], e["category_id"], round(e["score"], 2))  # noqa: E731
    onnx_entries, torch_entries = sorted(outputs["onnx"], key=key), sorted(outputs["torch"], key=key)
    assert len(onnx_entries) == len(torch_entries) > 0
    assert {(e["image_id"], e["category_id"]) for e in onnx_entries} == \
        {(e["image_id"], e["category_id"]) for e in torch_entries}
    assert abs(sum(e["score"] for e in onnx_entries) - sum(e["score"] for e in torch_entries)) < SCORE_TOL * len(
        onnx_entries)
