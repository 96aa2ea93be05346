"""Per-stage times of a step, read from ``torch.profiler`` events of named scopes.

Our model opens a ``torch.profiler.record_function`` scope around each stage of its forward (``frcnn.trunk``,
``frcnn.rpn.proposals``, ...; see ``frcnn/modeling``); torchvision's gets scopes of the same names with the prefix
``torchvision.`` (``frcnn.bench.baseline.add_stage_scopes``). A stage is the scope's name without its prefix.

A stage's time is its scope's time less that of the scopes nested in it (``rpn`` is the RPN's work outside
``rpn.head``, ``rpn.anchors``, ...), so the stages of a step add up to the step: the autograd engine's work is
``backward``, the optimizer's ``step`` and ``zero_grad`` are ``optimizer``, and the rest of the step (the loss sum,
the scheduler, the profiler's own bookkeeping) is ``other``. The profiler's per-operator overhead is included.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

from torch.autograd import DeviceType

STEP_SCOPE = "bench.step"  # the benchmark wraps each profiled step in it
SCOPE_PREFIXES = ("frcnn.", "torchvision.")
TRAILING = ("backward", "optimizer", "other")  # always listed after the model's stages


def stage_of(name: str) -> Optional[str]:
    """The stage an event of this name stands for, or None."""
    if name.startswith(SCOPE_PREFIXES):
        return name.split(".", 1)[1]
    if name.startswith("autograd::engine::evaluate_function"):
        return "backward"
    if name.startswith("Optimizer."):  # torch.optim's own scopes: Optimizer.step#SGD.step, Optimizer.zero_grad#...
        return "optimizer"
    return None


def stage_times(events: Iterable) -> Dict[str, Tuple[float, float]]:
    """``{stage: (cpu_ms, device_ms)}`` per step from a profiler's ``events()``, stages in the order they first
    ran, then ``backward``, ``optimizer`` and ``other``. Device times are 0 when no device was profiled."""
    cpu_events = [e for e in events if e.device_type == DeviceType.CPU]
    steps = [e for e in cpu_events if e.name == STEP_SCOPE]
    if not steps:
        raise ValueError(f"no {STEP_SCOPE!r} scope among the profiled events")
    times: Dict[str, list] = {}
    for event in sorted(cpu_events, key=lambda e: e.time_range.start):
        stage = stage_of(event.name)
        if stage is None:
            continue
        _add(times, stage, event, 1)
        outer = _enclosing_scope(event)
        if outer is not None:
            _add(times, stage_of(outer.name), event, -1)
    step_cpu = sum(e.cpu_time_total for e in steps)
    step_device = sum(_own_kernels_us(e) for e in cpu_events)  # every kernel the steps launched
    times["other"] = [step_cpu - sum(t[0] for t in times.values()), step_device - sum(t[1] for t in times.values())]
    order = [s for s in times if s not in TRAILING] + [s for s in TRAILING if s in times]
    return {s: (times[s][0] / 1000 / len(steps), times[s][1] / 1000 / len(steps)) for s in order}


def _add(times: Dict[str, list], stage: str, event, sign: int) -> None:
    total = times.setdefault(stage, [0.0, 0.0])
    total[0] += sign * event.cpu_time_total
    total[1] += sign * _kernels_us(event)


def _kernels_us(event) -> float:
    """Device time of the kernels launched inside ``event`` (its children's included)."""
    return _own_kernels_us(event) + sum(_kernels_us(child) for child in event.cpu_children)


def _own_kernels_us(event) -> float:
    # On CUDA each scope also has a GPU-side copy (a "user annotation" spanning its kernels), which the profiler
    # may attach to the scope like a kernel: left out, it would count those kernels twice.
    return sum(k.duration for k in event.kernels if k.name != STEP_SCOPE and stage_of(k.name) is None)


def _enclosing_scope(event):
    """The nearest enclosing event that is itself a stage (same thread), or None."""
    parent = event.cpu_parent
    while parent is not None and stage_of(parent.name) is None:
        parent = parent.cpu_parent
    return parent
