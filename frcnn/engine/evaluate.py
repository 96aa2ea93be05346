"""Re-evaluating a checkpoint (``frcnn-eval``) and the helpers that rebuild a model from its checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from frcnn.config import DatasetConfig, TrainAppConfig
from frcnn.config_checks import check_eval_config, check_train_config
from frcnn.engine.checkpoint import CheckpointError, check_model_state, load_checkpoint
from frcnn.engine.inference import run_inference
from frcnn.engine.logs import log
from frcnn.evaluation.summary import summary_metrics
from frcnn.engine.runtime import check_amp, resolve_device
from frcnn.errors import ConfigError


def given(node) -> Dict[str, Any]:
    """The values set in an override slot (see ``frcnn.config._override_slots``): None leaves dropped."""
    if node is None:
        return {}
    container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    def prune(value):
        if isinstance(value, dict):
            kept = {k: prune(v) for k, v in value.items()}
            return {k: v for k, v in kept.items() if v is not None and v != {}}
        return value

    return prune(container) if isinstance(container, dict) else {}


def _merge(base, overrides: Dict[str, Any], what: str):
    try:
        return OmegaConf.merge(base, overrides)
    except Exception as error:  # omegaconf's ValidationError / ConfigKeyError name the key
        raise ConfigError(f"invalid {what} override: {error}") from None


def checkpoint_config(state: dict, path, model_overrides: Optional[Dict[str, Any]] = None) -> DictConfig:
    """The train config stored in a checkpoint, typed by the schema, with ``model.*`` overrides applied."""
    stored = state.get("config")
    if not isinstance(stored, dict) or not stored:
        raise CheckpointError(f"{path} holds no config: it was not written by frcnn-train")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainAppConfig), stored)
    except Exception as error:
        raise CheckpointError(f"the config stored in {path} does not fit this version's schema: {error}") from None
    if model_overrides:
        cfg.model = _merge(cfg.model, model_overrides, "model")
    if not list(cfg.dataset.classes):
        raise CheckpointError(f"the config stored in {path} has no dataset.classes")
    return cfg


def load_trained_model(cfg: DictConfig, state: dict, path, device: torch.device) -> torch.nn.Module:
    """The detector of a train config with the checkpoint's weights, on ``device``, in eval mode."""
    from frcnn.modeling.build import build_model

    model = build_model(cfg)
    check_model_state(state["model"], model, path)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def eval_dataset_config(train_cfg: DictConfig, overrides: Dict[str, Any]) -> DictConfig:
    """The checkpoint's dataset config, or another one: ``dataset=<group>`` (which sets ``name``) starts from the
    schema's defaults, single ``dataset.KEY=...`` change the checkpoint's. Classes are always the model's."""
    classes = list(train_cfg.dataset.classes)
    base = OmegaConf.structured(DatasetConfig) if "name" in overrides else train_cfg.dataset.copy()
    ds = _merge(base, overrides, "dataset")
    if list(ds.classes) and list(ds.classes) != classes:
        raise ConfigError(f"dataset.classes {list(ds.classes)} differ from the classes the checkpoint was trained "
                         f"on {classes}: leave dataset.classes empty to evaluate with the model's classes")
    ds.classes = classes
    return ds


def evaluate_checkpoint(cfg: DictConfig, run_dir) -> dict:
    """``frcnn-eval``: evaluate ``cfg.checkpoint`` on ``cfg.split``; writes metrics.json and detections.json to
    ``run_dir``, prints the per-class table, returns the metrics."""
    from frcnn.data.build import build_dataset, build_test_loader
    from frcnn.evaluation import evaluate_dataset, format_table, to_coco_results, write_json

    check_eval_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = Path(str(cfg.checkpoint)).expanduser()
    state = load_checkpoint(path)
    train_cfg = checkpoint_config(state, path, given(cfg.model))
    ds_cfg = eval_dataset_config(train_cfg, given(cfg.dataset))
    with open_dict(train_cfg):
        train_cfg.dataset = ds_cfg
    check_train_config(train_cfg)  # the given model.* / dataset.* keys against the checkpoint's other values
    classes = list(ds_cfg.classes)

    device = resolve_device(cfg.device)
    amp = check_amp(cfg.amp, device)
    model = load_trained_model(train_cfg, state, path, device)
    log.info("checkpoint %s (iteration %s, %s, %d classes) on %s", path, state.get("iteration"),
             train_cfg.backbone.name, len(classes), device)
    del state

    dataset = build_dataset(ds_cfg, str(cfg.split), train=False, loader_cfg=cfg.loader)
    loader = build_test_loader(dataset, batch_size=int(cfg.batch_size), loader_cfg=cfg.loader)
    log.info("evaluating on %s (%d images), metric %s", getattr(dataset, "name", cfg.split), len(dataset),
             ds_cfg.metric)
    detections = run_inference(model, loader, device=device, amp=amp, progress=True)
    metrics = evaluate_dataset(dataset, detections, str(ds_cfg.metric))
    table = format_table(metrics, classes)
    print(table, flush=True)
    log.info("%s", ", ".join(f"{k}={v:.4f}" for k, v in summary_metrics(metrics).items()))
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "detections.json", to_coco_results(dataset, detections), indent=None)
    log.info("wrote %s and %s", run_dir / "metrics.json", run_dir / "detections.json")
    return metrics
