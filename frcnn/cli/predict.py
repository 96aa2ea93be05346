"""frcnn-predict checkpoint=PATH input=FILE|DIR output=DIR [score_thresh=0.5]: draw the detections (class name and
score) onto copies of the images in output/, and write output/detections.json.

Image files that cannot be decoded are skipped (one warning names them) and the others are still written; the
command then ends with a one-line error saying how many were skipped, and exit status 1."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, run_job


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    from frcnn.engine.predict import predict

    run_job(predict, cfg)


if __name__ == "__main__":
    main()
