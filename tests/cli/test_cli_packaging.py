"""A plain (non-editable) install ships the configs: the commands compose them from any directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import pythonpath

REPO = Path(__file__).resolve().parents[2]
_TOP_LEVEL_SKIP = {".venv", ".git", "build", "dist", "data", "outputs", "multirun", "runs", "tests", "scripts"}


def _skip(folder, names):
    skip = {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}
    if Path(folder) == REPO:
        skip |= _TOP_LEVEL_SKIP & set(names)
    return skip


def test_a_plain_install_finds_its_configs_from_any_directory(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=_skip)  # keeps frcnn/conf -> ../conf a link
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, cwd=tmp_path)
    conf = target / "frcnn" / "conf"
    assert not conf.is_symlink() and (conf / "train.yaml").is_file() and (conf / "experiment/shapes.yaml").is_file()
    assert {p.stem for p in (conf / "backbone").glob("*.yaml")} >= {"vgg16", "resnet101"}
    for package in ("data", "modeling", "evaluation", "engine", "cli"):
        assert (target / "frcnn" / package / "__init__.py").is_file(), package
    shutil.rmtree(source)  # nothing may point back at the sources
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": pythonpath(target)}  # the install first; the rest stays importable
    checks = [
        ("frcnn.cli.train", ["experiment=shapes", "--cfg", "job"], "name: resnet18"),
        ("frcnn.cli.eval", ["checkpoint=x.pt", "dataset=voc07", "--cfg", "job"], "name: voc07"),
        ("frcnn.cli.predict", ["checkpoint=x.pt", "input=y", "--cfg", "job"], "score_thresh"),
        ("frcnn.cli.export", ["checkpoint=x.pt", "--cfg", "job"], "format: onnx"),
    ]
    for module, args, expected in checks:
        heavy = ", frcnn.engine.trainer, frcnn.data.build, frcnn.evaluation" if module.endswith("train") else ""
        code = (f"import sys, frcnn{heavy}; assert frcnn.__file__.startswith({str(target)!r}), frcnn.__file__; "
                f"sys.argv = ['cmd', *{args!r}]; from {module} import main; main()")
        proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
        assert proc.returncode == 0 and expected in proc.stdout, proc.stdout + proc.stderr
    assert {p.name for p in (target / "bin").iterdir()} >= {"frcnn-train", "frcnn-eval", "frcnn-predict",
                                                          "frcnn-export"}
