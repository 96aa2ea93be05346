"""frcnn-train [overrides]: train a detector; the run directory is Hydra's (hydra.run.dir, one per job with -m).

Returns the final metric (mAP, or AP for COCO) so Hydra sweepers can optimise it.
"""
from __future__ import annotations

from typing import Optional

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, run_console_script, run_dir, run_job


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="train")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    from frcnn.engine.launch import train
    from frcnn.evaluation.summary import primary_metric

    metrics = run_job(train, cfg, run_dir())
    return primary_metric(metrics)


def main() -> Optional[float]:
    """The console script: under torchrun, one of the job's processes (see frcnn.engine.distributed)."""
    return run_console_script(hydra_main)


if __name__ == "__main__":
    main()
