"""Bad input at the commands: every input error is one clean ``[frcnn][ERROR]`` line and a non-zero exit, before
anything runs, and nothing already saved is touched. Runs the commands in a subprocess (helpers.run_command: the
installed console scripts, or their modules where none are installed)."""
from __future__ import annotations

import os
import subprocess

import pytest

import frcnn  # noqa: F401  (registers the config schemas)
from frcnn.engine.launch import train

from helpers import compose_config, run_command, tiny_overrides

run = run_command


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 1, one ``[frcnn][ERROR]`` line holding every fragment, no traceback, no Hydra wrapper."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    errors = [line for line in text.splitlines() if "[frcnn][ERROR]" in line]
    assert len(errors) == 1, text
    for fragment in fragments:
        assert fragment in errors[0], text
    assert "Traceback" not in text and "Error executing job" not in text and "HYDRA_FULL_ERROR" not in text, text
    return errors[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-iteration run (trained in-process, data under the relative root ``shapes``), with a
    .hydra/overrides.yaml as frcnn-train leaves."""
    work = tmp_path_factory.mktemp("finished")
    cfg = compose_config([*tiny_overrides("shapes"), "train.vis_images=0"])
    cwd = os.getcwd()
    os.chdir(work)
    try:
        train(cfg, work / "run")
    finally:
        os.chdir(cwd)
    (work / "run/.hydra").mkdir()
    (work / "run/.hydra/overrides.yaml").write_text("- the first run's overrides\n")
    return work


@pytest.mark.parametrize("overrides,fragments", [
    (["device=gpu"], ["device=gpu is not allowed", "auto, cpu, cuda or cuda:N"]),
    (["train.lr=-1"], ["train.lr=-1.0 is out of range: must be > 0"]),
    (["train.schedule=linear"], ["train.schedule=linear is not allowed: must be one of multistep, cosine"]),
    (["experiment=shapes", "train.amp=fp16", "device=cpu"], ["amp=fp16 needs CUDA"]),
    (["dataset=voc_custom"], ["no value given for dataset.root", "dataset.root=..."]),
    ([], ["split file not found", "VOC2007/ImageSets/Main/trainval.txt"]),  # bare: VOC07, which is not here
])
def test_input_errors_of_frcnn_train_are_one_clean_line(tmp_path, overrides, fragments):
    if "device=cpu" in overrides:
        overrides = [*overrides, f"dataset.root={tmp_path / 'shapes'}", "dataset.shapes.num_train=2",
                     "dataset.shapes.num_val=1", "dataset.shapes.num_test=1"]
    assert_clean_error(run("frcnn-train", *overrides, "hydra.run.dir=run", cwd=tmp_path), *fragments)


def test_a_misspelled_experiment_fails_before_anything_runs_listing_the_choices(tmp_path):
    proc = run("frcnn-train", "experiment=shapse", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'experiment/shapse'" in proc.stderr
    assert "shapes" in proc.stderr and "voc07_vgg16" in proc.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("command,args", [("frcnn-train", ["experiment=shapes"]), ("frcnn-eval", ["checkpoint=x.pt"])])
def test_an_unwritable_run_directory_is_named(tmp_path, command, args):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    proc = run(command, *args, f"hydra.run.dir={blocker}/run", cwd=tmp_path)
    assert_clean_error(proc, f"cannot write into {blocker}/run", "must be writable", "hydra.run.dir=")


def test_rerunning_over_a_finished_run_is_refused_and_keeps_its_record(finished_run):
    run_dir = finished_run / "run"
    kept = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run("frcnn-train", "experiment=shapes", "train.max_iters=1", f"dataset.root={finished_run / 'shapes'}",
               f"hydra.run.dir={run_dir}", cwd=finished_run)
    assert_clean_error(proc, f"the run directory {run_dir} already holds a run", "train.resume=auto",
                       "train.overwrite=true")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == kept  # .hydra/ included


def test_frcnn_eval_names_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    proc = run("frcnn-eval", "checkpoint=notes.pt", "hydra.run.dir=eval", cwd=tmp_path)
    assert_clean_error(proc, "notes.pt is not a PyTorch checkpoint")


def test_frcnn_eval_needs_a_checkpoint(tmp_path):
    assert_clean_error(run("frcnn-eval", "hydra.run.dir=eval", cwd=tmp_path), "no value given for checkpoint")


def test_frcnn_eval_from_another_directory_uses_the_training_data(finished_run, tmp_path):
    """The shapes data of a relative dataset.root is not generated again in the directory eval runs in."""
    proc = run("frcnn-eval", f"checkpoint={finished_run / 'run/checkpoints/last.pt'}", "hydra.run.dir=eval",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
