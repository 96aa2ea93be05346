"""Fixtures for the engine tests: the real configs shrunk to a few tiny shapes images and a tiny model."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import frcnn  # noqa: F401  (registers the config schemas)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_train(overrides) -> "DictConfig":  # noqa: F821
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A folder the tiny shapes data is generated into on first use (shared by the session's tests)."""
    return tmp_path_factory.mktemp("shapes_data") / "shapes"


@pytest.fixture
def tiny_cfg(shapes_root, tiny_run_overrides):
    def make(*extra):
        return compose_train([*tiny_run_overrides(shapes_root), *extra])

    return make
