"""Fixtures every test folder may use; the shared helpers themselves are plain functions in tests/helpers."""
from __future__ import annotations

import pytest
import torch

from helpers import SMALL_MODEL, compose_config, tiny_overrides


@pytest.fixture(scope="session")
def tiny_run_overrides():
    """``tiny_run_overrides(data_root)``: the overrides of a complete, seconds-long training run (engine, CLI)."""
    return tiny_overrides


@pytest.fixture
def small_config():
    def make(*overrides):
        return compose_config([*SMALL_MODEL, *overrides])

    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
