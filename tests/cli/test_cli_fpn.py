"""FPN models through the commands: train, evaluate and predict with a resnet18_fpn, and fine-tune from a
torchvision detection state dict (model.weights) as experiment=finetune_coco_fpn does."""
from __future__ import annotations

import json

import torch

from helpers import output_of, run_command, tiny_overrides

FPN = ["backbone=resnet18_fpn", "model.anchor.sizes=[16,32,64,128,256]", "model.fpn.channels=32",
       "model.fpn.representation_size=64"]


def test_an_fpn_model_trains_evaluates_and_predicts(cli_shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_command("frcnn-train", *tiny_overrides(cli_shapes_root), *FPN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    checkpoint = run_dir / "checkpoints/last.pt"
    assert torch.load(checkpoint, weights_only=True)["config"]["backbone"]["name"] == "resnet18_fpn"
    proc = run_command("frcnn-eval", f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path / 'eval'}",
                       "loader.num_workers=0", "model.roi.score_thresh=0.0", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert 0.0 <= json.loads((tmp_path / "eval/metrics.json").read_text())["mAP"] <= 1.0
    image = sorted((cli_shapes_root / "JPEGImages").glob("*.jpg"))[0]
    proc = run_command("frcnn-predict", f"checkpoint={checkpoint}", f"input={image}", f"output={tmp_path / 'pred'}",
                       "score_thresh=0.0", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert json.loads((tmp_path / "pred/detections.json").read_text())


def test_fine_tuning_starts_from_a_torchvision_detector(cli_shapes_root, tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    coco = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)  # COCO's 91 outputs, as downloaded
    torch.save(coco.state_dict(), tmp_path / "coco.pt")
    run_dir = tmp_path / "run"
    proc = run_command("frcnn-train", *tiny_overrides(cli_shapes_root), "backbone=resnet50_fpn",
                       "model.weights=coco.pt", "model.input.min_size=[128]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    log = (run_dir / "train.log").read_text()
    assert "model.weights: coco.pt predicts 90 classes, this model 3: the class predictor" in log
    state = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["model"]
    # Frozen layers (the stem) come out of training as torchvision's file had them.
    ours = state["trunk.body.conv1.weight"] * state["trunk.body.conv1.scale"].view(-1, 1, 1, 1)
    theirs = coco.backbone.body.conv1.weight * _frozen_scale(coco.backbone.body.bn1).view(-1, 1, 1, 1)
    torch.testing.assert_close(ours, theirs)


def _frozen_scale(bn) -> torch.Tensor:
    return bn.weight * (bn.running_var + bn.eps).rsqrt()
