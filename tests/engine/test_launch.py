"""Setting a training run up from its config (frcnn.engine.launch)."""
from __future__ import annotations


def test_a_coco_run_parses_its_training_json_once(tmp_path, monkeypatch, tiny_cfg):
    """With dataset.classes empty the classes come from the training file: setting the run up must not parse that
    file twice (COCO's is 448 MB)."""
    import frcnn.data.coco as coco
    from frcnn.data.build import build_dataset
    from frcnn.engine.launch import build_trainer

    shapes = tiny_cfg(f"dataset.root={tmp_path / 'shapes'}")
    build_dataset(shapes.dataset, "train", train=False)  # generates the data, COCO json included
    split_keys = [f"dataset.{key}.{split}={value}" for split in ("train", "val", "test")
                  for key, value in (("ann_file", f"annotations/{split}.json"), ("img_dir", "JPEGImages"))]
    cfg = tiny_cfg("dataset=coco_custom", f"dataset.root={tmp_path / 'shapes'}", *split_keys, "dataset.metric=coco")
    loaded = []
    load = coco.load_coco_json
    monkeypatch.setattr(coco, "load_coco_json", lambda path: loaded.append(str(path)) or load(path))
    monkeypatch.setattr(coco, "_CATEGORIES", {})
    trainer = build_trainer(cfg, tmp_path / "run")
    assert list(cfg.dataset.classes) == ["circle", "square", "triangle"]
    assert sum(path.endswith("train.json") for path in loaded) == 1, loaded
    for hook in trainer.hooks:
        hook.close()
