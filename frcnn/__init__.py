"""frcnn: a config-driven, batched Faster R-CNN trainer."""
__version__ = "0.1.0"

from frcnn import config as _config  # noqa: F401  (registers the config schemas with Hydra)


def build_model(cfg, **options):
    """Build the detector from a composed train config (see frcnn.modeling.build)."""
    from frcnn.modeling.build import build_model as _build

    return _build(cfg, **options)


__all__ = ["build_model", "__version__"]
