"""Every config group choice composes (train, eval, predict), typos fail naming the key, and the configs are
what the installed package ships."""
from __future__ import annotations

import importlib.resources
import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import frcnn  # noqa: F401
from frcnn.engine.restore import checkpoint_config, eval_dataset_config, given

from helpers import CONF_DIR

CONF = Path(CONF_DIR)


def _choices(group: str) -> list:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


BACKBONES = _choices("backbone")
DATASETS = _choices("dataset")
EXPERIMENTS = [None, *_choices("experiment")]


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        yield


def _error_text(error: BaseException) -> str:
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def test_the_public_choices_exist():
    assert set(BACKBONES) >= {"vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    assert set(EXPERIMENTS) >= {None, "shapes", "voc07_vgg16", "voc07_resnet101", "coco_resnet101"}
    assert "shapes" in DATASETS


def _combinations(full: bool):
    if full:
        return itertools.product(BACKBONES, DATASETS, EXPERIMENTS)
    # every backbone and every dataset with every experiment (the groups do not touch each other's keys)
    return [(b, "shapes", e) for b in BACKBONES for e in EXPERIMENTS] + [
        ("vgg16", d, e) for d in DATASETS for e in EXPERIMENTS]


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["pairs", "all"])
def test_every_backbone_dataset_experiment_combination_composes(hydra_conf, full):
    for backbone, dataset, experiment in _combinations(full):
        overrides = [f"backbone={backbone}", f"dataset={dataset}", "dataset.root=/data/x"]
        if experiment:
            overrides.append(f"experiment={experiment}")
        cfg = compose("train", overrides=overrides)
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        assert plain["backbone"]["name"] == backbone, overrides  # the command line wins over the experiment
        assert plain["dataset"]["name"] == dataset, overrides
        assert plain["train"]["amp"] in ("off", "fp16", "bf16")


@pytest.mark.parametrize("experiment", EXPERIMENTS[1:])
def test_experiments_pick_their_own_groups(hydra_conf, experiment):
    cfg = compose("train", overrides=[f"experiment={experiment}"])
    expected = {"shapes": ("resnet18", "shapes"), "voc07_vgg16": ("vgg16", "voc07"),
                "voc07_resnet101": ("resnet101", "voc07"), "coco_resnet101": ("resnet101", "coco")}
    if experiment in expected:
        assert (cfg.backbone.name, cfg.dataset.name) == expected[experiment]
    steps, max_iters = list(cfg.train.steps), cfg.train.max_iters
    assert all(0 < s < max_iters for s in steps)


def test_voc_recipes_follow_jwyang(hydra_conf):
    for name in ("voc07_vgg16", "voc07_resnet101"):
        cfg = compose("train", overrides=[f"experiment={name}"])
        assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.batch_size == 1
        assert list(cfg.train.steps) == [50000] and cfg.train.max_iters == 70000


@pytest.mark.parametrize("dataset", [None, *DATASETS])
def test_eval_config_composes_with_every_dataset(hydra_conf, dataset):
    overrides = ["checkpoint=x.pt", "model.roi.score_thresh=0.0", "model.input.min_size=[800]"]
    if dataset:
        overrides += [f"dataset={dataset}", "dataset.root=/somewhere"]
    cfg = compose("eval", overrides=overrides)
    assert given(cfg.model) == {"roi": {"score_thresh": 0.0}, "input": {"min_size": [800]}}
    if dataset:
        assert given(cfg.dataset)["name"] == dataset and given(cfg.dataset)["root"] == "/somewhere"
    else:
        assert given(cfg.dataset) == {}


def test_predict_config_composes(hydra_conf):
    cfg = compose("predict", overrides=["checkpoint=x.pt", "input=imgs", "output=out", "model.roi.nms_thresh=0.5"])
    assert cfg.output == "out" and given(cfg.model) == {"roi": {"nms_thresh": 0.5}}


@pytest.mark.parametrize("config,override,key", [
    ("train", "train.lrr=0.1", "train.lrr"),
    ("train", "model.rpn.nms_tresh=0.5", "model.rpn.nms_tresh"),
    ("train", "datset.root=/x", "datset"),
    ("eval", "model.roi.scor_thresh=0.0", "model.roi.scor_thresh"),
    ("eval", "dataset.rot=/x", "dataset.rot"),
    ("predict", "score_tresh=0.3", "score_tresh"),
])
def test_a_misspelled_key_fails_naming_it(hydra_conf, config, override, key):
    required = {"train": [], "eval": ["checkpoint=x"], "predict": ["checkpoint=x", "input=y"]}[config]
    with pytest.raises(ConfigCompositionException) as info:
        compose(config, overrides=[*required, override])
    assert key in _error_text(info.value)


def test_a_wrong_type_fails_naming_the_key(hydra_conf):
    with pytest.raises(Exception) as info:
        compose("train", overrides=["train.max_iters=lots"])
    assert "max_iters" in _error_text(info.value)


def test_eval_overrides_are_typed_when_merged_onto_the_checkpoint_config(hydra_conf):
    train_cfg = compose("train", overrides=["dataset=shapes", "dataset.root=/data/shapes"])
    stored = OmegaConf.to_container(train_cfg, resolve=True)
    stored["dataset"]["classes"] = ["circle", "square", "triangle"]
    cfg = checkpoint_config({"config": stored}, "x.pt", {"roi": {"score_thresh": 0.0}})
    assert cfg.model.roi.score_thresh == 0.0 and cfg.model.roi.nms_thresh == train_cfg.model.roi.nms_thresh
    with pytest.raises(ValueError, match="score_thresh"):
        checkpoint_config({"config": stored}, "x.pt", {"roi": {"score_thresh": "high"}})
    # single dataset keys change the checkpoint's dataset; a group starts from that group
    ds = eval_dataset_config(cfg, {"root": "/elsewhere"})
    assert ds.root == "/elsewhere" and ds.name == "shapes" and list(ds.classes) == stored["dataset"]["classes"]
    eval_cfg = compose("eval", overrides=["checkpoint=x", "dataset=voc_custom", "dataset.root=/voc"])
    ds = eval_dataset_config(cfg, given(eval_cfg.dataset))
    assert ds.name == "voc_custom" and ds.root == "/voc" and list(ds.classes) == stored["dataset"]["classes"]
    with pytest.raises(ValueError, match="classes"):
        eval_dataset_config(cfg, {"classes": ["cat", "dog"]})


def test_the_configs_ship_in_the_package():
    """frcnn.conf (frcnn/conf -> conf/) holds every yaml file of conf/, and pyproject's package-data globs
    (*.yaml, */*.yaml, */*/*.yaml) reach them all (no deeper folders)."""
    package = importlib.resources.files("frcnn.conf")
    for path in CONF.rglob("*.yaml"):
        relative = path.relative_to(CONF)
        assert len(relative.parts) <= 3, f"{relative}: pyproject's package-data globs only reach two folders down"
        assert package.joinpath(*relative.parts).is_file(), relative
    pyproject = (CONF.parent / "pyproject.toml").read_text()
    assert '"frcnn.conf" = ["*.yaml", "*/*.yaml", "*/*/*.yaml"]' in pyproject
    for script in ("frcnn-train", "frcnn-eval", "frcnn-predict"):
        assert f'{script} = "frcnn.cli.' in pyproject
