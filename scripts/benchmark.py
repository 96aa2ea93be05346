#!/usr/bin/env python
"""Speed benchmark: frcnn's Faster R-CNN against torchvision's FasterRCNN built the same way.

Usage (from the repository root)::

    .venv/bin/python scripts/benchmark.py --quick                        # small images, few repetitions
    .venv/bin/python scripts/benchmark.py --device cuda --backbone vgg16,resnet50 --batch-size 1,4 --amp off,fp16
    .venv/bin/python scripts/benchmark.py --size 600x1000 --reps 3 --warmup 1 --amp bf16 --json bench.json

In one process, alternating between the two models every repetition (and which one goes first), it measures

(a) a training step: the trainer's own step, ``frcnn.engine.trainer.Trainer.run_step`` (forward under autocast,
    backward through the gradient scaler, clipping when configured, optimizer and scheduler step), with the
    optimizer and schedule frcnn-train builds from the config. torchvision's model goes through the same step with
    the optimizer of torchvision's detection reference (plain SGD);
(b) inference on the batch: eval mode, ``torch.no_grad()``, the same autocast;
(c) a per-stage breakdown of (a) and (b) for both, read from ``torch.profiler`` on profiled steps: the scopes the
    model opens in its own forward (``frcnn.bench.stages``), so the figures come from the real code.

Medians over ``--reps`` after ``--warmup`` untimed repetitions. On CUDA ``torch.cuda.synchronize()`` brackets
every timed region, the peak memory is ``torch.cuda.max_memory_allocated`` per model and kind of step, the
breakdown adds each stage's CUDA kernel time to its host time, and ``--sync-debug`` counts the host
synchronisations of one step of each kind with ``torch.cuda.set_sync_debug_mode("warn")``.

Inputs are synthetic and identical for both models: random images in [0, 1] of ``--size HxW`` with ``--boxes``
random boxes each, from a fixed seed. The config is the real one, composed by Hydra from conf/ (config ``train``)
with the backbone, the classes, ``train.batch_size``, ``train.amp`` and ``model.input.min_size/max_size`` set to
the image's sides (the network input is exactly ``--size``, padded to a multiple of 32), then ``--override``.
How torchvision's model is made the same, and what differs, is in ``frcnn.bench.baseline``; ``--tv-with``
gives it any of our speed-ups too. Random weights: frozen BatchNorm statistics are first set from one inference
pass on the batch (``calibrate_frozen_batchnorm``; ``--no-calibrate`` skips it), so that the RPN proposes and the
ROI stages work as with trained weights. The learning rate is the config's (its warm-up starts at 1e-6), so
repeated steps stay finite; a non-finite loss is flagged in the table.

On a CPU shared with other jobs, prefer ``--threads 1``: with 2 threads on 2 busy cores the timings swung by 2-4x
between repetitions (OMP_WAIT_POLICY=PASSIVE, set here by default, helps).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Spinning OpenMP threads make CPU timings erratic when other processes share the cores, and the profiler's
# library warns on every start that it finds no GPU. Both must be set before torch loads (so they only act when
# this file runs as a script); values set in the environment win.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

from frcnn.bench.baseline import TV_WITH, build_models, torchvision_optimizer  # noqa: E402
from frcnn.bench.stages import STEP_SCOPE, TRAILING, stage_times  # noqa: E402
from frcnn.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from frcnn.engine.runtime import autocast, check_amp  # noqa: E402
from frcnn.engine.trainer import NonFiniteLossError, Trainer  # noqa: E402
from frcnn.errors import ConfigError  # noqa: E402

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
QUICK = {"size": "224x320", "reps": 3, "warmup": 1}
FULL = {"size": "600x1000", "reps": 5, "warmup": 2}
TRAIN, INFER = "train step", "inference"
MODELS = ("ours", "tv")


# ------------------------------------------------------------------------------------------ config, inputs
def compose_config(backbone: str, size: Tuple[int, int], classes: Sequence[str], batch_size: int, amp: str,
                   device: str, overrides: Sequence[str] = ()):
    """The train config ``frcnn-train`` would compose for this case."""
    import frcnn  # noqa: F401  (registers the config schemas with Hydra)
    from hydra import compose, initialize_config_dir

    base = [f"backbone={backbone}", f"dataset.classes=[{','.join(classes)}]", f"model.input.min_size=[{min(size)}]",
            f"model.input.max_size={max(size)}", f"train.batch_size={batch_size}", f"train.amp={amp}",
            f"device={device}"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=[*base, *overrides])


def make_inputs(batch_size: int, size: Tuple[int, int], num_classes: int, boxes_per_image: int,
                device: torch.device, seed: int = 0):
    """Random images in [0, 1] and ``boxes_per_image`` random boxes (10..60 % of each side) per image."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    extent = torch.tensor([width, height], dtype=torch.float32)
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, height, width, generator=generator).to(device))
        box_size = (0.1 + 0.5 * torch.rand(boxes_per_image, 2, generator=generator)) * extent
        corner = torch.rand(boxes_per_image, 2, generator=generator) * (extent - box_size)
        labels = torch.randint(1, num_classes + 1, (boxes_per_image,), generator=generator)
        targets.append({"boxes": torch.cat([corner, corner + box_size], dim=1).to(device), "labels": labels.to(device)})
    return images, targets


# ------------------------------------------------------------------------------------------------- runner
class Runner:
    """One model with the Trainer that trains it, on one fixed batch."""

    def __init__(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg, images, targets,
                 device: torch.device):
        tc = cfg.train
        self.name, self.model, self.images, self.device, self.amp = name, model, images, device, str(tc.amp)
        self.trainer = Trainer(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, tc),
                               data=itertools.repeat((images, targets)), max_iters=int(tc.max_iters),
                               batch_size=len(images), device=device, amp=self.amp,
                               scaler=torch.amp.GradScaler(device.type, enabled=(self.amp == "fp16")),
                               clip_grad_norm=float(tc.clip_grad_norm))  # fmt: skip
        # What Trainer.train() sets up before its loop: run_step draws its batch from it.
        self.trainer._data_iter = iter(self.trainer.data)
        self.box_head_rois = 0  # ROIs through the box head in the last step
        model.roi_heads.box_head.register_forward_pre_hook(self._count_rois)

    def _count_rois(self, module, inputs) -> None:
        self.box_head_rois = inputs[0].shape[0]

    def step(self, kind: str) -> Callable[[], None]:
        """The step of this kind, with the model already in its mode (outside the timed region)."""
        self.model.train(kind == TRAIN)
        return self.trainer.run_step if kind == TRAIN else self._infer

    def _infer(self) -> None:
        with torch.no_grad(), autocast(self.amp, self.device):
            self.model(self.images)

    def losses_finite(self) -> bool:
        """Whether every training step so far had finite losses (reads them: a host sync)."""
        try:
            self.trainer.check_losses()
        except NonFiniteLossError:
            return False
        return True


def build_runners(cfg, images, targets, device: torch.device, *, tv_with: Sequence[str] = (),
                  calibrate: bool = True) -> List[Runner]:
    """Ours with frcnn-train's optimizer, torchvision's with its reference's (see frcnn.bench.baseline)."""
    ours, tv = build_models(cfg, images, device, tv_with=tv_with, calibrate=calibrate)
    return [
        Runner("ours", ours, build_optimizer(ours, cfg.train), cfg, images, targets, device),
        Runner("tv", tv, torchvision_optimizer(tv, cfg.train, fused="fused_sgd" in tv_with), cfg, images, targets,
               device),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ measuring
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(runners: Sequence[Runner], measure: Callable[[Runner], object], reps: int, warmup: int = 0):
    """``measure(runner)`` for each runner over ``warmup`` untimed and ``reps`` kept rounds; the order of the
    runners flips every round so that neither always runs on a warm (or a cold) machine."""
    kept: List[list] = [[] for _ in runners]
    for round_index in range(warmup + reps):
        order = range(len(runners)) if round_index % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            value = measure(runners[i])
            if round_index >= warmup:
                kept[i].append(value)
    return kept


def timed(device: torch.device, fn: Callable[[], None]) -> Tuple[float, Optional[float]]:
    """Wall time of ``fn()`` in ms, and the peak CUDA memory during it in MiB (None on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    elapsed = (time.perf_counter() - start) * 1000.0
    return elapsed, torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def profiled(device: torch.device, fn: Callable[[], None]) -> Dict[str, Tuple[float, float]]:
    """``{stage: (host ms, CUDA kernel ms)}`` of one call of ``fn`` (see frcnn.bench.stages)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        with record_function(STEP_SCOPE):
            fn()
        synchronize(device)
    return stage_times(prof.events())


def count_syncs(device: torch.device, fn: Callable[[], None]) -> Optional[int]:
    """Host synchronisations of one call of ``fn`` reported by CUDA's sync debug mode (None off CUDA)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def time_steps(runners: Sequence[Runner], kind: str, reps: int, warmup: int, sync_debug: bool = False) -> dict:
    """One row of the timing table for both models: medians and samples (ms), images/s, peak memory, host syncs,
    and whether the losses stayed finite."""
    device, batch_size = runners[0].device, len(runners[0].images)
    samples = alternate(runners, lambda r: timed(device, r.step(kind)), reps, warmup)
    row: dict = {"what": kind}
    for runner, values in zip(runners, samples):
        ms, peaks = [v[0] for v in values], [v[1] for v in values if v[1] is not None]
        row.update({
            f"{runner.name}_ms": statistics.median(ms), f"{runner.name}_samples_ms": ms,
            f"{runner.name}_images_per_s": 1000.0 * batch_size / statistics.median(ms),
            f"{runner.name}_peak_mb": max(peaks) if peaks else None,
            f"{runner.name}_syncs": count_syncs(device, runner.step(kind)) if sync_debug else None,
            f"{runner.name}_finite": runner.losses_finite(),
        })  # fmt: skip
    row["ratio"] = row["ours_ms"] / row["tv_ms"]
    row["ratio_of_best"] = min(row["ours_samples_ms"]) / min(row["tv_samples_ms"])  # steadier on a busy machine
    return row


def profile_stages(runners: Sequence[Runner], kind: str, reps: int) -> Tuple[List[dict], dict]:
    """Median time per stage of both models over ``reps`` profiled steps, and the ROIs each box head saw."""
    device = runners[0].device
    profiles = alternate(runners, lambda r: profiled(device, r.step(kind)), reps)
    medians = [{stage: _median_pair([p[stage] for p in runs if stage in p]) for stage in runs[0]} for runs in profiles]
    seen = dict.fromkeys([*medians[0], *medians[1]])  # our order, then stages only torchvision has
    stages = [s for s in seen if s not in TRAILING] + [s for s in TRAILING if s in seen]
    rows = []
    for stage in stages:
        row = {"mode": kind, "stage": stage, "group": stage.split(".")[0]}
        for runner, times in zip(runners, medians):
            row[f"{runner.name}_ms"], row[f"{runner.name}_device_ms"] = times.get(stage, (None, None))
        rows.append(row)
    return rows, {"mode": kind, **{f"{r.name}_box_head_rois": r.box_head_rois for r in runners}}


def _median_pair(pairs: List[Tuple[float, float]]) -> Tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def benchmark_case(cfg, images, targets, device: torch.device, *, tv_with: Sequence[str], calibrate: bool,
                   reps: int, warmup: int, sync_debug: bool) -> Tuple[List[dict], List[dict], List[dict]]:
    """Timings, per-stage rows and box-head ROI counts of one configuration (training and inference)."""
    runners = build_runners(cfg, images, targets, device, tv_with=tv_with, calibrate=calibrate)
    timings = [time_steps(runners, kind, reps, warmup, sync_debug) for kind in (TRAIN, INFER)]
    stages, counts = [], []
    for kind in (TRAIN, INFER):
        rows, count = profile_stages(runners, kind, reps)
        stages += rows
        counts.append(count)
    return timings, stages, counts


# ------------------------------------------------------------------------------------------------ reporting
def _fmt(value, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(ours: Optional[float], tv: Optional[float]) -> Optional[float]:
    return ours / tv if ours is not None and tv else None


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def timing_table(timings: Sequence[dict]) -> str:
    header = ["backbone", "batch", "amp", "what", "ours ms", "tv ms", "ours/tv", "best/best", "img/s ours",
              "img/s tv", "peak MiB ours", "peak MiB tv", "syncs ours", "syncs tv"]  # fmt: skip
    rows = [
        [t["backbone"], t["batch_size"], t["amp"], t["what"] + ("" if t["ours_finite"] and t["tv_finite"] else
         " (non-finite loss)"), _fmt(t["ours_ms"]), _fmt(t["tv_ms"]), _fmt(t["ratio"], ".2f"),
         _fmt(t["ratio_of_best"], ".2f"), _fmt(t["ours_images_per_s"], ".2f"), _fmt(t["tv_images_per_s"], ".2f"),
         _fmt(t["ours_peak_mb"], ".0f"), _fmt(t["tv_peak_mb"], ".0f"), _fmt(t["ours_syncs"], "d"),
         _fmt(t["tv_syncs"], "d")]  # fmt: skip
        for t in timings
    ]
    return format_table(header, rows)


def breakdown_table(rows: Sequence[dict], with_device: bool) -> str:
    """Stages, the groups of more than one stage, and the total: ms, share of the step and ours/tv."""
    groups: Dict[str, List[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    total = _sum_rows(rows)
    lines = [(row["stage"], row) for row in rows]
    lines += [(f"[{group}]", _sum_rows(members)) for group, members in groups.items() if len(members) > 1]
    lines.append(("total (sum of stages)", total))
    header = ["stage", "ours ms", "ours %", "tv ms", "tv %", "ours/tv"] + ["ours cuda ms", "tv cuda ms"] * with_device
    table = [[name, _fmt(r["ours_ms"]), _fmt(_share(r["ours_ms"], total["ours_ms"])), _fmt(r["tv_ms"]),
              _fmt(_share(r["tv_ms"], total["tv_ms"])), _fmt(_ratio(r["ours_ms"], r["tv_ms"]), ".2f")]
             + [_fmt(r["ours_device_ms"]), _fmt(r["tv_device_ms"])] * with_device
             for name, r in lines]  # fmt: skip
    return format_table(header, table)


def _sum_rows(rows: Sequence[dict]) -> dict:
    return {f"{m}_{k}": sum(r[f"{m}_{k}"] or 0.0 for r in rows) for m in MODELS for k in ("ms", "device_ms")}


def _share(value: Optional[float], total: float) -> Optional[float]:
    return 100.0 * value / total if value is not None and total else None


def print_report(result: dict) -> None:
    print("\n" + timing_table(result["timings"]))
    print("\n(ms: medians; ours/tv: ratio of the medians, best/best: of the fastest repetitions; lower is better "
          "for us)")
    with_device = result["settings"]["device"] == "cuda"
    case_keys = ("backbone", "batch_size", "amp", "mode")
    for key in dict.fromkeys(tuple(r[k] for k in case_keys) for r in result["breakdown"]):
        rows = [r for r in result["breakdown"] if tuple(r[k] for k in case_keys) == key]
        count = next(c for c in result["breakdown_counts"] if tuple(c[k] for k in case_keys) == key)
        print(f"\nbreakdown: {key[0]}, batch {key[1]}, amp {key[2]}, {key[3]} (profiled; box-head ROIs: ours "
              f"{count['ours_box_head_rois']}, tv {count['tv_box_head_rois']})")
        print(breakdown_table(rows, with_device))
    print("\n(a stage excludes the stages inside it: rpn = the RPN outside rpn.*; torchvision's ROI losses are in "
          "roi; other = the rest of the step)", flush=True)


def environment(device: torch.device) -> dict:
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }


# ------------------------------------------------------------------------------------------------------ CLI
def parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HxW, e.g. 600x1000, got {text!r}") from None
    return height, width


def comma_list(values: Optional[Sequence[str]], default: str) -> List[str]:
    return [v.strip() for value in (values or [default]) for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    add("--backbone", action="append", help="repeatable or comma list (default vgg16,resnet50)")
    add("--batch-size", action="append", help="comma list (default 1)")
    add("--size", type=parse_size, help="HxW of the images and network input (default 600x1000)")
    add("--amp", action="append", help="off | fp16 (CUDA) | bf16, comma list (default off)")
    add("--reps", type=int, help="timed repetitions per model (default 5; --quick 3)")
    add("--warmup", type=int, help="untimed repetitions first (default 2; --quick 1)")
    add("--quick", action="store_true", help=f"preset: {QUICK}")
    add("--threads", type=int, help="torch.set_num_threads")
    add("--tv-with", action="append",
        help=f"give torchvision's model one of our speed-ups too, to see what each is worth: comma list of "
             f"{', '.join(TV_WITH)} or all (default: none, torchvision as it ships). Ours follows its config: "
             f"--override model.channels_last=false turns its memory format off")  # fmt: skip
    add("--sync-debug", action="store_true", help="count host syncs of one step (CUDA only)")
    add("--classes", type=int, default=len(VOC_CLASSES), help="number of object classes (20)")
    add("--boxes", type=int, default=4, help="ground-truth boxes per image")
    add("--override", action="append", default=[], help="extra Hydra override, e.g. model.roi.pooler=pool")
    add("--no-calibrate", dest="calibrate", action="store_false",
        help="keep the identity statistics of random FrozenBatchNorm layers (see calibrate_frozen_batchnorm)")
    add("--seed", type=int, default=0)
    add("--json", type=Path, help="write all results here")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, with presets applied, lists split and every value checked."""
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.size = args.size or parse_size(preset["size"])
    args.reps = preset["reps"] if args.reps is None else args.reps
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    args.backbone = comma_list(args.backbone, "vgg16,resnet50")
    args.batch_size = [int(b) for b in comma_list(args.batch_size, "1")]
    args.amp = comma_list(args.amp, "off")
    args.tv_with = comma_list(args.tv_with, "")
    args.tv_with = list(TV_WITH) if "all" in args.tv_with else args.tv_with
    if bad := [t for t in args.tv_with if t not in TV_WITH]:
        parser.error(f"--tv-with: unknown {bad}; choose from {', '.join(TV_WITH)} or all")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    try:
        for amp in args.amp:
            check_amp(amp, torch.device(args.device))  # what frcnn-train accepts
    except ConfigError as error:
        parser.error(f"--amp: {error}")
    names = list(VOC_CLASSES) + [f"class{i}" for i in range(len(VOC_CLASSES) + 1, args.classes + 1)]
    args.classes = names[: args.classes]
    return args


def run(*, device: str, backbones: Sequence[str], batch_sizes: Sequence[int], amps: Sequence[str],
        size: Tuple[int, int], classes: Sequence[str], boxes: int, overrides: Sequence[str], tv_with: Sequence[str],
        calibrate: bool, reps: int, warmup: int, sync_debug: bool, seed: int) -> dict:
    """Every (backbone, batch size, amp) case; returns the results (printed by :func:`print_report`)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"frcnn benchmark: device {device}, size {size[0]}x{size[1]}, reps {reps} (warm-up {warmup}), threads "
          f"{torch.get_num_threads()}, torchvision with our {', '.join(tv_with) or 'nothing'}", flush=True)
    settings = {"device": device, "size": list(size), "reps": reps, "warmup": warmup, "tv_with": list(tv_with),
                "num_classes": len(classes), "boxes_per_image": boxes, "overrides": list(overrides), "seed": seed,
                "calibrate_frozen_bn": calibrate}  # fmt: skip
    result = {"settings": settings, "timings": [], "breakdown": [], "breakdown_counts": []}
    for backbone, batch_size, amp in itertools.product(backbones, batch_sizes, amps):
        print(f"... {backbone}, batch {batch_size}, amp {amp}", flush=True)
        torch.manual_seed(seed)
        cfg = compose_config(backbone, size, classes, batch_size, amp, device, overrides)
        images, targets = make_inputs(batch_size, size, len(classes), boxes, dev, seed)
        case = {"backbone": backbone, "batch_size": batch_size, "amp": amp}
        for name, rows in zip(("timings", "breakdown", "breakdown_counts"), benchmark_case(
                cfg, images, targets, dev, tv_with=tv_with, calibrate=calibrate, reps=reps, warmup=warmup,
                sync_debug=sync_debug)):  # fmt: skip
            result[name] += [{**case, **row} for row in rows]
    result["environment"] = environment(dev)
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        result = run(device=args.device, backbones=args.backbone, batch_sizes=args.batch_size, amps=args.amp,
                     size=args.size, classes=args.classes, boxes=args.boxes, overrides=args.override,
                     tv_with=args.tv_with, calibrate=args.calibrate, reps=args.reps, warmup=args.warmup,
                     sync_debug=args.sync_debug, seed=args.seed)  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests): leave the process as it was
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
