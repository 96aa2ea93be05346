"""The CPU demo's promise, end to end: `experiment=shapes` trained as shipped, then evaluated on the held-out
test split (images it never saw), detects. Slow: about 10 minutes on 2 CPU cores.

The shipped recipe measured test mAP 0.871 (val 0.894) on this machine with flips and samples keyed per image (the
random draws that make 1 and N processes train the same model); 0.905 (val 0.929) with the former random streams, and
0.912 / 0.914 before the NHWC memory format and the fused SGD kernel (the same arithmetic, rounded in another
order). Runs are bit-identical under different machine load: seeded data order, flips, sampling and multi-scale draws
make them deterministic.
The figures vary with the CPU (another vector unit orders the reductions differently): a machine of the same kind
with an AMD EPYC (no AMX) measured test 0.899, val 0.897. The test holds the demo's promise, that the model
detects, with a margin below that range (0.87-0.91 so far): test mAP > 0.85."""
from __future__ import annotations

import pytest

from frcnn.engine.launch import train

from helpers import compose_config, metrics_on_test_split


@pytest.mark.slow
@pytest.mark.timeout(1200)  # about 8 minutes alone on 2 cores; the default 600 s left no room for a busy machine
def test_shapes_demo_detects_on_the_test_split(tmp_path):
    cfg = compose_config(["experiment=shapes", f"dataset.root={tmp_path / 'shapes'}", "train.progress_bar=false",
                          "train.checkpoint_period=0"])
    val_metrics = train(cfg, tmp_path / "run")
    assert val_metrics["mAP"] > 0.85, val_metrics

    metrics = metrics_on_test_split(cfg, tmp_path / "run/checkpoints/last.pt")
    print(f"shapes demo recipe: val mAP {val_metrics['mAP']:.4f}, test mAP {metrics['mAP']:.4f}")
    assert metrics["mAP"] > 0.85, metrics
