"""frcnn.launchers: a SLURM task's place in a multi-GPU job, read from fake SLURM environments; and the launcher
configs under conf/hydra/ compose into what the plugins expect."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from frcnn.errors import FrcnnError
from frcnn.launchers import distributed_env_from_slurm, first_host

from helpers import CONF_DIR, REPO

# What srun gives task 5 of a 2-node x 4-GPU job (one task per GPU): the second task on the second node.
SRUN_TASK = {
    "SLURM_JOB_ID": "123456",
    "SLURM_PROCID": "5",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_JOB_NODELIST": "gpu-node[07-08]",
    "SLURM_STEP_NODELIST": "gpu-node[07-08]",
}


def test_a_slurm_task_is_one_rank_of_the_job():
    assert distributed_env_from_slurm(SRUN_TASK) == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu-node07",  # rank 0 runs on the first node
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }


def test_every_rank_of_a_job_meets_at_the_same_address_and_port():
    ranks = [distributed_env_from_slurm({**SRUN_TASK, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r % 4)})
             for r in range(8)]
    assert {(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in ranks} == {("gpu-node07", "23456")}
    assert [e["RANK"] for e in ranks] == [str(r) for r in range(8)]
    # Two jobs on one node (consecutive ids) do not fight over one port.
    other = distributed_env_from_slurm({**SRUN_TASK, "SLURM_JOB_ID": "123457"})
    assert other["MASTER_PORT"] == "23457"


def test_outside_slurm_or_under_torchrun_there_is_nothing_to_translate():
    assert distributed_env_from_slurm({}) is None
    assert distributed_env_from_slurm({"HOME": "/root", "PATH": "/bin"}) is None
    # An sbatch shell has a job id but no task: still nothing (SLURM_PROCID is what srun gives each task).
    assert distributed_env_from_slurm({"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1"}) is None
    # torchrun inside a SLURM allocation: torchrun's own RANK wins, whatever SLURM says.
    assert distributed_env_from_slurm({**SRUN_TASK, "RANK": "0", "WORLD_SIZE": "2"}) is None


def test_the_step_task_count_wins_over_the_allocation():
    # srun -n 2 inside an allocation of 8 tasks: a world of 8 would wait forever for 6 ranks that never start.
    step = {**SRUN_TASK, "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "gpu-node08"}
    env = distributed_env_from_slurm(step)
    assert (env["WORLD_SIZE"], env["MASTER_ADDR"]) == ("2", "gpu-node08")
    # Without step variables (an older Slurm) the job's own count and node list are used.
    bare = {k: v for k, v in SRUN_TASK.items() if not k.startswith("SLURM_STEP_")}
    assert distributed_env_from_slurm(bare)["WORLD_SIZE"] == "8"
    assert distributed_env_from_slurm(bare)["MASTER_ADDR"] == "gpu-node07"


def test_a_one_task_job_is_a_world_of_one_and_defaults_fill_what_is_missing():
    env = distributed_env_from_slurm({"SLURM_PROCID": "0"})
    assert env == {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": "29500"}


def test_the_users_own_master_address_and_port_are_kept():
    env = distributed_env_from_slurm({**SRUN_TASK, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "12345"})
    assert (env["MASTER_ADDR"], env["MASTER_PORT"], env["RANK"]) == ("10.0.0.1", "12345", "5")


@pytest.mark.parametrize("nodelist,host", [
    ("node01", "node01"),
    ("node01,node02", "node01"),
    ("node[01-04,07]", "node01"),
    ("node[07,01-04]", "node07"),  # the order Slurm wrote, not the smallest number
    ("node[001-002]-ib", "node001-ib"),
    ("rack[1-2]-gpu[3-4],login1", "rack1-gpu3"),
    ("cn[5],cn[7-9]", "cn5"),
    ("a-b.c.d[10-11]", "a-b.c.d10"),
    ("  node3  ", "node3"),
])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize("nodelist", ["", "[", "node[01-02", ",node1", "node[]", "node[-3]", "n]1"])
def test_an_unreadable_node_list_names_itself_and_what_to_set(nodelist):
    with pytest.raises(FrcnnError, match="MASTER_ADDR"):
        first_host(nodelist)


@pytest.mark.parametrize("key,value", [("SLURM_PROCID", "x"), ("SLURM_NTASKS", ""), ("SLURM_LOCALID", "-1"),
                                       ("SLURM_JOB_ID", "12_3")])
def test_a_variable_that_is_not_a_whole_number_is_named(key, value):
    env = {k: v for k, v in SRUN_TASK.items() if k != "SLURM_STEP_NUM_TASKS"}
    with pytest.raises(FrcnnError, match=f"{key}='{value}' in the environment is not a whole number"):
        distributed_env_from_slurm({**env, key: value})


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(FrcnnError, match="SLURM_PROCID=8 is not a rank of a job of SLURM_STEP_NUM_TASKS=8 tasks"):
        distributed_env_from_slurm({**SRUN_TASK, "SLURM_PROCID": "8"})


def _sbatch_script(launcher_cfg, sweep_dir, monkeypatch) -> str:
    """The sbatch script Hydra's submitit launcher would submit for ``launcher_cfg``, written here without a
    cluster: a stand-in srun on PATH (submitit looks for one), and map_array kept from submitting."""
    import submitit

    fake_bin = sweep_dir / "bin"
    fake_bin.mkdir(parents=True)
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    executors = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", lambda self, *args: executors.append(self) or [])
    launcher = instantiate(launcher_cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=launcher_cfg)
    launcher.launch([["train.lr=0.01"]], initial_job_idx=0)
    # submitit's own rendering of the job file (its private helper: the version is pinned in pyproject.toml).
    return executors[0]._executor._make_submission_file_text("python -m frcnn.cli.train", "uid")


def test_slurm_ddp_asks_slurm_for_one_task_per_gpu_on_every_node(tmp_path, monkeypatch):
    overrides = ["hydra/launcher=slurm_ddp", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2",
                 "hydra.launcher.gpus_per_node=4", f"hydra.sweep.dir={tmp_path}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    script = _sbatch_script(cfg, tmp_path, monkeypatch)
    lines = set(script.splitlines())
    # 2 nodes x 4 GPUs = 8 ranks: a task per GPU follows gpus_per_node, so each SLURM task is one rank.
    assert {"#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
            "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --time=2880"} <= lines, script
    assert any(line.startswith("srun ") for line in lines), script  # srun starts the tasks (SLURM_PROCID each)
    assert f"#SBATCH --output={tmp_path}/.submitit/%j/%j_0_log.out" in lines


def test_the_package_ships_every_config_under_conf():
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["frcnn.conf"]
    conf = Path(CONF_DIR)
    shipped = {p for pattern in globs for p in conf.glob(pattern)}
    assert conf / "hydra/launcher/slurm_ddp.yaml" in shipped and conf / "hydra/sweeper/frcnn_optuna.yaml" in shipped
    assert set(conf.rglob("*.yaml")) == shipped


def test_a_slurm_task_without_torchrun_finds_its_rank(monkeypatch):
    """frcnn.engine.distributed reads SLURM's variables when torchrun's are absent (srun or the submitit launcher)."""
    import os

    from frcnn.engine.distributed import DistEnv, env_from

    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "1234",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}
    torchruns = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    fake = {**{k: v for k, v in os.environ.items() if k not in torchruns}, **slurm}
    monkeypatch.setattr(os, "environ", fake)  # this process's real environment stays untouched
    assert env_from() == DistEnv(rank=5, world_size=8, local_rank=1)
    assert fake["MASTER_ADDR"] == "gpu07" and fake["MASTER_PORT"] == str(20000 + 1234)
