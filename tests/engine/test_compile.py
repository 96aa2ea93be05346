"""``train.compile=true``: one compiled graph per input-size bucket, never one per batch."""
from __future__ import annotations

import logging
import re

import torch
from torch._dynamo.utils import counters

from frcnn.engine.launch import train


def test_a_compiled_multi_scale_run_compiles_once_per_bucket(tiny_cfg, tmp_path, caplog):
    # Two scales, landscape and portrait images, 1 to 3 objects per image: 8 batches of different content and up
    # to 4 buckets (2 scales x 2 orientations; batches are grouped by orientation).
    cfg = tiny_cfg("model.input.min_size=[96,128]", "dataset.shapes.num_train=16", "train.max_iters=8",
                   "train.compile=true", "train.compile_backend=aot_eager", "train.log_period=4")
    graphs_before = counters["stats"]["unique_graphs"]
    with caplog.at_level(logging.INFO, logger="frcnn"):
        train(cfg, tmp_path / "run")
    compiled = re.findall(r"compiled the training step for a batch of shape (\[[^\]]*\]) in [\d.]+ s", caplog.text)
    assert 2 <= len(compiled) <= 4, caplog.text
    assert len(set(compiled)) == len(compiled), f"a bucket compiled twice: {compiled}"
    for shape in compiled:
        height, width = eval(shape)[2:]  # a bucket: the drawn scale or max_size (160), padded to 32
        assert {height, width} <= {96, 128, 160}, shape
    # Every graph torch compiled is one of those: none for a new number of objects, none for eval (run eagerly).
    assert counters["stats"]["unique_graphs"] - graphs_before == len(compiled)
    losses = [float(v) for v in re.findall(r"iter \d+/8 +loss=([\d.]+)", caplog.text)]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
