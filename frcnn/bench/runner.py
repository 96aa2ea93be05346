"""The benchmark's measurements: both models on one fixed batch, through the trainer's own step.

A :class:`Runner` is a model with the :class:`~frcnn.engine.trainer.Trainer` that trains it; its training step is
``Trainer.run_step`` (forward under autocast, backward through the gradient scaler, clipping when configured,
optimizer and scheduler step), its inference step the model in eval mode under ``torch.no_grad()`` and the same
autocast. Whole steps are timed; the per-stage breakdown comes from profiled steps (``frcnn.bench.stages``). The
two runners alternate every repetition, and which one goes first alternates too, so that machine noise hits both.
"""
from __future__ import annotations

import itertools
import statistics
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from hydra import compose, initialize_config_module
from torch.profiler import ProfilerActivity, profile, record_function

from frcnn.bench.baseline import build_models, torchvision_optimizer
from frcnn.bench.stages import STEP_SCOPE, TRAILING, stage_times
from frcnn.engine.compile import compile_model
from frcnn.engine.optim import build_optimizer, build_scheduler
from frcnn.engine.runtime import autocast
from frcnn.engine.trainer import NonFiniteLossError, Trainer

TRAIN, INFER = "train step", "inference"


def compose_config(backbone: str, size: Tuple[int, int], classes: Sequence[str], batch_size: int, amp: str,
                   device: str, overrides: Sequence[str] = ()):
    """The train config ``frcnn-train`` would compose for this case (the package's configs, as the commands)."""
    base = [f"backbone={backbone}", f"dataset.classes=[{','.join(classes)}]", f"model.input.min_size=[{min(size)}]",
            f"model.input.max_size={max(size)}", f"train.batch_size={batch_size}", f"train.amp={amp}",
            f"device={device}"]  # fmt: skip
    with initialize_config_module("frcnn.conf", version_base=None):
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
        self.trainer.start()
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
    if cfg.train.compile:  # as frcnn-train does: our training step compiled (the warmup steps pay the compile)
        compile_model(ours, cfg.model.input.min_size, mode=cfg.train.compile_mode, backend=cfg.train.compile_backend)
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


def profile_stages(runners: Sequence[Runner], kind: str, reps: int, warmup: int = 0) -> Tuple[List[dict], dict]:
    """Median time per stage of both models over ``reps`` profiled steps (after ``warmup`` profiled but unkept
    ones: the profiler's first run pays its own set-up), and the ROIs each box head saw."""
    device = runners[0].device
    profiles = alternate(runners, lambda r: profiled(device, r.step(kind)), reps, warmup)
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
        rows, count = profile_stages(runners, kind, reps, warmup=min(warmup, 1))
        stages += rows
        counts.append(count)
    return timings, stages, counts

