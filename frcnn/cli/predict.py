"""frcnn-predict checkpoint=PATH input=FILE|DIR output=DIR [score_thresh=0.5]: draw the detections (class name and
score) onto copies of the images in output/, and write output/detections.json.

Image files that cannot be decoded are skipped (one warning names them) and the others are still written; the
command then ends with a one-line error saying how many were skipped, and exit status 1."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, fail


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    from frcnn.data.errors import DataError
    from frcnn.engine.checkpoint import CheckpointError
    from frcnn.engine.predict import predict

    try:
        predict(cfg)
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        fail(error)


if __name__ == "__main__":
    main()
