"""frcnn-eval checkpoint=PATH [split=test] [dataset=... dataset.root=...] [model.roi.KEY=...]: evaluate a
checkpoint; prints the per-class table, writes metrics.json and detections.json into the run directory."""
from __future__ import annotations

from typing import Optional

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, run_console_script, run_dir, run_job


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="eval")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    from frcnn.engine.evaluate import evaluate_checkpoint
    from frcnn.evaluation.summary import primary_metric

    metrics = run_job(evaluate_checkpoint, cfg, run_dir())
    return primary_metric(metrics)


def main() -> Optional[float]:
    """The console script: under torchrun, one of the job's processes (rank 0 prints and writes)."""
    return run_console_script(hydra_main)


if __name__ == "__main__":
    main()
