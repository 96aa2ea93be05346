"""Range checks of the composed configs, run before anything is built.

The schema (``frcnn.config``) fixes each key's type; this module fixes its range, so a value that cannot work is
refused up front, naming the key, instead of failing deep inside a convolution or silently training nonsense:

    check_train_config(cfg)    frcnn-train's config (TrainAppConfig)
    check_eval_config(cfg)     frcnn-eval's (EvalAppConfig): its own keys and the model.* / dataset.* given
    check_predict_config(cfg)  frcnn-predict's (PredictAppConfig): its own keys and the model.* given
    check_export_config(cfg)   frcnn-export's (ExportAppConfig): its own keys and the model.* given
    require_given(cfg)         mandatory keys (``???``, e.g. dataset.root of a custom dataset) are set

Each raises one :class:`~frcnn.errors.ConfigError` listing every problem, one line each, such as
``model.rpn.nms_thresh=2.0 is out of range: must be in (0, 1]``, so a user fixes them all in one go.
The rules are one table of (key, rule) plus a few rules across keys; the choices of the string keys are the
tuples the code that uses them defines (``SCHEDULES``, ``AMP_MODES``, ...), so the two cannot drift apart.
"""
from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from omegaconf import OmegaConf

from frcnn.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["check_train_config", "check_eval_config", "check_predict_config", "check_export_config", "require_given",
           "train_rules"]


# --------------------------------------------------------------------------------------------------- rules
def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _show(value: Any) -> str:
    """A value as a user writes it on the command line."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Number:
    """A finite number in [lo, hi] (None: unbounded; ``*_open``: that end excluded), or one of ``also``."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    also: Sequence[float] = ()  # values with a special meaning outside the range (said in ``note``)
    note: str = ""

    def allowed(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            text = _fmt(lo) if lo == hi else (f"in {'(' if self.lo_open else '['}{_fmt(lo)}, {_fmt(hi)}"
                                              f"{')' if self.hi_open else ']'}")
        elif lo is not None:
            text = f"{'>' if self.lo_open else '>='} {_fmt(lo)}"
        elif hi is not None:
            text = f"{'<' if self.hi_open else '<='} {_fmt(hi)}"
        else:
            text = "a finite number"
        text += "".join(f" or {_fmt(v)}" for v in self.also)
        return f"{text} ({self.note})" if self.note else text

    def fits(self, value: Any) -> bool:
        if not _is_number(value) or not math.isfinite(value):  # NaN and inf fit no range
            return False
        if value in self.also:
            return True
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __call__(self, value: Any) -> Optional[str]:
        if self.fits(value):
            return None
        what = ("is not a number" if not _is_number(value) else
                "is not finite" if not math.isfinite(value) else "is out of range")
        return f"{what}: must be {self.allowed()}"


@dataclass(frozen=True)
class ListOf:
    """A list of numbers each fitting ``item``; ``length``: exactly that many; ``increasing``: sorted."""

    item: Number
    length: Optional[int] = None
    nonempty: bool = True
    increasing: bool = False

    def allowed(self) -> str:
        size = f"{self.length} " if self.length else ""
        kind = ("an increasing list" if self.increasing else
                "a non-empty list" if self.nonempty and not self.length else "a list")
        each = f", each {self.item.allowed()}" if self.item.lo is not None or self.item.hi is not None else ""
        return f"{kind} of {size}{'finite ' if not each else ''}values{each}"

    def __call__(self, value: Any) -> Optional[str]:
        ok = (isinstance(value, list) and all(self.item.fits(v) for v in value)
              and not (self.nonempty and not value)
              and (self.length is None or len(value) == self.length)
              and not (self.increasing and value != sorted(value)))
        if ok:
            return None
        return f"{'is out of range' if isinstance(value, list) else 'is not a list'}: must be {self.allowed()}"


@dataclass(frozen=True)
class OneOf:
    """One of the strings the code that uses the key accepts."""

    choices: Sequence[str]

    def __call__(self, value: Any) -> Optional[str]:
        if value in self.choices:
            return None
        return f"is not allowed: must be one of {', '.join(map(_show, self.choices))}"


@dataclass(frozen=True)
class Matches:
    """A string matching ``pattern`` (whole), described to the user as ``described``."""

    pattern: str
    described: str

    def __call__(self, value: Any) -> Optional[str]:
        ok = isinstance(value, str) and re.fullmatch(self.pattern, value) is not None
        return None if ok else f"is not allowed: must be {self.described}"


Rule = Callable[[Any], Optional[str]]  # value -> what is wrong with it, or None

UNIT = Number(0, 1)  # IoU thresholds, fractions, probabilities
NMS = Number(0, 1, lo_open=True)  # at 0, NMS would drop every box that overlaps a better one at all
SHARE = Number(0, 1, hi_open=True)  # at 1: no image with objects, or no object that is not difficult
POSITIVE = Number(0, lo_open=True)
COUNT = Number(1)
NON_NEGATIVE = Number(0)
# An input side under 32 px is under two cells of the stride-16 trunk: too coarse to detect anything.
INPUT_SIDE = Number(32)
OFF_AT_0 = Number(0, note="0 = only at the end")
DEVICE = Matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")


@functools.lru_cache(maxsize=None)
def train_rules() -> Dict[str, Rule]:
    """Key of the train config -> its rule. Keys left out are free (paths, names, booleans, and train.seed: any
    integer seeds torch and NumPy alike).

    Built on first use: the choices come from the modules that use them, and frcnn.engine imports this module.
    """
    return {**_model_rules(), **_fpn_rules(), **_data_rules(), **_training_rules()}


def _model_rules() -> Dict[str, Rule]:
    from frcnn.modeling.backbones import BACKBONES, NORMS, Backbone
    from frcnn.modeling.pooling import POOLERS

    return {
        "device": DEVICE,
        "backbone.name": OneOf(BACKBONES),
        "backbone.norm": OneOf(NORMS),
        "backbone.freeze_at": Number(-1, note="-1 = the backbone's default"),
        "backbone.width": POSITIVE,
        "model.input.min_size": ListOf(INPUT_SIDE),
        "model.input.max_size": INPUT_SIDE,
        "model.input.pixel_mean": ListOf(Number(), length=3),
        "model.input.pixel_std": ListOf(POSITIVE, length=3),
        "model.input.size_divisible": COUNT,
        "model.anchor.scales": ListOf(POSITIVE),
        "model.anchor.ratios": ListOf(POSITIVE),
        # build_model takes no other: the anchors' stride is the trunk's, and every backbone's trunk has this one.
        "model.anchor.stride": Number(Backbone.stride, Backbone.stride, note="the stride of every backbone's trunk"),
        "model.anchor.offset": Number(0, 1, hi_open=True),
        "model.rpn.fg_iou_thresh": UNIT,
        "model.rpn.bg_iou_thresh": UNIT,
        "model.rpn.batch_size_per_image": COUNT,
        "model.rpn.positive_fraction": UNIT,
        "model.rpn.nms_thresh": NMS,
        "model.rpn.min_size": NON_NEGATIVE,
        "model.rpn.pre_nms_top_n.train": COUNT,
        "model.rpn.pre_nms_top_n.test": COUNT,
        "model.rpn.post_nms_top_n.train": COUNT,
        "model.rpn.post_nms_top_n.test": COUNT,
        "model.rpn.allowed_border": Number(note="negative = no border filter"),
        "model.rpn.smooth_l1_sigma": POSITIVE,
        "model.rpn.conv_channels": Number(1, also=(-1,), note="-1 = the trunk's channels"),
        "model.roi.batch_size_per_image": COUNT,
        "model.roi.positive_fraction": UNIT,
        "model.roi.fg_iou_thresh": UNIT,
        "model.roi.bg_iou_thresh_hi": UNIT,
        "model.roi.bg_iou_thresh_lo": UNIT,
        "model.roi.pooler": OneOf(POOLERS),
        "model.roi.pool_size": COUNT,
        "model.roi.sampling_ratio": Number(0, note="0 = adaptive"),
        "model.roi.box_target_stds": ListOf(POSITIVE, length=4),
        "model.roi.smooth_l1_sigma": POSITIVE,
        "model.roi.score_thresh": UNIT,
        "model.roi.nms_thresh": NMS,
        "model.roi.detections_per_img": COUNT,
    }


def _fpn_rules() -> Dict[str, Rule]:
    """The keys that torchvision's FPN detectors brought (they serve the C4 models too where they apply)."""
    from frcnn.modeling.fpn import BOX_HEADS, FPN_NORMS
    from frcnn.modeling.preprocess import RESIZE_ROUNDINGS

    return {
        "model.input.resize_rounding": OneOf(RESIZE_ROUNDINGS),
        "model.anchor.sizes": ListOf(POSITIVE, nonempty=False),
        "model.rpn.conv_depth": COUNT,
        "model.fpn.channels": COUNT,
        "model.fpn.norm": OneOf(FPN_NORMS),
        "model.fpn.box_head": OneOf(BOX_HEADS),
        "model.fpn.representation_size": COUNT,
    }


def _data_rules() -> Dict[str, Rule]:
    from frcnn.data.build import FORMATS, GENERATORS
    from frcnn.evaluation.evaluator import METRICS

    return {
        "dataset.format": OneOf(FORMATS),
        "dataset.generate": OneOf(GENERATORS),
        "dataset.metric": OneOf(METRICS),
        "dataset.shapes.seed": NON_NEGATIVE,  # NumPy's generators take no negative seed
        "dataset.shapes.num_train": COUNT,
        "dataset.shapes.num_val": COUNT,
        "dataset.shapes.num_test": COUNT,
        "dataset.shapes.image_min_side": INPUT_SIDE,
        "dataset.shapes.image_max_side": INPUT_SIDE,
        "dataset.shapes.max_objects": COUNT,
        "dataset.shapes.min_object_size": Number(4),  # smaller shapes are a few pixels of noise
        "dataset.shapes.max_object_size": Number(4),
        "dataset.shapes.empty_fraction": SHARE,
        "dataset.shapes.difficult_fraction": SHARE,
        "loader.num_workers": Number(0, note="0 = load in the main process"),
        "loader.hflip_prob": UNIT,
        "loader.color_jitter": Number(0, note="0 = off"),
    }


def _training_rules() -> Dict[str, Rule]:
    from frcnn.data.build import SPLITS
    from frcnn.engine.compile import COMPILE_BACKENDS, COMPILE_MODES
    from frcnn.engine.optim import SCHEDULES
    from frcnn.engine.runtime import AMP_MODES

    return {
        "train.max_iters": COUNT,
        "train.batch_size": COUNT,
        "train.lr": POSITIVE,
        "train.momentum": Number(0, 1, hi_open=True),
        "train.weight_decay": NON_NEGATIVE,
        "train.weight_decay_norm": NON_NEGATIVE,
        "train.weight_decay_bias": NON_NEGATIVE,
        "train.bias_lr_factor": Number(0, note="0 = biases not trained"),
        "train.schedule": OneOf(SCHEDULES),
        "train.steps": ListOf(COUNT, nonempty=False, increasing=True),
        "train.gamma": Number(0, 1, lo_open=True),  # a decay: 0 stops training, above 1 raises the lr at each step
        "train.warmup_iters": Number(0, note="0 = no warmup"),
        "train.warmup_factor": UNIT,  # 0: the warmup starts from lr 0, as many recipes do
        "train.clip_grad_norm": Number(0, note="0 = off"),
        "train.amp": OneOf(AMP_MODES),
        "train.compile_mode": OneOf(COMPILE_MODES),
        "train.compile_backend": OneOf(COMPILE_BACKENDS),
        "train.log_period": COUNT,
        "train.eval_period": OFF_AT_0,
        "train.checkpoint_period": OFF_AT_0,
        "train.keep_checkpoints": Number(0, note="0 = keep every one"),
        "train.vis_images": NON_NEGATIVE,
        "train.eval_split": OneOf(SPLITS),
        "train.eval_batch_size": COUNT,
    }


@dataclass(frozen=True)
class AtMost:
    """Across keys: ``key <= factor * bound`` (both must be set; ``why`` is said after the rule)."""

    key: str
    bound: str
    factor: float = 1.0
    why: str = ""

    def problem(self, value: float, bound: float) -> Optional[str]:
        if value <= self.factor * bound:
            return None
        scaled = f"{_fmt(self.factor)} * " if self.factor != 1 else ""
        why = f" ({self.why})" if self.why else ""
        return f"{self.key}={_show(value)} is out of range: must be <= {scaled}{self.bound}={_show(bound)}{why}"


_FEWER = "NMS keeps at most the boxes it is given; the extra slots would be padding the ROI head still computes"
CROSS_RULES = (
    AtMost("model.rpn.bg_iou_thresh", "model.rpn.fg_iou_thresh"),
    AtMost("model.roi.bg_iou_thresh_lo", "model.roi.bg_iou_thresh_hi"),
    AtMost("model.roi.bg_iou_thresh_hi", "model.roi.fg_iou_thresh"),
    AtMost("model.rpn.post_nms_top_n.train", "model.rpn.pre_nms_top_n.train", why=_FEWER),
    AtMost("model.rpn.post_nms_top_n.test", "model.rpn.pre_nms_top_n.test", why=_FEWER),
    AtMost("dataset.shapes.image_min_side", "dataset.shapes.image_max_side"),
    AtMost("dataset.shapes.min_object_size", "dataset.shapes.max_object_size"),
    AtMost("dataset.shapes.min_object_size", "dataset.shapes.image_min_side", factor=0.6,
           why="objects are drawn at most 0.6 of the shorter image side"),
)


def _special_problems(get: Callable[[str], Any]) -> Iterator[str]:
    """Rules that tie keys together in other ways than an order (each only when all its keys are set)."""
    metric, fmt = get("dataset.metric"), get("dataset.format")
    if metric == "coco" and fmt is not None and fmt != "coco":
        yield (f"dataset.metric=coco is not allowed with dataset.format={fmt}: pycocotools evaluates against a "
               f"COCO json; use dataset.metric=voc07 or voc_area")
    name, pool_size = get("backbone.name"), get("model.roi.pool_size")
    if name == "vgg16" and pool_size is not None and pool_size != 7:
        yield (f"model.roi.pool_size={_show(pool_size)} is out of range: must be 7 with backbone.name=vgg16 "
               f"(fc6 takes 7x7 ROI features)")
    width = get("backbone.width")
    if width is not None and width != 1.0 and name is not None:
        if name == "vgg16" or get("backbone.pretrained") or get("backbone.weights"):
            yield (f"backbone.width={_show(width)} is out of range: must be 1.0 unless a ResNet is trained from "
                   f"scratch (backbone.pretrained=false, no backbone.weights); got backbone.name={name}")


# -------------------------------------------------------------------------------------------------- checking
def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _problems(cfg, rules: Dict[str, Rule]) -> List[str]:
    """Every problem of the keys of ``rules`` that are set in ``cfg`` (None = not given: skipped)."""

    def get(key: str) -> Any:
        return _plain(OmegaConf.select(cfg, key, default=None))

    problems, bad = [], set()
    for key, rule in rules.items():
        value = get(key)
        problem = None if value is None else rule(value)
        if problem:
            problems.append(f"{key}={_show(value)} {problem}")
            bad.add(key)
    for cross in CROSS_RULES:
        value, bound = get(cross.key), get(cross.bound)
        # A value already out of its own range says so once; the order against another key is moot then.
        if value is not None and bound is not None and not {cross.key, cross.bound} & bad:
            problem = cross.problem(value, bound)
            if problem:
                problems.append(problem)
    problems += _special_problems(lambda key: None if key in bad else get(key))
    return problems


def _raise_if_any(problems: List[str]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        error = ConfigError(problems[0])
    else:
        error = ConfigError(f"{len(problems)} config values cannot be used (fix them all, then run again):\n  "
                            + "\n  ".join(problems))
    error.problems = problems  # one entry per problem, for callers that list them another way
    raise error


def _warn_about_steps(cfg) -> None:
    """Steps past the end are harmless (the lr just never decays there) but often a forgotten override."""
    steps, max_iters = list(cfg.train.steps), int(cfg.train.max_iters)
    late = [s for s in steps if s > max_iters]
    if cfg.train.schedule == "multistep" and late:
        log.warning("train.steps=%s: %s after train.max_iters=%d, so the lr is never decayed there",
                    _show(steps), _show(late), max_iters)


def require_given(cfg) -> None:
    """Refuse a config with mandatory values (``???``) left unset, naming each key."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError("no value given for " + ", ".join(missing) + ": set it on the command line, e.g. "
                          + " ".join(f"{key}=..." for key in missing))


def check_train_config(cfg) -> None:
    """Raise ConfigError listing every unset or out-of-range value of a composed train config (TrainAppConfig)."""
    require_given(cfg)
    _raise_if_any(_problems(cfg, train_rules()))
    _warn_about_steps(cfg)


def _own_rules(own: Dict[str, Rule], *slots: str) -> Dict[str, Rule]:
    """``own`` plus the train rules of the override slots (``model.``, ...) that eval / predict configs have."""
    return {**own, **{key: rule for key, rule in train_rules().items() if key.startswith(slots)}}


def check_eval_config(cfg) -> None:
    """Raise ConfigError listing every unset or out-of-range value of a composed eval config (EvalAppConfig).

    Its ``model.*`` / ``dataset.*`` keys are checked where given; rules across keys need all their keys given
    (the rest come from the checkpoint: ``check_train_config`` on the merged config covers those).
    """
    require_given(cfg)
    rules = train_rules()
    own = {"split": rules["train.eval_split"], "batch_size": COUNT, "amp": rules["train.amp"], "device": DEVICE}
    _raise_if_any(_problems(cfg, _own_rules(own, "model.", "dataset.", "loader.")))


def check_predict_config(cfg) -> None:
    """Raise ConfigError listing every out-of-range value of a composed predict config (PredictAppConfig)."""
    require_given(cfg)
    from frcnn.engine.predict import BACKENDS

    own = {"score_thresh": UNIT, "batch_size": COUNT, "amp": train_rules()["train.amp"], "device": DEVICE,
           "backend": OneOf(BACKENDS)}
    _raise_if_any(_problems(cfg, _own_rules(own, "model.")))


def check_export_config(cfg) -> None:
    """Raise ConfigError listing every unset or out-of-range value of a composed export config (ExportAppConfig)."""
    from frcnn.export.writer import FORMATS

    require_given(cfg)
    _raise_if_any(_problems(cfg, _own_rules({"format": OneOf(FORMATS)}, "model.")))
