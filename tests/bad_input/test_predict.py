"""Bad input to frcnn-predict: an image file that cannot be decoded (a truncated JPEG) is skipped with one warning
naming it; the other images' drawings and detections.json are still written, and the command then ends with a
one-line error saying how many were skipped (exit status 1)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import compose_config, pythonpath, tiny_overrides

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """last.pt of a 1-iteration training run of the tiny config (in this process: a few seconds)."""
    from frcnn.engine.launch import train

    work = tmp_path_factory.mktemp("predict_ckpt")
    cfg = compose_config([*tiny_overrides(work / "shapes"), "train.max_iters=1", "train.vis_images=0",
                          "train.eval_period=0"])
    train(cfg, work / "run")
    return work / "run" / "checkpoints" / "last.pt", sorted((work / "shapes" / "JPEGImages").glob("*.jpg"))


def run_predict(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath(REPO), "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "frcnn.cli.predict", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_truncated_image_is_skipped_and_the_others_are_written(checkpoint, tmp_path):
    ckpt, jpegs = checkpoint
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.jpg").write_bytes(jpegs[0].read_bytes())
    data = jpegs[1].read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"

    proc = run_predict(f"checkpoint={ckpt}", f"input={images}", f"output={out}", "score_thresh=0.0", cwd=tmp_path)
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    warnings = [line for line in output.splitlines() if "skipped 1 of 2 images that cannot be decoded" in line]
    assert len(warnings) == 1 and "cut.jpg (first: cannot decode image" in warnings[0], output
    assert "good.jpg" not in warnings[0]
    error = proc.stdout.strip().splitlines()[-1]  # Hydra logs to stdout
    assert error.endswith(f"1 of 2 images could not be decoded and were skipped (named in the warning above); "
                          f"the drawings and detections.json in {out} hold the other 1"), output
    assert (out / "good.jpg").is_file() and not (out / "cut.jpg").exists()
    entries = json.loads((out / "detections.json").read_text())
    assert entries and {e["image_id"] for e in entries} == {"good.jpg"}
    log = (out / "predict.log").read_text()
    assert "skipped 1 of 2 images that cannot be decoded: cut.jpg" in log
