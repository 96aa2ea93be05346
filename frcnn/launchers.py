"""Where a process stands in a multi-GPU job that SLURM started (srun, or Hydra's submitit_slurm launcher).

torchrun tells each process its place through RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Under
SLURM one task is one rank and the scheduler says the same through its own variables; this module translates them
(the logic of ``submitit.helpers.TorchDistributedEnvironment``, as a pure function of the environment):

    SLURM_PROCID -> RANK    SLURM_STEP_NUM_TASKS (else SLURM_NTASKS) -> WORLD_SIZE    SLURM_LOCALID -> LOCAL_RANK
    first host of SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST) -> MASTER_ADDR    SLURM_JOB_ID -> MASTER_PORT

Every rank of one job computes the same address and port, so they meet without talking first.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

from frcnn.errors import FrcnnError

# Ports 20000..39999, one per job id: above the well-known services; two jobs on one node share a port only when
# their ids differ by a multiple of 20000. (submitit draws from 20000..60000 seeded by the job id: same idea.)
_PORT_BASE, _PORT_SPAN = 20000, 20000
_DEFAULT_PORT = 29500  # torchrun's, when a SLURM task has no job id (it always has one)

# The first node group of a Slurm host list: plain characters and bracketed ranges up to the first top-level comma.
_FIRST_GROUP = re.compile(r"(?:[^,\[]|\[[^\]]*\])+")
# A bracketed range list "[01-04,07]": its first host number is the lower end of its first range ("01").
_RANGE = re.compile(r"\[([^\]\-,]+)[^\]]*\]")


def distributed_env_from_slurm(environ: Mapping[str, str]) -> Optional[dict]:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; string values, ready for
    ``os.environ.update``) for a process that is one task of a SLURM job step, or None when it is not one
    (no SLURM_PROCID) or torchrun already set RANK (torchrun inside a SLURM job wins).

    A job of one task gives WORLD_SIZE "1". MASTER_ADDR and MASTER_PORT already in ``environ`` (the user's) are
    kept. Raises :class:`FrcnnError` for variables that are not whole numbers or a rank outside the world.
    """
    if "RANK" in environ or "SLURM_PROCID" not in environ:
        return None
    rank = _whole_number(environ, "SLURM_PROCID")
    # srun sets the step's own task count; SLURM_NTASKS may be the whole allocation's when a step uses part of it,
    # and a world larger than the processes that run would leave init_process_group waiting forever.
    world_key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS"
    world_size = _whole_number(environ, world_key, default=1)
    local_rank = _whole_number(environ, "SLURM_LOCALID", default=0)
    if not 0 <= rank < world_size:
        raise FrcnnError(f"SLURM_PROCID={rank} is not a rank of a job of {world_key}={world_size} tasks; "
                         f"start the command with srun (or Hydra's submitit_slurm launcher), or unset SLURM_PROCID")
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(local_rank),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or _master_addr(environ),
        "MASTER_PORT": environ.get("MASTER_PORT") or str(_master_port(environ)),
    }


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: "node[01-04,07],gpu3" -> "node01", "a[1-2]-ib[3-4]" -> "a1-ib3"."""
    nodelist = nodelist.strip()
    match = _FIRST_GROUP.match(nodelist)
    # The group runs to the end or to a comma, and every bracket in it holds a number: else it is malformed.
    host = _RANGE.sub(r"\1", match.group(0)) if match else ""
    if not host or "[" in host or "]" in host or nodelist[match.end():match.end() + 1] not in ("", ","):
        raise FrcnnError(f"cannot read a host name from the Slurm node list {nodelist!r}; set MASTER_ADDR to the "
                         f"host of rank 0")
    return host


def _master_addr(environ: Mapping[str, str]) -> str:
    # Rank 0 runs on the first node of the step; a step is given its own list when it uses part of the job.
    for key in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if environ.get(key):
            return first_host(environ[key])
    return "127.0.0.1"  # a job always has a node list; without one, only a job on this node can be meant


def _master_port(environ: Mapping[str, str]) -> int:
    if not environ.get("SLURM_JOB_ID"):
        return _DEFAULT_PORT
    return _PORT_BASE + _whole_number(environ, "SLURM_JOB_ID") % _PORT_SPAN


def _whole_number(environ: Mapping[str, str], key: str, default: Optional[int] = None) -> int:
    value = environ.get(key)
    if value is None and default is not None:
        return default
    if value is None or not re.fullmatch(r"[0-9]+", value.strip()):  # int() also takes "1_000", "-1"
        raise FrcnnError(f"{key}={value!r} in the environment is not a whole number; run under srun (or Hydra's "
                         f"submitit_slurm launcher), which sets it, or unset the SLURM_* variables")
    return int(value)
