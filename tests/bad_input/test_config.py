"""Config values out of range are refused before anything is built, every problem at once, naming the key, the
value and what is allowed (frcnn.config_checks); every shipped config passes."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.config import TrainAppConfig
from frcnn.config_checks import check_eval_config, check_predict_config, check_train_config, train_rules
from frcnn.errors import ConfigError

from helpers import CONF_DIR

CONF = Path(CONF_DIR)
REQUIRED = {"train": [], "eval": ["checkpoint=x.pt"], "predict": ["checkpoint=x.pt", "input=images"]}
CHECKS = {"train": check_train_config, "eval": check_eval_config, "predict": check_predict_config}


def _choices(group: str) -> list:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        yield


def _problems(config: str, overrides) -> list:
    """The problems the check of ``config`` composed with ``overrides`` reports ([] when it passes)."""
    cfg = compose(config, overrides=[*REQUIRED[config], *overrides])
    try:
        CHECKS[config](cfg)
    except ConfigError as error:
        return error.problems
    return []


# One bad value per rule (and per rule across keys): the exact line the user sees.
TRAIN_CASES = [
    ("device=gpu", "device=gpu is not allowed: must be auto, cpu, cuda or cuda:N"),
    ("backbone.name=resnet", "backbone.name=resnet is not allowed: must be one of vgg16, resnet18, resnet34, "
                             "resnet50, resnet101, resnet152, resnet18_fpn, resnet34_fpn, resnet50_fpn, "
                             "resnet101_fpn, resnet152_fpn"),
    ("model.input.resize_rounding=ceil", "model.input.resize_rounding=ceil is not allowed: must be one of round, "
                                         "floor"),
    ("model.anchor.sizes=[32,0]", "model.anchor.sizes=[32.0, 0.0] is out of range: must be a list of values, "
                                  "each > 0"),
    ("model.rpn.conv_depth=0", "model.rpn.conv_depth=0 is out of range: must be >= 1"),
    ("model.fpn.channels=0", "model.fpn.channels=0 is out of range: must be >= 1"),
    ("model.fpn.norm=gn", "model.fpn.norm=gn is not allowed: must be one of none, bn, sync_bn, frozen_bn"),
    ("model.fpn.box_head=mlp", "model.fpn.box_head=mlp is not allowed: must be one of two_fc, conv4_fc"),
    ("model.fpn.representation_size=0", "model.fpn.representation_size=0 is out of range: must be >= 1"),
    ("backbone.norm=ln", "backbone.norm=ln is not allowed: must be one of frozen_bn, bn, sync_bn, gn"),
    ("backbone.freeze_at=-2", "backbone.freeze_at=-2 is out of range: must be >= -1 (-1 = the backbone's default)"),
    ("backbone.width=0", "backbone.width=0.0 is out of range: must be > 0"),
    ("model.input.min_size=[]", "model.input.min_size=[] is out of range: must be a non-empty list of values, "
                                "each >= 32"),
    ("model.input.min_size=[600,16]", "model.input.min_size=[600, 16] is out of range: must be a non-empty list of "
                                      "values, each >= 32"),
    ("model.input.max_size=0", "model.input.max_size=0 is out of range: must be >= 32"),
    ("model.input.pixel_mean=[0.5,0.5]", "model.input.pixel_mean=[0.5, 0.5] is out of range: must be a list of 3 "
                                         "finite values"),
    ("model.input.pixel_std=[0.2,0,0.2]", "model.input.pixel_std=[0.2, 0.0, 0.2] is out of range: must be a list "
                                          "of 3 values, each > 0"),
    ("model.input.size_divisible=0", "model.input.size_divisible=0 is out of range: must be >= 1"),
    ("model.anchor.scales=[8,-16]", "model.anchor.scales=[8.0, -16.0] is out of range: must be a non-empty list of "
                                    "values, each > 0"),
    ("model.anchor.ratios=[]", "model.anchor.ratios=[] is out of range: must be a non-empty list of values, each > 0"),
    ("model.anchor.stride=8", "model.anchor.stride=8 is out of range: must be 16 (the stride of every backbone's "
                              "trunk)"),
    ("model.anchor.offset=1", "model.anchor.offset=1.0 is out of range: must be in [0, 1)"),
    ("model.rpn.fg_iou_thresh=1.2", "model.rpn.fg_iou_thresh=1.2 is out of range: must be in [0, 1]"),
    ("model.rpn.bg_iou_thresh=-0.1", "model.rpn.bg_iou_thresh=-0.1 is out of range: must be in [0, 1]"),
    ("model.rpn.batch_size_per_image=0", "model.rpn.batch_size_per_image=0 is out of range: must be >= 1"),
    ("model.rpn.positive_fraction=1.5", "model.rpn.positive_fraction=1.5 is out of range: must be in [0, 1]"),
    ("model.rpn.nms_thresh=2", "model.rpn.nms_thresh=2.0 is out of range: must be in (0, 1]"),
    ("model.rpn.nms_thresh=0", "model.rpn.nms_thresh=0.0 is out of range: must be in (0, 1]"),
    ("model.rpn.nms_thresh=nan", "model.rpn.nms_thresh=nan is not finite: must be in (0, 1]"),
    ("model.rpn.min_size=-1", "model.rpn.min_size=-1.0 is out of range: must be >= 0"),
    ("model.rpn.pre_nms_top_n.train=0", "model.rpn.pre_nms_top_n.train=0 is out of range: must be >= 1"),
    ("model.rpn.pre_nms_top_n.test=-5", "model.rpn.pre_nms_top_n.test=-5 is out of range: must be >= 1"),
    ("model.rpn.post_nms_top_n.train=0", "model.rpn.post_nms_top_n.train=0 is out of range: must be >= 1"),
    ("model.rpn.post_nms_top_n.test=0", "model.rpn.post_nms_top_n.test=0 is out of range: must be >= 1"),
    ("model.rpn.allowed_border=inf", "model.rpn.allowed_border=inf is not finite: must be a finite number "
                                     "(negative = no border filter)"),
    ("model.rpn.smooth_l1_sigma=0", "model.rpn.smooth_l1_sigma=0.0 is out of range: must be > 0"),
    ("model.rpn.conv_channels=0", "model.rpn.conv_channels=0 is out of range: must be >= 1 or -1 (-1 = the trunk's "
                                  "channels)"),
    ("model.roi.batch_size_per_image=0", "model.roi.batch_size_per_image=0 is out of range: must be >= 1"),
    ("model.roi.positive_fraction=-0.25", "model.roi.positive_fraction=-0.25 is out of range: must be in [0, 1]"),
    ("model.roi.fg_iou_thresh=5", "model.roi.fg_iou_thresh=5.0 is out of range: must be in [0, 1]"),
    ("model.roi.bg_iou_thresh_hi=-1", "model.roi.bg_iou_thresh_hi=-1.0 is out of range: must be in [0, 1]"),
    ("model.roi.bg_iou_thresh_lo=-0.5", "model.roi.bg_iou_thresh_lo=-0.5 is out of range: must be in [0, 1]"),
    ("model.roi.pooler=max", "model.roi.pooler=max is not allowed: must be one of align, pool"),
    ("model.roi.pool_size=0", "model.roi.pool_size=0 is out of range: must be >= 1"),
    ("model.roi.sampling_ratio=-1", "model.roi.sampling_ratio=-1 is out of range: must be >= 0 (0 = adaptive)"),
    ("model.roi.box_target_stds=[0.1,0.1,0.2]", "model.roi.box_target_stds=[0.1, 0.1, 0.2] is out of range: must "
                                                "be a list of 4 values, each > 0"),
    ("model.roi.smooth_l1_sigma=-1", "model.roi.smooth_l1_sigma=-1.0 is out of range: must be > 0"),
    ("model.roi.score_thresh=1.01", "model.roi.score_thresh=1.01 is out of range: must be in [0, 1]"),
    ("model.roi.nms_thresh=0", "model.roi.nms_thresh=0.0 is out of range: must be in (0, 1]"),
    ("model.roi.detections_per_img=0", "model.roi.detections_per_img=0 is out of range: must be >= 1"),
    ("dataset.format=yolo", "dataset.format=yolo is not allowed: must be one of voc, coco"),
    ("dataset.generate=circles", "dataset.generate=circles is not allowed: must be one of '', shapes"),
    ("dataset.metric=map", "dataset.metric=map is not allowed: must be one of voc07, voc_area, coco"),
    ("dataset.shapes.seed=-1", "dataset.shapes.seed=-1 is out of range: must be >= 0"),
    ("dataset.shapes.num_train=0", "dataset.shapes.num_train=0 is out of range: must be >= 1"),
    ("dataset.shapes.num_val=0", "dataset.shapes.num_val=0 is out of range: must be >= 1"),
    ("dataset.shapes.num_test=-3", "dataset.shapes.num_test=-3 is out of range: must be >= 1"),
    ("dataset.shapes.image_min_side=16", "dataset.shapes.image_min_side=16 is out of range: must be >= 32"),
    ("dataset.shapes.image_max_side=31", "dataset.shapes.image_max_side=31 is out of range: must be >= 32"),
    ("dataset.shapes.max_objects=0", "dataset.shapes.max_objects=0 is out of range: must be >= 1"),
    ("dataset.shapes.min_object_size=3", "dataset.shapes.min_object_size=3 is out of range: must be >= 4"),
    ("dataset.shapes.max_object_size=2", "dataset.shapes.max_object_size=2 is out of range: must be >= 4"),
    ("dataset.shapes.empty_fraction=1", "dataset.shapes.empty_fraction=1.0 is out of range: must be in [0, 1)"),
    ("dataset.shapes.difficult_fraction=-0.1", "dataset.shapes.difficult_fraction=-0.1 is out of range: must be in "
                                               "[0, 1)"),
    ("loader.num_workers=-1", "loader.num_workers=-1 is out of range: must be >= 0 (0 = load in the main process)"),
    ("loader.hflip_prob=1.5", "loader.hflip_prob=1.5 is out of range: must be in [0, 1]"),
    ("loader.color_jitter=-0.2", "loader.color_jitter=-0.2 is out of range: must be >= 0 (0 = off)"),
    ("train.max_iters=-1", "train.max_iters=-1 is out of range: must be >= 1"),
    ("train.batch_size=0", "train.batch_size=0 is out of range: must be >= 1"),
    ("train.lr=-1", "train.lr=-1.0 is out of range: must be > 0"),
    ("train.lr=0", "train.lr=0.0 is out of range: must be > 0"),
    ("train.momentum=1", "train.momentum=1.0 is out of range: must be in [0, 1)"),
    ("train.weight_decay=-0.0001", "train.weight_decay=-0.0001 is out of range: must be >= 0"),
    ("train.weight_decay_norm=-1", "train.weight_decay_norm=-1.0 is out of range: must be >= 0"),
    ("train.weight_decay_bias=-1", "train.weight_decay_bias=-1.0 is out of range: must be >= 0"),
    ("train.bias_lr_factor=-2", "train.bias_lr_factor=-2.0 is out of range: must be >= 0 (0 = biases not trained)"),
    ("train.schedule=poly", "train.schedule=poly is not allowed: must be one of multistep, cosine"),
    ("train.steps=[50000,40000]", "train.steps=[50000, 40000] is out of range: must be an increasing list of values, "
                                  "each >= 1"),
    ("train.steps=[0]", "train.steps=[0] is out of range: must be an increasing list of values, each >= 1"),
    ("train.gamma=0", "train.gamma=0.0 is out of range: must be in (0, 1]"),
    ("train.gamma=10", "train.gamma=10.0 is out of range: must be in (0, 1]"),
    ("train.warmup_iters=-100", "train.warmup_iters=-100 is out of range: must be >= 0 (0 = no warmup)"),
    ("train.warmup_factor=2", "train.warmup_factor=2.0 is out of range: must be in [0, 1]"),
    ("train.clip_grad_norm=-1", "train.clip_grad_norm=-1.0 is out of range: must be >= 0 (0 = off)"),
    ("train.amp=fp32", "train.amp=fp32 is not allowed: must be one of off, fp16, bf16"),
    ("train.compile_mode=fast", "train.compile_mode=fast is not allowed: must be one of default, reduce-overhead, "
                                "max-autotune, max-autotune-no-cudagraphs"),
    ("train.compile_backend=eager", "train.compile_backend=eager is not allowed: must be one of inductor, aot_eager"),
    ("train.log_period=0", "train.log_period=0 is out of range: must be >= 1"),
    ("train.eval_period=-1", "train.eval_period=-1 is out of range: must be >= 0 (0 = only at the end)"),
    ("train.checkpoint_period=-5000", "train.checkpoint_period=-5000 is out of range: must be >= 0 (0 = only at the "
                                      "end)"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints=-1 is out of range: must be >= 0 (0 = keep every one)"),
    ("train.vis_images=-4", "train.vis_images=-4 is out of range: must be >= 0"),
    ("train.eval_split=trainval", "train.eval_split=trainval is not allowed: must be one of train, val, test"),
    ("train.eval_batch_size=0", "train.eval_batch_size=0 is out of range: must be >= 1"),
]

# Rules across keys: (overrides, line).
CROSS_CASES = [
    (["model.rpn.bg_iou_thresh=0.8"],
     "model.rpn.bg_iou_thresh=0.8 is out of range: must be <= model.rpn.fg_iou_thresh=0.7"),
    (["model.roi.bg_iou_thresh_lo=0.6"],
     "model.roi.bg_iou_thresh_lo=0.6 is out of range: must be <= model.roi.bg_iou_thresh_hi=0.5"),
    (["model.roi.bg_iou_thresh_hi=0.6", "model.roi.bg_iou_thresh_lo=0.1"],
     "model.roi.bg_iou_thresh_hi=0.6 is out of range: must be <= model.roi.fg_iou_thresh=0.5"),
    (["model.rpn.post_nms_top_n.train=20000"],
     "model.rpn.post_nms_top_n.train=20000 is out of range: must be <= model.rpn.pre_nms_top_n.train=12000 (NMS "
     "keeps at most the boxes it is given; the extra slots would be padding the ROI head still computes)"),
    (["model.rpn.post_nms_top_n.test=7000"],
     "model.rpn.post_nms_top_n.test=7000 is out of range: must be <= model.rpn.pre_nms_top_n.test=6000 (NMS keeps "
     "at most the boxes it is given; the extra slots would be padding the ROI head still computes)"),
    (["dataset.shapes.image_min_side=400"],
     "dataset.shapes.image_min_side=400 is out of range: must be <= dataset.shapes.image_max_side=320"),
    (["dataset.shapes.max_object_size=10"],
     "dataset.shapes.min_object_size=16 is out of range: must be <= dataset.shapes.max_object_size=10"),
    (["dataset.shapes.min_object_size=120"],
     "dataset.shapes.min_object_size=120 is out of range: must be <= 0.6 * dataset.shapes.image_min_side=192 (objects "
     "are drawn at most 0.6 of the shorter image side)"),
    (["dataset.metric=coco"],
     "dataset.metric=coco is not allowed with dataset.format=voc: pycocotools evaluates against a COCO json; use "
     "dataset.metric=voc07 or voc_area"),
    (["model.roi.pool_size=5"],
     "model.roi.pool_size=5 is out of range: must be 7 with backbone.name=vgg16 (fc6 takes 7x7 ROI features)"),
    (["backbone.width=0.5"],
     "backbone.width=0.5 is out of range: must be 1.0 unless a ResNet is trained from scratch "
     "(backbone.pretrained=false, no backbone.weights); got backbone.name=vgg16"),
    (["backbone=resnet50", "backbone.pretrained=true", "backbone.width=0.5"],
     "backbone.width=0.5 is out of range: must be 1.0 unless a ResNet is trained from scratch "
     "(backbone.pretrained=false, no backbone.weights); got backbone.name=resnet50"),
]


@pytest.mark.parametrize("override,line", TRAIN_CASES, ids=[case[0] for case in TRAIN_CASES])
def test_a_train_value_out_of_range_is_refused_naming_key_value_and_range(hydra_conf, override, line):
    assert _problems("train", [override]) == [line]


@pytest.mark.parametrize("overrides,line", CROSS_CASES, ids=[" ".join(case[0]) for case in CROSS_CASES])
def test_values_that_contradict_each_other_are_refused(hydra_conf, overrides, line):
    assert _problems("train", overrides) == [line]


@pytest.mark.parametrize("override", [
    "model.rpn.nms_thresh=1", "model.rpn.bg_iou_thresh=0.7", "model.roi.bg_iou_thresh_lo=0.5",
    "model.rpn.conv_channels=-1", "backbone.freeze_at=-1", "backbone.freeze_at=0", "model.anchor.offset=0",
    "model.roi.sampling_ratio=0", "model.rpn.allowed_border=-1", "model.rpn.min_size=0", "train.keep_checkpoints=0",
    "train.eval_period=0", "train.checkpoint_period=0", "train.warmup_factor=0", "train.warmup_factor=1",
    "train.momentum=0", "train.gamma=1", "train.steps=[]", "train.clip_grad_norm=0", "loader.num_workers=0",
    "model.input.min_size=[32]", "model.input.max_size=32", "model.rpn.post_nms_top_n.test=6000", "device=cuda:1",
    "model.input.pixel_mean=[0,-1,2]", "dataset.shapes.min_object_size=115", "train.seed=-7",
])
def test_values_at_the_ends_of_their_range_pass(hydra_conf, override):
    assert _problems("train", [override]) == []


def _keys(override_cases) -> set:
    return {override.split("=")[0] for overrides, _ in override_cases
            for override in ([overrides] if isinstance(overrides, str) else overrides)}


# Keys with no range: paths, names and train.seed (any integer seeds torch and NumPy alike).
UNCHECKED = {"backbone.weights", "model.weights", "dataset.name", "dataset.root", "dataset.classes", "train.seed",
             "train.resume",
             *(f"dataset.{kind}.{split}" for kind in ("sets", "ann_file", "img_dir")
               for split in ("train", "val", "test"))}


def test_every_key_of_the_train_schema_has_a_rule_and_every_rule_a_case():
    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    schema = OmegaConf.to_container(OmegaConf.structured(TrainAppConfig))
    non_boolean = {key for key, value in leaves(schema) if not isinstance(value, bool)}
    # booleans: the schema's type check is all they need
    assert non_boolean - UNCHECKED == set(train_rules())
    assert set(train_rules()) <= _keys(TRAIN_CASES)


def test_the_backbone_choices_are_the_shipped_backbone_configs():
    assert set(_choices("backbone")) == set(train_rules()["backbone.name"].choices)


ASKS_FOR_DATA = {"finetune_coco_fpn": ["dataset.root=/data/x"]}  # experiments on a *_custom dataset


def _shipped_configs():
    for experiment in [None, *_choices("experiment")]:
        for backbone in _choices("backbone"):
            chosen = [f"experiment={experiment}", *ASKS_FOR_DATA.get(experiment, [])] if experiment else []
            yield "train", [f"backbone={backbone}", *chosen]
    for dataset in _choices("dataset"):
        yield "train", [f"dataset={dataset}", "dataset.root=/data/x"]
        yield "eval", [f"dataset={dataset}", "dataset.root=/data/x"]
    yield "eval", []
    yield "predict", []


SHIPPED = list(_shipped_configs())


@pytest.mark.parametrize("config,overrides", SHIPPED, ids=[f"{c}:{' '.join(o)}" for c, o in SHIPPED])
def test_every_shipped_config_passes(hydra_conf, config, overrides):
    if overrides in (["backbone=vgg16", "experiment=shapes"], ["backbone=vgg16", "experiment=shapes_fpn"]):
        # the demo's half-width trunk is a ResNet's: refused here, as build_backbone refuses it
        assert [p.split(" ")[0] for p in _problems(config, overrides)] == ["backbone.width=0.5"]
    else:
        assert _problems(config, overrides) == []


def test_several_problems_are_reported_together_one_line_each(hydra_conf):
    cfg = compose("train", overrides=["model.rpn.nms_thresh=2", "train.max_iters=-1", "model.anchor.ratios=[]",
                                      "train.amp=fp32", "model.rpn.bg_iou_thresh=0.9"])
    with pytest.raises(ConfigError) as info:
        check_train_config(cfg)
    assert str(info.value).splitlines() == [
        "5 config values cannot be used (fix them all, then run again):",
        "  model.anchor.ratios=[] is out of range: must be a non-empty list of values, each > 0",
        "  model.rpn.nms_thresh=2.0 is out of range: must be in (0, 1]",
        "  train.max_iters=-1 is out of range: must be >= 1",
        "  train.amp=fp32 is not allowed: must be one of off, fp16, bf16",
        "  model.rpn.bg_iou_thresh=0.9 is out of range: must be <= model.rpn.fg_iou_thresh=0.7",
    ]
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError too


def test_a_value_out_of_its_own_range_is_not_also_blamed_for_its_order(hydra_conf):
    assert _problems("train", ["model.rpn.bg_iou_thresh=1.5"]) == [
        "model.rpn.bg_iou_thresh=1.5 is out of range: must be in [0, 1]"]
    assert _problems("train", ["model.roi.pool_size=0"]) == ["model.roi.pool_size=0 is out of range: must be >= 1"]


def test_steps_after_max_iters_pass_with_a_warning(hydra_conf, caplog):
    cfg = compose("train", overrides=["train.max_iters=100", "train.steps=[80,200]"])
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        check_train_config(cfg)
    assert "train.steps=[80, 200]: [200] after train.max_iters=100" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        check_train_config(compose("train", overrides=["train.max_iters=100", "train.steps=[80]"]))
        check_train_config(compose("train", overrides=["train.max_iters=100", "train.schedule=cosine"]))
    assert caplog.text == ""


EVAL_PREDICT_CASES = [
    ("eval", ["split=trainval"], "split=trainval is not allowed: must be one of train, val, test"),
    ("eval", ["batch_size=0"], "batch_size=0 is out of range: must be >= 1"),
    ("eval", ["amp=fp8"], "amp=fp8 is not allowed: must be one of off, fp16, bf16"),
    ("eval", ["device=tpu"], "device=tpu is not allowed: must be auto, cpu, cuda or cuda:N"),
    ("eval", ["loader.num_workers=-2"], "loader.num_workers=-2 is out of range: must be >= 0 (0 = load in the main "
                                        "process)"),
    ("eval", ["model.roi.score_thresh=1.5"], "model.roi.score_thresh=1.5 is out of range: must be in [0, 1]"),
    ("eval", ["model.input.min_size=[]"], "model.input.min_size=[] is out of range: must be a non-empty list of "
                                          "values, each >= 32"),
    ("eval", ["model.input.min_size=800"], "model.input.min_size=800 is not a list: must be a non-empty list of "
                                           "values, each >= 32"),
    ("eval", ["model.roi.nms_thresh=high"], "model.roi.nms_thresh=high is not a number: must be in (0, 1]"),
    ("eval", ["dataset=voc07", "dataset.metric=coco"],
     "dataset.metric=coco is not allowed with dataset.format=voc: pycocotools evaluates against a COCO json; use "
     "dataset.metric=voc07 or voc_area"),
    ("eval", ["dataset.format=json"], "dataset.format=json is not allowed: must be one of voc, coco"),
    ("eval", ["model.rpn.post_nms_top_n.test=500", "model.rpn.pre_nms_top_n.test=400"],
     "model.rpn.post_nms_top_n.test=500 is out of range: must be <= model.rpn.pre_nms_top_n.test=400 (NMS keeps "
     "at most the boxes it is given; the extra slots would be padding the ROI head still computes)"),
    ("predict", ["score_thresh=2"], "score_thresh=2.0 is out of range: must be in [0, 1]"),
    ("predict", ["batch_size=0"], "batch_size=0 is out of range: must be >= 1"),
    ("predict", ["amp=half"], "amp=half is not allowed: must be one of off, fp16, bf16"),
    ("predict", ["device=gpu0"], "device=gpu0 is not allowed: must be auto, cpu, cuda or cuda:N"),
    ("predict", ["model.roi.nms_thresh=0"], "model.roi.nms_thresh=0 is out of range: must be in (0, 1]"),
    ("predict", ["model.roi.detections_per_img=0"], "model.roi.detections_per_img=0 is out of range: must be >= 1"),
]


@pytest.mark.parametrize("config,overrides,line", EVAL_PREDICT_CASES,
                         ids=[f"{c}:{' '.join(o)}" for c, o, _ in EVAL_PREDICT_CASES])
def test_eval_and_predict_values_out_of_range_are_refused(hydra_conf, config, overrides, line):
    assert _problems(config, overrides) == [line]


def test_eval_checks_only_the_model_keys_given(hydra_conf):
    # The checkpoint's fg_iou_thresh is unknown here, so the order against it is left to the merged config.
    assert _problems("eval", ["model.rpn.bg_iou_thresh=0.8", "model.roi.score_thresh=0.0"]) == []
    assert _problems("predict", ["model.input.min_size=[800]", "model.rpn.nms_thresh=1"]) == []
