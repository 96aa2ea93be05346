"""``train.compile``: the training step's model part compiled with ``torch.compile``, its compile time logged apart.

What is compiled is ``FasterRCNN.core`` (trunk, RPN, ROI head and losses from the padded batch): one graph, no
graph break (tests/modeling/test_static_step.py). Input preparation (decoding, resizing, padding) stays eager.
Shapes are static per size bucket: the preprocessor pads each training batch to its bucket (at most three per
``model.input.min_size``: landscape, portrait, mixed), and only the number of ground-truth slots is a dynamic
dimension. So a run compiles at most one graph per bucket, never one per batch. Static buckets rather than dynamic
image sizes: the anchors, top-N choices and NMS blocks all follow from the feature map's size, and a fixed size lets
the compiler plan the memory and, with ``mode=reduce-overhead``, replay the step as CUDA graphs.
"""
from __future__ import annotations

import logging
import time

import torch
import torch._dynamo
from torch._dynamo.utils import counters

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# aot_eager traces the step and its backward, and runs them without generating code: a quick check that it compiles.
COMPILE_BACKENDS = ("inductor", "aot_eager")


def compile_model(model, min_sizes, *, mode: str = "default", backend: str = "inductor") -> None:
    """Compile ``model.core`` for training (see the module's docstring); logs each graph's compile time."""
    buckets = 3 * len(min_sizes)
    # Each bucket is a graph of its own; torch's default limit (8 graphs per function) could fall back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, buckets + 1)
    # A new bucket must be a new static graph, not make the image size dynamic (torch's automatic dynamic shapes);
    # the ground-truth slots are marked dynamic explicitly (Preprocessor.static).
    torch._dynamo.config.automatic_dynamic_shapes = False
    options = {"mode": mode} if backend == "inductor" else {}
    model.compile_core(fullgraph=True, backend=backend, **options)
    model.compiled_core = CompileTimer(model.compiled_core)
    log.info("train.compile: the training step compiles once per input-size bucket (at most %d here, %s backend, "
             "mode %s); each compile is logged", buckets, backend, mode)


class CompileTimer:
    """Calls a compiled function; when a call compiled a new graph, logs how long that call took."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.graphs = 0
        self.seconds = 0.0

    def __call__(self, *args):
        graphs_before = counters["stats"]["unique_graphs"]
        start = time.perf_counter()
        outputs = self.compiled(*args)
        new_graphs = counters["stats"]["unique_graphs"] - graphs_before
        if new_graphs:
            elapsed = time.perf_counter() - start
            self.graphs += new_graphs
            self.seconds += elapsed
            log.info("compiled the training step for a batch of shape %s in %.1f s (the backward compiles in its "
                     "first call; %d graph(s), %.1f s so far)", list(args[0].shape), elapsed, self.graphs,
                     self.seconds)
        return outputs
