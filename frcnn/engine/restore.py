"""A trained model back from its checkpoint: the stored train config (with test-time overrides) and the weights.

Used by ``frcnn-eval`` (another split or dataset) and ``frcnn-predict``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from frcnn.config import DatasetConfig, TrainAppConfig
from frcnn.engine.checkpoint import CheckpointError, check_model_state
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

    model = build_model(cfg, start_weights=False)  # model.weights only started the training
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
