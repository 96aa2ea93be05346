"""frcnn-eval checkpoint=PATH [split=test] [dataset=... dataset.root=...] [model.roi.KEY=...]: evaluate a
checkpoint; prints the per-class table, writes metrics.json and detections.json into the run directory."""
from __future__ import annotations

from typing import Optional

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, fail, run_dir


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> Optional[float]:
    from frcnn.data.errors import DataError
    from frcnn.engine.checkpoint import CheckpointError
    from frcnn.engine.evaluate import evaluate_checkpoint
    from frcnn.engine.logger import primary_metric

    try:
        metrics = evaluate_checkpoint(cfg, run_dir())
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        fail(error)
    return primary_metric(metrics)


if __name__ == "__main__":
    main()
