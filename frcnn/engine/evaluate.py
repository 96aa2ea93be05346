"""``frcnn-eval``: a checkpoint evaluated on a split of its dataset, or of another one with the same classes."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

from frcnn.config_checks import check_eval_config, check_train_config
from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.inference import run_inference
from frcnn.engine.logs import log
from frcnn.engine.restore import checkpoint_config, eval_dataset_config, given, load_trained_model
from frcnn.engine.runtime import check_amp, resolve_device
from frcnn.evaluation.summary import summary_metrics


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
    dataset.check_images()
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
