"""Typed configuration schema, registered in Hydra's ConfigStore.

Every YAML file under ``conf/`` is merged onto these dataclasses, so a misspelled key or a value of the wrong
type fails when the config is composed, with Hydra naming the key. Modules never read the config: the builders
(``frcnn.modeling.build``, ``frcnn.data.build``, ``frcnn.engine``) map it to keyword arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore


def _list(*values):
    return field(default_factory=lambda: list(values))


# ----------------------------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    # vgg16 | resnet18 | resnet34 | resnet50 | resnet101 | resnet152 (C4) | resnet18_fpn .. resnet152_fpn (FPN)
    name: str = "vgg16"
    pretrained: bool = False  # torchvision ImageNet weights (needs network access once, then cached)
    weights: Optional[str] = None  # local state-dict file in torchvision's layout; wins over `pretrained`
    # Normalisation in ResNets: frozen_bn (the paper's choice with ImageNet weights), bn (trainable, for training
    # from scratch), gn (GroupNorm). Ignored by VGG16, which has none.
    norm: str = "frozen_bn"
    # Leading trunk parts whose parameters are frozen. VGG16: modules of `features` (10 = conv1_1..pool2, the
    # conv1 and conv2 blocks, as in the paper and jwyang). ResNet: 1 = stem, 2 = stem + layer1 (jwyang, detectron2),
    # 3 = .. + layer2. 0 trains everything. -1 keeps the default (VGG16: 10, ResNet: 2).
    freeze_at: int = -1
    # ResNets trained from scratch only: every stage's channel count is multiplied by this (the CPU demo's
    # narrow trunk). 1.0 = torchvision's architecture, which pretrained weights need.
    width: float = 1.0


@dataclass
class InputConfig:
    min_size: List[int] = _list(600)  # shortest side; in training one value is drawn per batch
    max_size: int = 1000  # longest side cap
    pixel_mean: List[float] = _list(0.485, 0.456, 0.406)  # torchvision ImageNet statistics, RGB in [0, 1]
    pixel_std: List[float] = _list(0.229, 0.224, 0.225)
    size_divisible: int = 32  # padded batch height and width are multiples of this
    # Resized sides: round (nearest pixel) | floor (torchvision's detectors: floor(side * scale), which the FPN
    # configs use so that torchvision's trained weights see the inputs they were trained on).
    resize_rounding: str = "round"


@dataclass
class AnchorConfig:
    scales: List[float] = _list(8.0, 16.0, 32.0)  # anchor side = stride * scale (for ratio 1)
    ratios: List[float] = _list(0.5, 1.0, 2.0)  # height / width
    stride: int = 16  # feature stride of the trunk (both backbones are 16)
    offset: float = 0.5  # cell centre at (i + offset) * stride: 0.5 puts the first centre at (8, 8)
    # FPN trunks only: the anchor side (ratio 1) of each level, P2..P6, by torchvision's rule (anchors centred on
    # the cell corners, half-sides rounded to pixels); `scales`, `stride` and `offset` are then not used.
    sizes: List[float] = _list()


@dataclass
class TopNConfig:
    train: int = 12000
    test: int = 6000


@dataclass
class RPNConfig:
    fg_iou_thresh: float = 0.7  # anchors at this IoU with an object are positive (and each object's best ones)
    bg_iou_thresh: float = 0.3  # anchors below it with every object are negative; between the two: ignored
    batch_size_per_image: int = 256  # anchors sampled per image for the RPN losses
    positive_fraction: float = 0.5  # at most this share of them positive
    nms_thresh: float = 0.7  # proposal NMS IoU
    min_size: float = 16.0  # proposals narrower or shorter than this (original-image pixels) are dropped
    pre_nms_top_n: TopNConfig = field(default_factory=lambda: TopNConfig(train=12000, test=6000))
    post_nms_top_n: TopNConfig = field(default_factory=lambda: TopNConfig(train=2000, test=300))
    allowed_border: float = 0.0  # anchors crossing the image border by more than this are ignored in training
    smooth_l1_sigma: float = 3.0
    conv_channels: int = 512  # width of the 3x3 conv; -1 uses the trunk's output channels
    conv_depth: int = 1  # 3x3 conv + ReLU layers before the 1x1 outputs (torchvision's v2 FPN detector: 2)


@dataclass
class ROIConfig:
    batch_size_per_image: int = 128  # proposals (with the ground truth appended) sampled per image for the head
    positive_fraction: float = 0.25  # at most this share of them foreground
    fg_iou_thresh: float = 0.5  # foreground at this IoU with an object
    bg_iou_thresh_hi: float = 0.5  # background in [bg_iou_thresh_lo, bg_iou_thresh_hi)
    bg_iou_thresh_lo: float = 0.0
    pooler: str = "align"  # align (torchvision roi_align) | pool (roi_pool)
    pool_size: int = 7
    sampling_ratio: int = 2  # roi_align samples per bin side; 0 = adaptive (ceil(roi_size / pool_size))
    # roi_align's pixel model: true = pixel centres at +0.5 (right for continuous boxes); torchvision's FPN
    # detectors were trained with false (MultiScaleRoIAlign's choice), which the FPN configs keep.
    aligned: bool = True
    class_agnostic: bool = False
    box_target_stds: List[float] = _list(0.1, 0.1, 0.2, 0.2)  # regression targets are divided by these
    smooth_l1_sigma: float = 1.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    detections_per_img: int = 100


@dataclass
class FPNConfig:
    """FPN trunks only (backbone=resnet*_fpn): the pyramid and the box head on its ROI features."""

    channels: int = 256  # channels of every pyramid level
    # none | bn | sync_bn (bn synchronised over torchrun's ranks) | frozen_bn: after the pyramid's and the
    # conv4_fc box head's convolutions
    norm: str = "none"
    box_head: str = "two_fc"  # two_fc (torchvision's v1: fc6, fc7) | conv4_fc (v2: four 3x3 convs, one fc)
    representation_size: int = 1024  # width of the box head's last fc layer


@dataclass
class ModelConfig:
    input: InputConfig = field(default_factory=InputConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi: ROIConfig = field(default_factory=ROIConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    # A whole detector to start training from: one of our checkpoints (last.pt) or a torchvision detection state
    # dict (fasterrcnn_resnet50_fpn / _v2, saved with torch.save(model.state_dict(), PATH)). With another number of
    # classes the class-specific predictor starts fresh; README, "Fine-tune a COCO-trained detector".
    weights: Optional[str] = None
    # NHWC activations and weights: oneDNN (CPU) and cuDNN (tensor cores) run convolutions faster in this layout
    # (the README's Speed section has the figures).
    channels_last: bool = True


# ---------------------------------------------------------------------------------------------------------- data
@dataclass
class SplitPaths:
    train: str = ""
    val: str = ""
    test: str = ""


@dataclass
class SplitLists:
    train: List[str] = _list()
    val: List[str] = _list()
    test: List[str] = _list()


@dataclass
class ShapesConfig:
    """The synthetic dataset generated into ``dataset.root`` on first use (``dataset=shapes``)."""

    seed: int = 0  # the same seed writes the same bytes
    num_train: int = 400  # images per split
    num_val: int = 50
    num_test: int = 100
    image_min_side: int = 192  # image sides are drawn from [image_min_side, image_max_side]
    image_max_side: int = 320
    max_objects: int = 6  # per image (1..max_objects, except the empty ones)
    min_object_size: int = 16  # object sides in px, drawn log-uniform in [min, max]
    max_object_size: int = 160
    empty_fraction: float = 0.05  # share of images with no objects
    difficult_fraction: float = 0.05  # share of objects marked difficult


@dataclass
class DatasetConfig:
    name: str = "shapes"
    format: str = "voc"  # voc | coco: which loader reads the data
    # Every conf/dataset/*.yaml sets it, except the *_custom ones: there it must be given (dataset.root=PATH).
    # It is "???" (missing) here because a "???" in a yaml cannot replace a default when the configs merge.
    root: str = "???"
    classes: List[str] = _list()  # label k (1..K) is classes[k-1]; empty = read from the COCO file / annotations
    # VOC layout: entries "SUBDIR/SPLIT" read ROOT/SUBDIR/ImageSets/Main/SPLIT.txt (plain "SPLIT": ROOT itself).
    sets: SplitLists = field(default_factory=SplitLists)
    # COCO layout: instances json and image folder per split, both relative to root.
    ann_file: SplitPaths = field(default_factory=SplitPaths)
    img_dir: SplitPaths = field(default_factory=SplitPaths)
    use_difficult: bool = False  # train on objects marked difficult (evaluation always sees them, flagged)
    keep_empty: bool = True  # keep training images that have no (usable) objects; evaluation keeps every image
    metric: str = "voc_area"  # voc07 (11-point) | voc_area | coco
    # "" (the data is on disk) | shapes: generate the synthetic shapes data into `root` on first use, from
    # dataset.shapes (conf/dataset/shapes.yaml sets it)
    generate: str = ""
    shapes: ShapesConfig = field(default_factory=ShapesConfig)


@dataclass
class LoaderConfig:
    num_workers: int = 2  # 0 = load in the main process (fastest on a busy 2-core CPU machine)
    pin_memory: bool = True  # only takes effect when CUDA is available
    persistent_workers: bool = True  # only with num_workers > 0
    aspect_grouping: bool = True  # batch landscape with landscape and portrait with portrait images
    hflip_prob: float = 0.5
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; 0 = off


# ------------------------------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    max_iters: int = 70000
    batch_size: int = 1
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    weight_decay_norm: float = 0.0  # on BatchNorm/GroupNorm parameters
    weight_decay_bias: float = 0.0
    bias_lr_factor: float = 1.0  # 2.0 reproduces the "double bias lr" of the Caffe recipes
    schedule: str = "multistep"  # multistep | cosine
    steps: List[int] = _list(50000)  # multistep: iterations where the lr is multiplied by gamma
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    clip_grad_norm: float = 0.0  # 0 = off
    amp: str = "off"  # off | fp16 | bf16
    cudnn_benchmark: bool = True
    compile: bool = False  # torch.compile the training step: one graph per input-size bucket (README, GPU)
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs
    compile_backend: str = "inductor"  # inductor | aot_eager (traces and runs without generating code)
    seed: int = 0
    log_period: int = 20
    eval_period: int = 0  # 0 = only at the end
    checkpoint_period: int = 5000
    keep_checkpoints: int = 3
    resume: str = ""  # "" (start fresh) | auto (the run dir's last.pt if any) | PATH
    # A fresh start (resume "") in a run directory that already holds checkpoints is refused unless this is true;
    # then the previous run's checkpoints, metrics.json and tensorboard/ are deleted first.
    overwrite: bool = False
    vis_images: int = 4  # images with predicted boxes written to TensorBoard at each evaluation
    eval_split: str = "val"  # split evaluated during and at the end of training (metrics.json)
    eval_batch_size: int = 2
    progress_bar: bool = True  # tqdm bar on the console (log lines go to train.log and the console either way)


@dataclass
class TrainAppConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # the group conf/backbone/ picks it
    model: ModelConfig = field(default_factory=ModelConfig)  # experiments (conf/experiment/) set parts of it
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # the group conf/dataset/ picks it
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


def _override_slots(schema) -> dict:
    """The keys of ``schema`` (a dataclass), nested, with every leaf None: a typo-proof slot for overrides.

    ``frcnn-eval``/``frcnn-predict`` take ``model.*`` and ``dataset.*`` overrides that are merged onto the config
    stored in the checkpoint, so only the keys a user sets may count; a dict of None leaves lets Hydra refuse a
    misspelled key (struct mode) while telling the given values (not None) from the untouched ones. Values are
    type-checked when merged onto the schema (frcnn.engine.checkpoint_config).
    """
    from omegaconf import OmegaConf

    def nulls(node):
        return {key: nulls(value) if isinstance(value, dict) else None for key, value in node.items()}

    return nulls(OmegaConf.to_container(OmegaConf.structured(schema)))


@dataclass
class EvalAppConfig:
    checkpoint: str = "???"
    split: str = "test"
    batch_size: int = 2
    # Everything else (model, classes, dataset) comes from the checkpoint. `dataset=<group>` replaces the
    # checkpoint's dataset config; `dataset.KEY=...` / `model.KEY=...` change single keys of it.
    dataset: Any = field(default_factory=lambda: _override_slots(DatasetConfig))
    model: Any = field(default_factory=lambda: _override_slots(ModelConfig))
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(num_workers=2, persistent_workers=False))
    amp: str = "off"  # off | fp16 (CUDA) | bf16
    device: str = "auto"


@dataclass
class PredictAppConfig:
    checkpoint: str = ""  # the training checkpoint (backend=pytorch: required)
    input: str = "???"  # an image file or a folder of images
    output: str = "predictions"
    score_thresh: float = 0.5  # boxes drawn and written at or above this score
    batch_size: int = 1
    model: Any = field(default_factory=lambda: _override_slots(ModelConfig))  # e.g. model.roi.nms_thresh=0.5
    amp: str = "off"
    device: str = "auto"
    # pytorch: the checkpoint's model | onnxruntime: the ONNX file `exported` written by frcnn-export (pip install
    # 'frcnn[export]'); its settings are part of the graph, so model.* cannot change them.
    backend: str = "pytorch"
    exported: str = ""


@dataclass
class ExportAppConfig:
    checkpoint: str = "???"
    format: str = "onnx"  # onnx | torch_export (a torch.export program, .pt2)
    output: str = ""  # "" = model.onnx / model.pt2 in the working directory
    model: Any = field(default_factory=lambda: _override_slots(ModelConfig))  # test-time settings baked in


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainAppConfig)
    cs.store(name="eval_schema", node=EvalAppConfig)
    cs.store(name="predict_schema", node=PredictAppConfig)
    cs.store(name="export_schema", node=ExportAppConfig)


register_configs()
