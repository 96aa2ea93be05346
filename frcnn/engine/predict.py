"""``frcnn-predict``: detections on image files, drawn onto copies of the images, plus detections.json."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.restore import checkpoint_config, given, load_trained_model
from frcnn.engine.inference import run_inference
from frcnn.engine.drawing import draw_detections
from frcnn.engine.logs import log
from frcnn.engine.runtime import check_amp, resolve_device

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}


def find_images(source) -> tuple[Path, List[Path]]:
    """(folder the names are relative to, image files): one file, or every image under a folder (sorted)."""
    source = Path(str(source)).expanduser()
    if source.is_file():
        return source.parent, [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"input={source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        return source, files
    raise FileNotFoundError(f"input={source}: no such file or folder")


class ImageFiles(Dataset):
    def __init__(self, files: List[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from frcnn.data.decode import read_image

        return read_image(self.files[i]), {"index": i}


def _collate(batch):
    images, targets = zip(*batch)
    return list(images), list(targets)


def predict(cfg: DictConfig) -> list:
    """Run ``cfg.checkpoint`` over ``cfg.input``; write the drawn images (same relative names) and
    ``detections.json`` into ``cfg.output``. Returns the detections.json entries."""
    from frcnn.evaluation import write_json

    path = Path(str(cfg.checkpoint)).expanduser()
    state = load_checkpoint(path)
    train_cfg = checkpoint_config(state, path, given(cfg.model))
    classes = list(train_cfg.dataset.classes)
    device = resolve_device(cfg.device)
    amp = check_amp(cfg.amp, device)
    model = load_trained_model(train_cfg, state, path, device)
    del state

    root, files = find_images(cfg.input)
    output = Path(str(cfg.output))
    out_abs = output.resolve()
    files = [f for f in files if out_abs not in f.resolve().parents]  # not our own earlier drawings
    if not files:
        raise FileNotFoundError(f"input={cfg.input}: no image files outside output={output}")
    output.mkdir(parents=True, exist_ok=True)
    log.info("predicting %d images with %s on %s", len(files), path, device)
    loader = DataLoader(ImageFiles(files), batch_size=int(cfg.batch_size), shuffle=False, collate_fn=_collate)
    detections = run_inference(model, loader, device=device, amp=amp, progress=True, desc="predict")

    thresh = float(cfg.score_thresh)
    entries = []
    for file, det in zip(files, detections):
        relative = file.relative_to(root)
        keep = det["scores"] >= thresh
        boxes, labels, scores = det["boxes"][keep], det["labels"][keep], det["scores"][keep]
        for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            x1, y1, x2, y2 = box
            entries.append({
                "image_id": relative.as_posix(),
                "category_id": int(label),
                "category": classes[int(label) - 1],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
            })
        from frcnn.data.decode import read_image

        drawn = draw_detections(read_image(file), det, classes, score_thresh=thresh)
        _save_image(drawn, output / relative)
    write_json(output / "detections.json", entries, indent=None)
    log.info("wrote %d detections of %d images to %s", len(entries), len(files), output)
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
