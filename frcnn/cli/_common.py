"""What the three commands share: where the configs are, the run directory, and how input errors are reported."""
from __future__ import annotations

import io
import logging
import sys
from typing import Callable, List, TypeVar

log = logging.getLogger("frcnn")

CONFIG_PATH = "pkg://frcnn.conf"  # the configs ship inside the package (frcnn/conf -> conf/)
T = TypeVar("T")


def run_console_script(hydra_main: Callable[[], T]) -> T:
    """Run a ``@hydra.main`` function as a console script; under torchrun as one rank of the job: ranks other than
    0 write nothing (:func:`quiet_hydra_on_other_ranks`) and keep their Python-level stderr back, so that a config
    error (Hydra's, or one of ours) is printed once, by rank 0. Anything else a rank prints -- a traceback, an exit
    other than the clean status 1 of an input error -- is let through when that rank ends."""
    from frcnn.engine.distributed import env_from

    sys.argv = [sys.argv[0], *quiet_hydra_on_other_ranks(sys.argv[1:])]
    if env_from().rank == 0:
        return hydra_main()
    held, real = io.StringIO(), sys.stderr
    sys.stderr = held
    try:
        return hydra_main()
    except SystemExit as exit:
        if exit.code not in (1, "1"):
            real.write(held.getvalue())
        raise
    except BaseException:
        real.write(held.getvalue())
        raise
    finally:
        sys.stderr = real


def quiet_hydra_on_other_ranks(argv: List[str]) -> List[str]:
    """Under torchrun, ranks other than 0 let Hydra write nothing (no run directory of their own, no ``.hydra/``
    copy, no log file): rank 0's run directory is the run's, and they receive its path from rank 0."""
    from frcnn.engine.distributed import env_from

    if env_from().rank == 0:
        return argv
    kept = [arg for arg in argv if not arg.lstrip("+").startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*kept, "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled"]


def run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def run_job(job: Callable[..., T], cfg, *args) -> T:
    """``job(cfg, *args)``, with every input error of the project's own (:class:`frcnn.errors.FrcnnError`: a
    config value, dataset, checkpoint or run directory the user can fix) printed as one line and exit status 1.
    Anything else is a bug and keeps its traceback."""
    from frcnn.errors import FrcnnError

    try:
        return job(cfg, *args)
    except FrcnnError as error:
        fail(error)


def fail(error: BaseException) -> None:
    """A clean one-line error instead of a traceback for problems the user can fix (exit status 1); under
    torchrun every rank exits, and only rank 0 prints it."""
    from frcnn.engine.distributed import is_main_process

    if is_main_process():
        log.error("%s", error)
    raise SystemExit(1)
