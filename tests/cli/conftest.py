"""Fixtures for the command tests: the installed console scripts, run in a subprocess on tiny shapes data."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import output_of, run_command, tiny_overrides


@pytest.fixture(scope="session")
def cli_shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_data") / "shapes"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli_shapes_root):
    """One 2-iteration frcnn-train run, shared by the tests that look at what it wrote."""
    work = tmp_path_factory.mktemp("cli_train")
    run_dir = work / "run"
    proc = run_command("frcnn-train", *tiny_overrides(cli_shapes_root), f"hydra.run.dir={run_dir}", cwd=work)
    assert proc.returncode == 0, output_of(proc)
    return run_dir, proc
