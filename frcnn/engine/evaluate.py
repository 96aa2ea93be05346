"""``frcnn-eval``: a checkpoint evaluated on a split of its dataset, or of another one with the same classes."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

from frcnn.config_checks import check_eval_config, check_train_config
from frcnn.engine.checkpoint import load_checkpoint
from frcnn.engine.distributed import DistEnv, env_from, init_process_group, shutdown
from frcnn.engine.inference import run_inference
from frcnn.engine.logs import log
from frcnn.engine.restore import checkpoint_config, eval_dataset_config, given, load_trained_model
from frcnn.engine.runtime import check_amp, resolve_device
from frcnn.evaluation.summary import summary_metrics


def evaluate_checkpoint(cfg: DictConfig, run_dir) -> dict:
    """``frcnn-eval``: evaluate ``cfg.checkpoint`` on ``cfg.split``; writes metrics.json and detections.json to
    ``run_dir``, prints the per-class table, returns the metrics.

    Under torchrun each rank runs its share of the batches and rank 0 scores the gathered detections, exactly as one
    process would, and is the only one to print and write (the other ranks return ``{}``)."""
    check_eval_config(cfg)
    env = env_from()
    device = init_process_group(env, resolve_device(cfg.device))
    try:
        return _evaluate(cfg, Path(run_dir), device, env)
    finally:
        shutdown()


def _evaluate(cfg: DictConfig, run_dir: Path, device, env: DistEnv) -> dict:
    from frcnn.data.build import build_dataset, build_test_loader
    from frcnn.evaluation import evaluate_dataset, format_table, to_coco_results, write_json

    model, ds_cfg = _trained_model(cfg, device)
    dataset = build_dataset(ds_cfg, str(cfg.split), train=False, loader_cfg=cfg.loader)
    if env.rank == 0:  # every header once, not once per rank (the others wait for rank 0 in the gather)
        dataset.check_images()
    loader = build_test_loader(dataset, batch_size=int(cfg.batch_size), loader_cfg=cfg.loader, rank=env.rank,
                               world_size=env.world_size)
    log.info("evaluating on %s (%d images), metric %s", getattr(dataset, "name", cfg.split), len(dataset),
             ds_cfg.metric)
    detections = run_inference(model, loader, device=device, amp=check_amp(cfg.amp, device), progress=True)
    if detections is None:  # another rank: rank 0 scores and writes
        return {}
    metrics = evaluate_dataset(dataset, detections, str(ds_cfg.metric))
    print(format_table(metrics, list(ds_cfg.classes)), flush=True)
    log.info("%s", ", ".join(f"{k}={v:.4f}" for k, v in summary_metrics(metrics).items()))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "detections.json", to_coco_results(dataset, detections), indent=None)
    log.info("wrote %s and %s", run_dir / "metrics.json", run_dir / "detections.json")
    return metrics


def _trained_model(cfg: DictConfig, device):
    """The checkpoint's model on ``device`` and the dataset config to evaluate it on."""
    path = Path(str(cfg.checkpoint)).expanduser()
    state = load_checkpoint(path)
    train_cfg = checkpoint_config(state, path, given(cfg.model))
    ds_cfg = eval_dataset_config(train_cfg, given(cfg.dataset))
    with open_dict(train_cfg):
        train_cfg.dataset = ds_cfg
    check_train_config(train_cfg)  # the given model.* / dataset.* keys against the checkpoint's other values
    check_amp(cfg.amp, device)
    model = load_trained_model(train_cfg, state, path, device)
    log.info("checkpoint %s (iteration %s, %s, %d classes) on %s", path, state.get("iteration"),
             train_cfg.backbone.name, len(ds_cfg.classes), device)
    return model, ds_cfg
