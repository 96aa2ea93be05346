"""The tests find the commands the way a shell does, so they run wherever the package is importable: a virtual
environment's scripts, scripts elsewhere on PATH (pip install --user: ~/.local/bin), or none at all (the project
only on PYTHONPATH beside an image's own torch), where the command's module runs under ``python -m``."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from shlex import quote

import pytest

from helpers import COMMAND_MODULES, REPO, command, output_of, pythonpath, run_command

NAMES = sorted(COMMAND_MODULES)
REAL_PYTHON = sys.executable  # before any test moves it


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def bare_python(tmp_path, monkeypatch):
    """``sys.executable`` moved to a bin folder that holds no scripts, and a PATH without the real one's bin."""
    bare = tmp_path / "bare/bin"
    bare.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bare / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return bare


def test_the_script_beside_the_interpreter_comes_first(bare_python, tmp_path, monkeypatch):
    beside = executable(bare_python / "frcnn-train")
    executable(tmp_path / "local/bin/frcnn-train")
    monkeypatch.setenv("PATH", str(tmp_path / "local/bin"))
    assert command("frcnn-train") == [str(beside)]


@pytest.mark.parametrize("name", NAMES)
def test_a_script_on_path_is_found_when_none_is_beside_the_interpreter(bare_python, tmp_path, monkeypatch, name):
    on_path = executable(tmp_path / "local/bin" / name)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "empty"), str(on_path.parent)]))
    assert command(name) == [str(on_path)]


@pytest.mark.parametrize("name", NAMES)
def test_without_any_script_the_module_runs(bare_python, name):
    (bare_python / name).write_text("not executable: a shell would not run it either")
    assert command(name) == [str(bare_python / "python"), "-m", COMMAND_MODULES[name]]


def test_the_modules_are_those_of_the_console_scripts():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: target.split(":")[0] for name, target in scripts.items()} == COMMAND_MODULES
    assert set(target.split(":")[1] for target in scripts.values()) == {"main"}


def test_a_command_runs_as_its_module_where_no_script_is_installed(bare_python, tmp_path):
    """The machine without scripts, for real: the "interpreter" beside no scripts (a wrapper that notes how it was
    called and runs this one), no frcnn-* on PATH. The command still runs, with this process's PYTHONPATH."""
    calls = tmp_path / "calls"
    wrapper = f'#!/bin/sh\necho "$@" >> {quote(str(calls))}\nexec {quote(REAL_PYTHON)} "$@"\n'
    executable(bare_python / "python", wrapper)
    proc = run_command("frcnn-train", "--help", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.startswith("frcnn-train: ")
    assert calls.read_text() == "-m frcnn.cli.train --help\n"


def test_a_subprocess_pythonpath_extends_this_processes(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/image/site", "/project"]))
    assert pythonpath("/first", Path("/second")) == os.pathsep.join(["/first", "/second", "/image/site", "/project"])
    monkeypatch.delenv("PYTHONPATH")
    assert pythonpath("/first") == "/first"
