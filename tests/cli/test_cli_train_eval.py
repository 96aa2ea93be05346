"""frcnn-train, frcnn-eval and frcnn-predict through the installed console scripts (tiny shapes data)."""
from __future__ import annotations

import json

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import output_of, run_command

LOSS_TAGS = {"loss/rpn_cls", "loss/rpn_box", "loss/rcnn_cls", "loss/rcnn_box"}


def test_train_writes_the_run_directory_of_the_public_interface(trained_run):
    run_dir, _ = trained_run
    assert (run_dir / ".hydra/config.yaml").is_file() and (run_dir / ".hydra/overrides.yaml").is_file()
    state = torch.load(run_dir / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "config"} <= set(state)
    assert state["config"]["dataset"]["classes"] == ["circle", "square", "triangle"]
    assert state["config"]["backbone"]["name"] == "resnet18"
    assert (run_dir / "checkpoints/best.pt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0 and set(metrics["per_class"]) == {"circle", "square", "triangle"}
    log = (run_dir / "train.log").read_text()
    assert "iter 2/2" in log and "evaluation at iteration 2" in log


def test_tensorboard_holds_the_losses_lr_speed_metric_and_images(trained_run):
    run_dir, _ = trained_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert LOSS_TAGS | {"loss/total", "lr", "speed/images_per_s", "metrics/mAP"} <= scalars
    assert [e.step for e in events.Scalars("loss/rpn_cls")] == [1, 2]
    assert [e.step for e in events.Scalars("metrics/mAP")] == [2]
    assert events.Tags()["images"] == ["predictions/0"]


def test_eval_rebuilds_the_model_from_the_checkpoint(trained_run, tmp_path):
    run_dir, _ = trained_run
    eval_dir = tmp_path / "eval"
    proc = run_command("frcnn-eval", f"checkpoint={run_dir / 'checkpoints/last.pt'}", f"hydra.run.dir={eval_dir}",
                   "loader.num_workers=0", "model.roi.score_thresh=0.0", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert "circle" in proc.stdout and "mAP" in proc.stdout  # the per-class table
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0 and set(metrics["per_class"]) == {"circle", "square", "triangle"}
    detections = json.loads((eval_dir / "detections.json").read_text())
    assert detections, "score_thresh=0.0 keeps every detection"
    for entry in detections:
        assert set(entry) == {"image_id", "category_id", "category", "bbox", "score"}
        assert isinstance(entry["image_id"], str) and len(entry["bbox"]) == 4
        assert entry["category"] == ["circle", "square", "triangle"][entry["category_id"] - 1]


def test_predict_draws_and_writes_detections(trained_run, cli_shapes_root, tmp_path):
    run_dir, _ = trained_run
    image = sorted((cli_shapes_root / "JPEGImages").glob("*.jpg"))[0]
    out = tmp_path / "pred"
    proc = run_command("frcnn-predict", f"checkpoint={run_dir / 'checkpoints/last.pt'}", f"input={image}",
                   f"output={out}", "score_thresh=0.0", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert (out / image.name).is_file()
    entries = json.loads((out / "detections.json").read_text())
    assert entries and all(e["image_id"] == image.name for e in entries)
    assert all(set(e) == {"image_id", "category_id", "category", "bbox", "score"} for e in entries)


def test_eval_refuses_a_checkpoint_that_would_run_code(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    script = (f"import pathlib, torch\n"
              f"class X:\n"
              f"    def __reduce__(self):\n"
              f"        return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))\n"
              f"torch.save({{'model': {{}}, 'config': X()}}, {str(evil)!r})\n")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", script], check=True)
    proc = run_command("frcnn-eval", f"checkpoint={evil}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "refusing to load" in proc.stdout + proc.stderr and "evil.pt" in proc.stdout + proc.stderr
    assert not marker.exists()


def test_a_misspelled_key_fails_naming_it(tmp_path):
    proc = run_command("frcnn-train", "train.lrr=0.1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode != 0 and "train.lrr" in proc.stdout + proc.stderr
