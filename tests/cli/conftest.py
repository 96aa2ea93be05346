"""Fixtures for the command tests: the installed console scripts, run in a subprocess on tiny shapes data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run_command(name: str, *args, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the console script ``name`` (from this interpreter's environment) with ``args`` in ``cwd``."""
    script = BIN / name
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .) to get the commands"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@pytest.fixture(scope="session")
def cli_shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_data") / "shapes"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli_shapes_root, tiny_run_overrides):
    """One 2-iteration frcnn-train run, shared by the tests that look at what it wrote."""
    work = tmp_path_factory.mktemp("cli_train")
    run_dir = work / "run"
    proc = run_command("frcnn-train", *tiny_run_overrides(cli_shapes_root), f"hydra.run.dir={run_dir}", cwd=work)
    assert proc.returncode == 0, output_of(proc)
    return run_dir, proc


@pytest.fixture(scope="session")
def cli(tiny_run_overrides):
    """The helpers above for the test modules: cli.run(name, *args, cwd=...), cli.output(proc), cli.tiny(root)."""
    from types import SimpleNamespace

    return SimpleNamespace(run=run_command, output=output_of, tiny=tiny_run_overrides)
