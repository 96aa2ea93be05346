"""frcnn-export checkpoint=PATH [format=onnx|torch_export] [output=FILE] [model.KEY=...]: write a trained checkpoint
as an ONNX model or a torch.export program (.pt2); see frcnn.export."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.cli._common import CONFIG_PATH, run_job


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    from frcnn.export.writer import export_checkpoint

    run_job(export_checkpoint, cfg)


if __name__ == "__main__":
    main()
