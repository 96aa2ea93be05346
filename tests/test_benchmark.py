"""scripts/benchmark.py runs end to end on a tiny size on CPU and writes its table (no timing assertions)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
# Shrink the work so both models run in a few seconds; the code paths are the same as at full size.
SMALL = [
    "model.rpn.pre_nms_top_n.train=300",
    "model.rpn.post_nms_top_n.train=100",
    "model.rpn.pre_nms_top_n.test=200",
    "model.rpn.post_nms_top_n.test=20",
    "model.roi.batch_size_per_image=16",
    "model.anchor.scales=[1,2,4]",
    "model.rpn.min_size=2",
]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("frcnn_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_benchmark_runs_on_cpu_and_writes_json(tmp_path, capsys):
    benchmark = _load_benchmark()
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--quick", "--reps", "1", "--warmup", "0", "--size", "64x96",
            "--backbone", "resnet18", "--classes", "3", "--threads", "1", "--json", str(out)]  # fmt: skip
    for override in SMALL:
        argv += ["--override", override]
    benchmark.main(argv)

    printed = capsys.readouterr().out
    assert "ours/tv" in printed and "breakdown: resnet18" in printed
    result = json.loads(out.read_text())
    whats = {t["what"] for t in result["timings"]}
    assert whats == {"train step", "inference"}
    for timing in result["timings"]:
        assert timing["backbone"] == "resnet18" and timing["batch_size"] == 1
        assert timing["ours_ms"] > 0 and timing["tv_ms"] > 0
        assert timing["ratio"] > 0
    stages = {(s["mode"], s["stage"]) for s in result["breakdown"]}
    assert ("train", "ROI sampling") in stages and ("inference", "detections (score filter, NMS)") in stages
    assert all(s["ours_ms"] >= 0 and s["tv_ms"] >= 0 for s in result["breakdown"])
