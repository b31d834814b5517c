"""Several processes (torchrun / accelerate launch) running the Hydra entrypoint together.

Each rank would otherwise resolve `${now:...}` at its own moment and may pick its own run
directory, write its own `.hydra/` and logs, and trip over `--local_rank` arguments that Hydra
does not understand. Before Hydra starts, `prepare_argv`:

- drops `--local_rank=N` / `--local-rank N` (the rank is read from the environment instead);
- lets rank 0 choose the run directory and broadcasts it to every rank (unless the command line
  already fixes `hydra.run.dir`), through the process group that Accelerate then reuses;
- turns off Hydra's output folder and logging files on every rank but 0.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

RUN_DIR_FORMAT = "outputs/%Y-%m-%d/%H-%M-%S"  # plus a random id, as conf/config.yaml does


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this is the first process of a launch (or the only one): the one that writes the run directory.

    Read from the launcher's `RANK`, so it holds before (and without) any process group or Accelerator.
    """
    return int(os.environ.get("RANK", "0")) == 0


def strip_local_rank(argv: list[str]) -> list[str]:
    """argv without `--local_rank=N`, `--local-rank=N` or `--local_rank N` (setting LOCAL_RANK instead)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name, _, value = arg.partition("=")
        if name in ("--local_rank", "--local-rank"):
            if not value and i + 1 < len(argv):
                value, skip = argv[i + 1], True
            os.environ.setdefault("LOCAL_RANK", value)
            continue
        out.append(arg)
    return out


def _broadcast_run_dir() -> str:
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        # The backend Accelerate would pick, so it can keep using this group.
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    chosen = [f"{time.strftime(RUN_DIR_FORMAT)}-{secrets.token_hex(3)}" if is_main_process() else None]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def check_output_dirs(argv: list[str]) -> Path | None:
    """Refuse names from config that would leave their parent; return the parent of a run/sweep dir the user named.

    `hydra.run.dir` and `hydra.sweep.dir` are the user's own choice and go anywhere; a sweep job's
    `hydra.sweep.subdir` and `hydra.job.name` (which names the log file) stay inside their directory.
    """
    from modelops.config.paths import check_child_name

    parent = None
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.sweep.subdir", "hydra.job.name") and "${" not in value:
            check_child_name(key, value)
        if key in ("hydra.run.dir", "hydra.sweep.dir") and "${" not in value:
            parent = _existing_ancestor(Path(value).expanduser().absolute())
    return parent


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def prepare_argv(argv: list[str]) -> list[str]:
    """The command line Hydra should see in this process (unchanged for a single process)."""
    argv = strip_local_rank(argv)
    chosen = check_output_dirs(argv)
    if is_main_process():
        from modelops.config.paths import check_outputs_writable

        check_outputs_writable(outputs=chosen)
    if world_size() <= 1 or any(a in ("-m", "--multirun") for a in argv):
        return argv
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        argv = [*argv, f"hydra.run.dir={_broadcast_run_dir()}"]
    if not is_main_process():
        # conf/config.yaml routes the job log to a file handler that the disabled config does not define.
        argv = [*argv, "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
                "hydra.job_logging.root.handlers=[]"]  # fmt: skip
    return argv
