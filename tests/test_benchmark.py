"""scripts/benchmark.py runs end to end on a tiny size on CPU and writes its table (no timing assertions)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

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


# bf16 with --tv-with all: torchvision's proposals come out of its box coder in bf16 under autocast.
@pytest.mark.parametrize("tv_with", [[], ["--tv-with", "all", "--amp", "bf16"]],
                         ids=["torchvision-as-shipped", "tv-with-all-bf16"])
def test_benchmark_runs_on_cpu_and_writes_json(tmp_path, capsys, tv_with):
    benchmark = _load_benchmark()
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--quick", "--reps", "1", "--warmup", "0", "--size", "64x96",
            "--backbone", "resnet18", "--classes", "3", "--threads", "1", "--json", str(out), *tv_with]  # fmt: skip
    for override in SMALL:
        argv += ["--override", override]
    benchmark.main(argv)

    printed = capsys.readouterr().out
    assert "ours/tv" in printed and "breakdown: resnet18" in printed
    result = json.loads(out.read_text())
    assert result["settings"]["tv_with"] == (list(benchmark.TV_WITH) if tv_with else [])
    whats = {t["what"] for t in result["timings"]}
    assert whats == {"train step", "inference"}
    for timing in result["timings"]:
        assert timing["backbone"] == "resnet18" and timing["batch_size"] == 1
        assert timing["ours_ms"] > 0 and timing["tv_ms"] > 0
        assert timing["ratio"] > 0
    stages = {(s["mode"], s["stage"]) for s in result["breakdown"]}
    assert ("train", "ROI sampling") in stages and ("inference", "detections (score filter, NMS)") in stages
    assert all(s["ours_ms"] >= 0 and s["tv_ms"] >= 0 for s in result["breakdown"])


def test_unknown_tv_with_option_is_refused(capsys):
    benchmark = _load_benchmark()
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--tv-with", "channels_last,turbo"])
    assert "turbo" in capsys.readouterr().err


@pytest.mark.parametrize("tv_with", [[], ["channels_last", "folded_bn"]])
def test_torchvision_gets_our_speedups_only_when_asked(tv_with):
    """A fair baseline: torchvision's copy of our trunk must not inherit our memory format or folded BatchNorm."""
    from argparse import Namespace

    from torchvision.ops.misc import FrozenBatchNorm2d

    from frcnn.modeling.backbones import FrozenBNConv2d

    benchmark = _load_benchmark()
    cfg = benchmark.compose_config("resnet18", (64, 96), ["a", "b"], SMALL)
    images, _ = benchmark.make_inputs(1, (64, 96), 2, 2, torch.device("cpu"))
    args = Namespace(calibrate=True, size=(64, 96), tv_with=tv_with)
    ours, tv = benchmark.build_models(cfg, images, torch.device("cpu"), args)

    def conv_weights(model):
        return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, FrozenBNConv2d))]

    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(ours) if w.shape[-1] > 1)
    assert any(isinstance(m, FrozenBNConv2d) for m in ours.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in ours.modules())
    tv_channels_last = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                        for w in conv_weights(tv) if w.shape[-1] > 1]
    assert all(tv_channels_last) if "channels_last" in tv_with else not any(tv_channels_last)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in tv.modules()) == ("folded_bn" not in tv_with)
