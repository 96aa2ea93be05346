"""``frcnn-export``: a trained checkpoint as an ONNX model or a ``torch.export`` program (``.pt2``).

Both files hold the graph of :mod:`frcnn.export.graph` (same inputs and outputs) and the checkpoint's config as
JSON (:data:`METADATA_KEY`: ONNX metadata property, or an extra file of the ``.pt2`` archive), so the classes and
the input sizes travel with the model and ``frcnn-predict backend=onnxruntime`` needs nothing else.

Both go through one ``torch.export`` program, traced in eval mode on the CPU. Under export (as under
``torch.compile``) the detector takes its static paths: fixed-point NMS (:mod:`frcnn.modeling.nms`) and one
``roi_align`` / ``roi_pool`` call. ONNX comes from torch's dynamo exporter at :data:`OPSET`, which maps
``torchvision::roi_align`` to ``RoiAlign`` (``coordinate_transformation_mode=half_pixel`` for ``aligned=True``,
opset 16+) and ``roi_pool`` to ``MaxRoiPool``; the graph holds standard ONNX operators only.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from frcnn.export.errors import check_exportable, refuse_exported_file, require_extra
from frcnn.export.graph import INPUT_NAMES, OUTPUT_NAMES, ExportableDetector, dynamic_shapes, example_inputs

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torch_export")
SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}
OPSET = 18
METADATA_KEY = "frcnn.config"  # the checkpoint's train config, as JSON


def export_checkpoint(cfg: DictConfig) -> Path:
    """``frcnn-export``: write ``cfg.checkpoint``'s model in ``cfg.format`` to ``cfg.output``; returns the path."""
    from frcnn.config_checks import check_export_config, check_train_config
    from frcnn.engine.checkpoint import load_checkpoint
    from frcnn.engine.restore import checkpoint_config, given, load_trained_model

    check_export_config(cfg)
    require_extra(str(cfg.format))
    path = Path(str(cfg.checkpoint)).expanduser()
    refuse_exported_file(path, "checkpoint")
    state = load_checkpoint(path)
    train_cfg = checkpoint_config(state, path, given(cfg.model))
    check_train_config(train_cfg)
    check_exportable(train_cfg)
    model = load_trained_model(train_cfg, state, path, torch.device("cpu"))
    output = output_path(cfg)
    start = time.perf_counter()
    program = export_program(model)
    metadata = json.dumps(OmegaConf.to_container(train_cfg, resolve=True))
    if cfg.format == "onnx":
        write_onnx(program, output, metadata)
    else:
        write_program(program, output, metadata)
    log.info("exported %s (iteration %s, %s, %d classes) to %s (%s) in %.1f s", path, state.get("iteration"),
             train_cfg.backbone.name, len(train_cfg.dataset.classes), output, cfg.format, time.perf_counter() - start)
    return output


def output_path(cfg: DictConfig) -> Path:
    """``cfg.output``, or ``model.onnx`` / ``model.pt2`` (by format) when it is empty."""
    return Path(str(cfg.output or f"model{SUFFIXES[str(cfg.format)]}")).expanduser()


def export_program(model: torch.nn.Module) -> torch.export.ExportedProgram:
    """The detector traced by ``torch.export`` with a dynamic batch size and canvas (:mod:`frcnn.export.graph`)."""
    wrapper = ExportableDetector(model)
    preprocessor = model.preprocessor
    with torch.no_grad():
        return torch.export.export(wrapper, example_inputs(preprocessor), dynamic_shapes=dynamic_shapes(preprocessor),
                                   strict=False)


def write_onnx(program: torch.export.ExportedProgram, output: Path, metadata: str) -> None:
    from frcnn.export.onnx_ops import translation_table

    onnx_program = torch.onnx.export(program, dynamo=True, opset_version=OPSET, input_names=list(INPUT_NAMES),
                                     output_names=list(OUTPUT_NAMES), custom_translation_table=translation_table(),
                                     verbose=False)
    onnx_program.model.metadata_props[METADATA_KEY] = metadata
    _replace(output, lambda tmp: onnx_program.save(str(tmp)))


def write_program(program: torch.export.ExportedProgram, output: Path, metadata: str) -> None:
    _replace(output, lambda tmp: torch.export.save(program, str(tmp), extra_files={METADATA_KEY: metadata}))


def _replace(output: Path, write) -> None:
    """``write(tmp)`` next to ``output``, then rename it over ``output``: a failed export leaves no half file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp{output.suffix}")  # torch.export.save wants its .pt2 suffix
    try:
        write(tmp)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
