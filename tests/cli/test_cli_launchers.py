"""Sweeps through Hydra's launcher and sweeper plugins (the cluster extra): joblib and submitit_local run the jobs
of a sweep in other processes, the Optuna sweeper (conf/hydra/sweeper/frcnn_optuna.yaml) maximises the mAP."""
from __future__ import annotations

import json

import yaml

from helpers import output_of, run_command, tiny_overrides

SWEPT_LRS = [0.001, 0.002]


def _sweep(launcher_args, data_root, sweep, cwd):
    """A 2-job sweep over train.lr, one training iteration each, into ``sweep``."""
    proc = run_command("frcnn-train", "-m", *launcher_args, *tiny_overrides(data_root), "train.max_iters=1",
                       "train.vis_images=0", f"train.lr={','.join(map(str, SWEPT_LRS))}",
                       f"hydra.sweep.dir={sweep}", cwd=cwd)
    assert proc.returncode == 0, output_of(proc)
    return proc


def _check_job_dirs(sweep):
    """One run directory per job, each trained with its own lr to the end (metrics.json): their mAPs."""
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    maps = []
    for job, lr in zip(jobs, SWEPT_LRS):
        assert f"train.lr={lr}" in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["mAP"] <= 1.0
        assert (job / "checkpoints/last.pt").is_file() and "iter 1/1" in (job / "train.log").read_text()
        maps.append(metrics["mAP"])
    return maps


def test_joblib_runs_the_jobs_of_a_sweep_in_parallel_processes(cli_shapes_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], cli_shapes_root, sweep, tmp_path)
    # Hydra's joblib launcher announces its pool: two jobs on two workers, not the basic launcher's loop.
    output = proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=2," in output and "is launching 2 jobs" in output
    _check_job_dirs(sweep)


def test_submitit_local_runs_each_job_in_its_own_process(cli_shapes_root, tmp_path):
    sweep = tmp_path / "sweep"
    _sweep(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"], cli_shapes_root, sweep, tmp_path)
    _check_job_dirs(sweep)
    # submitit's own record of each job (SWEEP/.submitit/JOB_ID/): its result, and its output naming its run dir.
    logs = {p.parent.name: p.read_text() for p in (sweep / ".submitit").glob("*/*_0_log.out")}
    assert len(logs) == 2, sorted(logs)
    assert all((sweep / ".submitit" / job_id / f"{job_id}_0_result.pkl").is_file() for job_id in logs)
    assert sorted(n for text in logs.values() for n in "01" if str(sweep / n / "metrics.json") in text) == ["0", "1"]


def test_the_optuna_sweeper_maximises_the_map_the_jobs_return(cli_shapes_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_command("frcnn-train", "-m", "hydra/sweeper=frcnn_optuna", "hydra.sweeper.n_trials=2",
                       *tiny_overrides(cli_shapes_root), "train.max_iters=1", "train.vis_images=0",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    maps, params = [], []
    for job in jobs:
        maps.append(json.loads((job / "metrics.json").read_text())["mAP"])
        chosen = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra/overrides.yaml").read_text()))
        lr, nms = float(chosen["train.lr"]), float(chosen["model.rpn.nms_thresh"])
        assert 1e-4 <= lr <= 1e-2 and 0.5 <= nms <= 0.8  # the search space of frcnn_optuna.yaml
        config = yaml.safe_load((job / ".hydra/config.yaml").read_text())
        assert (config["train"]["lr"], config["model"]["rpn"]["nms_thresh"]) == (lr, nms)
        params.append({"train.lr": lr, "model.rpn.nms_thresh": nms})
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(maps)  # maximised: frcnn-train returns the mAP it wrote
    assert results["best_params"] in [p for p, m in zip(params, maps) if m == max(maps)]
