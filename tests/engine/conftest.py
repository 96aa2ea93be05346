"""Fixtures for the engine tests: the real configs shrunk to a few tiny shapes images and a tiny model."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import compose_config, tiny_overrides


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A folder the tiny shapes data is generated into on first use (shared by the session's tests)."""
    return tmp_path_factory.mktemp("shapes_data") / "shapes"


@pytest.fixture
def tiny_cfg(shapes_root):
    def make(*extra):
        return compose_config([*tiny_overrides(shapes_root), *extra])

    return make
