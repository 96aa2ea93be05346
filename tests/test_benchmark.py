"""scripts/benchmark.py times the real model: its steps are the trainer's, its breakdown the model's own scopes."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.profiler import profile

from frcnn.bench import runner, stages
from frcnn.bench.baseline import TV_WITH, build_models

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
SIZE = (64, 96)
# Shrink the work so both models run in a fraction of a second; the code paths are the same as at full size.
SMALL = [
    "model.rpn.pre_nms_top_n.train=300",
    "model.rpn.post_nms_top_n.train=100",
    "model.rpn.pre_nms_top_n.test=200",
    "model.rpn.post_nms_top_n.test=20",
    "model.roi.batch_size_per_image=16",
    "model.anchor.scales=[1,2,4]",
    "model.rpn.min_size=2",
]
MODEL_STAGES = {
    "train step": ["preprocess", "trunk", "rpn", "rpn.head", "rpn.anchors", "rpn.proposals", "rpn.losses", "roi",
                   "roi.sample", "roi.pool", "roi.box_head", "roi.losses"],
    "inference": ["preprocess", "trunk", "rpn", "rpn.head", "rpn.anchors", "rpn.proposals", "roi", "roi.pool",
                  "roi.box_head", "roi.detect", "postprocess"],
}  # fmt: skip


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("frcnn_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def case():
    """Config, one image with its targets, and both runners (ResNet-18, 64x96, one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = runner.compose_config("resnet18", SIZE, ["a", "b", "c"], 1, "off", "cpu", SMALL)
    images, targets = runner.make_inputs(1, SIZE, 3, 2, torch.device("cpu"))
    yield cfg, images, targets, runner.build_runners(cfg, images, targets, torch.device("cpu"))
    torch.set_num_threads(threads)


def model_scopes(model, *inputs):
    """The stages our model's forward opens scopes for, in the order they run."""
    with profile() as prof:
        model(*inputs)
    names = [e.name for e in sorted(prof.events(), key=lambda e: e.time_range.start)]
    return list(dict.fromkeys(n.split(".", 1)[1] for n in names if n.startswith("frcnn.")))


def test_stage_times_subtract_nested_scopes_and_count_each_kernel_once():
    """Hand-made profiler events of one step (times in us): a stage is its scope less the scopes inside it."""
    from torch.autograd.profiler_util import FunctionEvent, Kernel

    def event(name, start, end, parent=None, kernels=()):
        e = FunctionEvent(id=0, name=name, thread=1, start_us=start, end_us=end)
        e.kernels = [Kernel(k, 0, us) for k, us in kernels]
        if parent is not None:
            e.set_cpu_parent(parent)
            parent.append_cpu_child(e)
        return e

    step = event("bench.step", 0, 100)
    rpn = event("frcnn.rpn", 10, 60, step)
    head = event("frcnn.rpn.head", 10, 30, rpn, kernels=[("frcnn.rpn.head", 9)])  # CUDA's copy of the scope
    conv = event("aten::conv2d", 12, 28, head, kernels=[("conv_kernel", 5)])
    backward = event("autograd::engine::evaluate_function: ConvolutionBackward0", 65, 85, step, kernels=[("dgrad", 4)])
    optimizer = event("Optimizer.step#SGD.step", 88, 98, step)

    times = stages.stage_times([step, rpn, head, conv, backward, optimizer])
    assert list(times) == ["rpn", "rpn.head", "backward", "optimizer", "other"]
    expected = {"rpn": (0.030, 0.0), "rpn.head": (0.020, 0.005), "backward": (0.020, 0.004),
                "optimizer": (0.010, 0.0), "other": (0.020, 0.0)}  # fmt: skip
    assert {name: pytest.approx(value, abs=1e-9) for name, value in expected.items()} == times


@pytest.mark.parametrize("profiled", [False, True], ids=["timed-step", "profiled-step"])
def test_benchmarked_train_step_gives_the_losses_of_the_model(case, profiled):
    """The step the benchmark times (and the one it profiles) computes exactly what model(images, targets) does."""
    _, images, targets, (ours, _) = case
    reference = copy.deepcopy(ours.model)  # before the step changes the weights
    torch.manual_seed(7)
    step = ours.step(runner.TRAIN)
    runner.profiled(torch.device("cpu"), step) if profiled else step()
    losses = ours.trainer.pop_loss_means()

    torch.manual_seed(7)  # the same RPN / ROI sampling draws
    expected = {name: value.item() for name, value in reference.train()(images, targets).items()}
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}
    assert losses == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert ours.trainer.optimizer.state  # and it was a training step: the optimizer stepped (momentum buffers)


@pytest.mark.parametrize("kind", ["train step", "inference"])
def test_stage_table_lists_the_model_scopes(case, kind):
    _, images, targets, runners = case
    ours = runners[0].model
    scopes = model_scopes(ours.train(kind == "train step"), images, *([targets] if kind == "train step" else []))
    assert scopes == MODEL_STAGES[kind]

    rows, counts = runner.profile_stages(runners, kind, reps=1)
    stages = [row["stage"] for row in rows]
    trailing = ["backward", "optimizer", "other"] if kind == "train step" else ["other"]
    # Every scope, in the order the model runs them, then torchvision's transform.postprocess (it runs in
    # training too), then what lies outside the forward.
    assert stages == scopes + (["postprocess"] if kind == "train step" else []) + trailing
    by_stage = {row["stage"]: row for row in rows}
    for heavy in ("trunk", "roi.box_head", *trailing[:2]):
        assert by_stage[heavy]["ours_ms"] > 0 and by_stage[heavy]["tv_ms"] > 0
    assert by_stage["other"]["ours_ms"] > -0.05  # the stages never add up to more than the step
    # torchvision's model has a scope for each of our stages but the ROI losses (a module function there).
    assert [s for s in scopes if by_stage[s]["tv_ms"] is None] == (["roi.losses"] if kind == "train step" else [])
    assert counts["ours_box_head_rois"] > 0 and counts["tv_box_head_rois"] > 0


@pytest.mark.parametrize("tv_with", [[], list(TV_WITH)], ids=["as-shipped", "all"])
def test_torchvision_gets_our_speedups_only_when_asked(tv_with):
    """A fair baseline: torchvision's copy of our trunk must not inherit our memory format, folded BatchNorm,
    threaded pooling or fused SGD unless asked."""
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.misc import FrozenBatchNorm2d

    from frcnn.modeling.backbones import FrozenBNConv2d

    cfg = runner.compose_config("resnet18", SIZE, ["a", "b"], 1, "off", "cpu", SMALL)
    images, targets = runner.make_inputs(1, SIZE, 2, 2, torch.device("cpu"))
    ours, tv = runner.build_runners(cfg, images, targets, torch.device("cpu"), tv_with=tv_with)

    def conv_weights(model):
        return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, FrozenBNConv2d))]

    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(ours.model) if w.shape[-1] > 1)
    assert any(isinstance(m, FrozenBNConv2d) for m in ours.model.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in ours.model.modules())
    assert ours.trainer.optimizer.defaults["fused"]
    tv_channels_last = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                        for w in conv_weights(tv.model) if w.shape[-1] > 1]  # fmt: skip
    assert all(tv_channels_last) if tv_with else not any(tv_channels_last)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in tv.model.modules()) == (not tv_with)
    assert isinstance(tv.model.roi_heads.box_roi_pool, MultiScaleRoIAlign) == (not tv_with)
    assert bool(tv.trainer.optimizer.defaults["fused"]) == bool(tv_with)


def test_models_start_from_the_same_weights(case):
    """torchvision's trunk and box head are copies of ours, with the same weights (before any step)."""
    cfg, images, _, _ = case
    ours, tv = build_models(cfg, images, torch.device("cpu"))
    with torch.no_grad():
        batch = torch.rand(1, 3, *SIZE)
        torch.testing.assert_close(tv.backbone(batch), ours.trunk(batch), rtol=1e-4, atol=1e-4)  # folded vs not
    torch.testing.assert_close(tv.rpn.head.conv[0][0].weight, ours.rpn.head.conv.weight)
    torch.testing.assert_close(tv.roi_heads.box_predictor.cls_score.weight, ours.roi_heads.predictor.cls_score.weight)


def test_unknown_tv_with_option_and_fp16_on_cpu_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--tv-with", "channels_last,turbo"])
    assert "turbo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--device", "cpu", "--amp", "fp16"])
    assert "amp=fp16 needs CUDA" in capsys.readouterr().err


# bf16 with --tv-with all: torchvision's proposals come out of its box coder in bf16 under autocast.
@pytest.mark.parametrize("extra", [[], ["--tv-with", "all", "--amp", "bf16"]], ids=["as-shipped", "tv-with-all-bf16"])
def test_quick_run_writes_the_expected_table_and_json(script, tmp_path, capsys, extra):
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--quick", "--reps", "1", "--warmup", "0", "--size", "64x96", "--backbone", "resnet18",
            "--classes", "3", "--threads", "1", "--json", str(out), *extra]  # fmt: skip
    for override in SMALL:
        argv += ["--override", override]
    script.main(argv)

    printed = capsys.readouterr().out
    assert "ours/tv" in printed and "img/s ours" in printed
    amp = "bf16" if extra else "off"
    for kind in ("train step", "inference"):
        assert f"breakdown: resnet18, batch 1, amp {amp}, {kind}" in printed
    result = json.loads(out.read_text())
    assert result["settings"]["tv_with"] == (list(TV_WITH) if extra else [])
    assert [t["what"] for t in result["timings"]] == ["train step", "inference"]
    for t in result["timings"]:
        assert (t["backbone"], t["batch_size"], t["amp"]) == ("resnet18", 1, amp)
        assert t["ours_ms"] > 0 and t["tv_ms"] > 0 and t["ours_finite"] and t["tv_finite"]
        assert t["ratio"] == pytest.approx(t["ours_ms"] / t["tv_ms"])
        assert t["ours_images_per_s"] == pytest.approx(1000.0 / t["ours_ms"])
        assert len(t["ours_samples_ms"]) == len(t["tv_samples_ms"]) == 1
        assert t["ours_peak_mb"] is None and t["ours_syncs"] is None  # CPU: n/a
    trailing = {"train step": ["backward", "optimizer", "other"], "inference": ["other"]}
    for kind in ("train step", "inference"):
        rows = [r for r in result["breakdown"] if r["mode"] == kind]
        stages = [r["stage"] for r in rows]
        assert [s for s in stages if s in MODEL_STAGES[kind]] == MODEL_STAGES[kind]
        assert stages[-len(trailing[kind]):] == trailing[kind]
        assert set(stages) - set(MODEL_STAGES[kind]) - set(trailing[kind]) <= {"postprocess"}  # torchvision's
        for r in rows:
            assert r["group"] == r["stage"].split(".")[0] and (r["backbone"], r["amp"]) == ("resnet18", amp)
            assert set(r) >= {"ours_ms", "tv_ms", "ours_device_ms", "tv_device_ms"}
        assert sum(r["ours_ms"] or 0 for r in rows) > 0
    counts = {c["mode"]: c for c in result["breakdown_counts"]}
    assert counts["train step"]["ours_box_head_rois"] == 16  # model.roi.batch_size_per_image, one image
