"""``frcnn-predict``: detections on image files, drawn onto copies of the images, plus detections.json.

A file that cannot be read or decoded (e.g. a truncated JPEG) does not stop the others: it is skipped with one
warning naming every such file, the other images' drawings and detections.json are written, and then a
:class:`DataError` says how many were skipped (``frcnn-predict`` prints it and exits with status 1).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset

from frcnn.config_checks import check_predict_config
from frcnn.data.errors import DataError
from frcnn.data.loader import collate
from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.drawing import draw_detections
from frcnn.engine.inference import run_inference
from frcnn.engine.restore import checkpoint_config, given, load_trained_model
from frcnn.engine.runtime import check_amp, resolve_device
from frcnn.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("pytorch", "onnxruntime")  # frcnn-predict backend=...: the checkpoint's model, or an exported ONNX file
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}


def find_images(source) -> tuple[Path, List[Path]]:
    """(folder the names are relative to, image files): one file, or every image under a folder (sorted)."""
    source = Path(str(source)).expanduser()
    if source.is_file():
        return source.parent, [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"input={source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        return source, files
    raise ConfigError(f"input={source}: no such file or folder")


class ImageFiles(Dataset):
    """The decoded image files, as a dataset in the VOC results convention (``image_id`` = the file's name
    relative to the input folder, labels 1..K named by ``classes``), so ``to_coco_results`` writes
    detections.json. A file that cannot be decoded comes back as ``None``, its error kept in ``errors``
    (index -> message; filled in this process: predict's loader has no worker processes)."""

    format = "voc"

    def __init__(self, root: Path, files: List[Path], classes: List[str]):
        self.files = files
        self.classes = classes
        self.image_ids = [f.relative_to(root).as_posix() for f in files]
        self.errors: Dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from frcnn.data.decode import read_image

        try:
            return read_image(self.files[i]), {"index": i}
        except DataError as error:
            self.errors[i] = str(error)
            return None, {"index": i}


class SkipUndecoded(nn.Module):
    """The detector over the images of a batch that were decoded; the others (``None``) get no detections."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        decoded = [image for image in images if image is not None]
        outputs = iter(self.model(decoded) if decoded else [])
        return [next(outputs) if image is not None else _no_detections() for image in images]


def _no_detections() -> Dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}


def predict(cfg: DictConfig) -> list:
    """Run ``cfg.checkpoint`` over ``cfg.input``; write the drawn images (same relative names) and
    ``detections.json`` into ``cfg.output``. Returns the detections.json entries. Raises :class:`DataError` at the
    end, once the other images' results are written, if some image files could not be decoded."""
    check_predict_config(cfg)
    device = resolve_device(cfg.device)
    amp = check_amp(cfg.amp, device)
    model, train_cfg, path = _exported_model(cfg, device) if cfg.backend == "onnxruntime" else _model(cfg, device)

    output = Path(str(cfg.output))
    images = ImageFiles(*_input_files(cfg.input, output), list(train_cfg.dataset.classes))
    output.mkdir(parents=True, exist_ok=True)
    log.info("predicting %d images with %s on %s (%s)", len(images), path, device, cfg.backend)
    loader = DataLoader(images, batch_size=int(cfg.batch_size), shuffle=False, collate_fn=collate)
    detections = run_inference(SkipUndecoded(model), loader, device=device, amp=amp, progress=True, desc="predict")
    entries = _write_outputs(images, detections, output, float(cfg.score_thresh))
    if images.errors:
        raise DataError(f"{len(images.errors)} of {len(images)} images could not be decoded and were skipped (named "
                        f"in the warning above); the drawings and detections.json in {output} hold the other "
                        f"{len(images) - len(images.errors)}")
    return entries


def _model(cfg: DictConfig, device: torch.device):
    """(the checkpoint's detector on ``device``, its train config, its path): backend=pytorch."""
    if not cfg.checkpoint:
        raise ConfigError("no value given for checkpoint: set it on the command line, e.g. checkpoint=... (or run "
                          "an exported model: backend=onnxruntime exported=model.onnx)")
    path = Path(str(cfg.checkpoint)).expanduser()
    state = load_checkpoint(path)
    train_cfg = checkpoint_config(state, path, given(cfg.model))
    return load_trained_model(train_cfg, state, path, device), train_cfg, path


def _exported_model(cfg: DictConfig, device: torch.device):
    """(the ONNX model in onnxruntime, the train config stored in it, its path): backend=onnxruntime."""
    from frcnn.export.runtime import load_onnx_detector

    if not cfg.exported:
        raise ConfigError("backend=onnxruntime needs exported=PATH: the ONNX file frcnn-export wrote")
    if cfg.checkpoint:
        raise ConfigError(f"checkpoint={cfg.checkpoint} and backend=onnxruntime: the model is exported="
                          f"{cfg.exported}; give one of them (backend=pytorch runs the checkpoint)")
    overrides = given(cfg.model)
    if overrides:
        raise ConfigError(f"model.* overrides ({_dotted(overrides)}) cannot change an exported model: its settings "
                          "are part of the graph; export again with them: frcnn-export checkpoint=... "
                          f"{_dotted(overrides)}")
    if cfg.amp != "off":
        raise ConfigError(f"amp={cfg.amp} does not apply to backend=onnxruntime (the exported graph is float32): "
                          "use amp=off")
    model = load_onnx_detector(cfg.exported, device)
    return model, model.config, Path(str(cfg.exported)).expanduser()


def _dotted(overrides: dict, prefix: str = "model.") -> str:
    """``{"roi": {"score_thresh": 0.3}}`` -> ``model.roi.score_thresh=0.3`` (space-separated)."""
    return " ".join(_dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}={v}"
                    for k, v in overrides.items())


def _input_files(source, output: Path) -> tuple[Path, List[Path]]:
    root, files = find_images(source)
    files = [f for f in files if output.resolve() not in f.resolve().parents]  # not our own earlier drawings
    if not files:
        raise ConfigError(f"input={source}: no image files outside output={output}")
    return root, files


def _write_outputs(images: ImageFiles, detections: List[Dict], output: Path, thresh: float) -> list:
    """Drawings of the decoded images and detections.json, both with the detections scoring at least ``thresh``."""
    from frcnn.data.decode import read_image
    from frcnn.evaluation import to_coco_results, write_json

    if images.errors:
        log.warning("skipped %d of %d images that cannot be decoded: %s (first: %s)", len(images.errors),
                    len(images), ", ".join(images.image_ids[i] for i in sorted(images.errors)),
                    images.errors[min(images.errors)])
    kept = [{key: value[det["scores"] >= thresh] for key, value in det.items()} for det in detections]
    for index, (file, det) in enumerate(zip(images.files, kept)):
        if index not in images.errors:
            drawn = draw_detections(read_image(file), det, images.classes, score_thresh=thresh)
            _save_image(drawn, output / images.image_ids[index])
    entries = to_coco_results(images, kept)
    write_json(output / "detections.json", entries, indent=None)
    log.info("wrote %d detections of %d images to %s", len(entries), len(images) - len(images.errors), output)
    return entries


def _save_image(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).contiguous().numpy().astype(np.uint8)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=95)
    elif suffix in (".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"):
        Image.fromarray(array).save(path)
    else:  # e.g. gif: write a png next to it
        Image.fromarray(array).save(path.with_suffix(".png"))
