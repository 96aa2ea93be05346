"""frcnn.launchers: a SLURM task's place in a multi-GPU job, read from fake SLURM environments; and the launcher
configs under conf/hydra/ compose into what the plugins expect."""
from __future__ import annotations

import pytest

from frcnn.errors import FrcnnError
from frcnn.launchers import distributed_env_from_slurm, first_host

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
