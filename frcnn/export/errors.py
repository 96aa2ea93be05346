"""What frcnn-export and the exported-model backends refuse, with the reason: a missing optional extra, a file of
the other kind (an exported model given as a checkpoint, or the reverse), a model option the export cannot
express."""
from __future__ import annotations

import importlib
from pathlib import Path

from frcnn.errors import ConfigError, FrcnnError

# ROI poolers the exported graph can express, and the standard ONNX operator each becomes (frcnn.export.onnx_ops and
# onnxscript's torch_lib translate them; the export tests check them against torchvision's kernels).
EXPORTABLE_POOLERS = {"align": "RoiAlign, coordinate_transformation_mode=half_pixel", "pool": "MaxRoiPool"}
# Packages of the optional extra `frcnn[export]` (pyproject.toml) each use needs.
EXTRA_PACKAGES = {"onnx": ("onnx", "onnxscript"), "torch_export": (), "onnxruntime": ("onnxruntime",)}


class ExportError(FrcnnError, RuntimeError):
    """An exported model that cannot be written or used: a missing extra, a file of another kind."""


def require_extra(use: str) -> None:
    """Refuse ``use`` (a format or backend) when a package it needs is not installed, naming them and the extra."""
    missing = []
    for package in EXTRA_PACKAGES[use]:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        key = "backend" if use == "onnxruntime" else "format"
        raise ExportError(f"{key}={use} needs the package(s) {', '.join(missing)}, which are not installed: "
                          "pip install 'frcnn[export]'")


def refuse_exported_file(path: Path, key: str) -> None:
    """``key=path`` must be a training checkpoint: an ONNX model or a .pt2 program is named as such."""
    if path.suffix.lower() in (".onnx", ".pt2") and path.is_file():
        kind = "an ONNX model" if path.suffix.lower() == ".onnx" else "a torch.export program"
        raise ExportError(f"{key}={path} is {kind}, not a training checkpoint: give the checkpoint frcnn-train "
                          "wrote (RUN/checkpoints/last.pt or best.pt)")


def check_exportable(cfg) -> None:
    """Refuse model options the exported graph cannot express, naming the key and why."""
    pooler = str(cfg.model.roi.pooler)
    if pooler not in EXPORTABLE_POOLERS:
        known = "; ".join(f"{name} -> {op}" for name, op in EXPORTABLE_POOLERS.items())
        raise ConfigError(f"model.roi.pooler={pooler} cannot be exported: ROI pooling must become a standard ONNX "
                          f"operator, and only these poolers have one ({known})")
