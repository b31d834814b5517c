"""Who may use a run directory: a new run never lands on top of another run's results.

A run directory holds one run, recorded in its `job.json` with the key of the config it was started
with (`config_key`). Starting again in a directory that holds a run is allowed only for that same
run (the same config: a resume, which continues from its latest checkpoint); a run with another
config is refused, with what to do instead, unless the user asks to overwrite, which renames the
old run aside (``<dir>.old-<time>``, never deleted) before the new one starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError
from modelops.log import say

JOB_FILE = "job.json"
KEY_FIELD = "config_key"
# What may change between a run and its resume: how to resume and whether to overwrite are not the run's config.
_NOT_THE_RUN = (("trainer", "resume"), ("overwrite",))


@dataclass(frozen=True)
class Claim:
    """What claiming a run directory found.

    Attributes:
        resumed: the directory holds this same run (same config), which continues.
        moved_to: where an earlier run with another config was renamed to (overwrite), else None.
    """

    resumed: bool = False
    moved_to: Path | None = None


def config_key(config: Mapping[str, Any]) -> str:
    """A SHA-256 of a run's config (plain containers), leaving out `trainer.resume` and `overwrite`."""
    plain = json.loads(json.dumps(config, default=str))
    for path in _NOT_THE_RUN:
        node = plain
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def claim(run_dir: str | os.PathLike, key: str, *, overwrite: bool = False, override: str = "overwrite=true",
          resume_hint: str = "run it again with the same config and overrides") -> Claim:  # fmt: skip
    """Check that a run with config `key` may use `run_dir`; with `overwrite`, move another run aside.

    Args:
        run_dir: the run directory (it may not exist yet).
        key: the new run's `config_key`.
        overwrite: rename a run with another config to ``<run_dir>.old-<time>`` instead of refusing.
        override: how the user asks for `overwrite`, for the message (``overwrite=true``, ``overwrite=True``).
        resume_hint: how the user resumes the run found there, for the message.

    Raises:
        ConfigError: the directory holds a run with another config (or one whose config is unknown),
            and `overwrite` is false; the message says how to resume it or where else to go.
    """
    run_dir = Path(run_dir)
    found = read_run(run_dir)
    if found is None:
        return Claim()
    if found.get(KEY_FIELD) == key:
        return Claim(resumed=True)
    if overwrite:
        moved = move_aside(run_dir)
        say(f"{run_dir}: held a run with another config (status {found.get('status')}); moved it to {moved}")
        return Claim(moved_to=moved)
    started = found.get("created_at") or "an earlier time"
    why = "another config" if found.get(KEY_FIELD) else "a config this version cannot compare (no config key)"
    raise ConfigError(
        f"{run_dir}: holds a run started {started} (status {found.get('status')}) with {why}; its results are "
        f"kept. To continue that run, {resume_hint}; to start this one, choose another directory, or set "
        f"{override} to move the old run aside (renamed to {run_dir.name}.old-<time>, not deleted)"
    )


def read_run(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The `job.json` of the run `run_dir` holds, or None when it holds none (missing, empty, not a run)."""
    path = Path(run_dir) / JOB_FILE
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        found = {"status": "unreadable job.json"}
    return found if isinstance(found, dict) else {"status": "unreadable job.json"}


def move_aside(run_dir: str | os.PathLike) -> Path:
    """Rename `run_dir` to a free ``<name>.old-<YYYYmmdd-HHMMSS>[-N]`` beside it; return the new path."""
    run_dir = Path(run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = run_dir.with_name(f"{run_dir.name}.old-{stamp}"), 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    os.replace(run_dir, target)
    return target


def set_aside(path: str | os.PathLike) -> Path | None:
    """Rename a file of an earlier attempt (`metrics.jsonl` of a training that starts over) to ``<name>.old-<time>``."""
    path = Path(path)
    if not path.exists():
        return None
    return move_aside(path)


def run_dir_override(argv: list[str]) -> str | None:
    """The run directory a command line names with ``hydra.run.dir=...`` (the last one), or None."""
    found = None
    for arg in argv:
        if arg.startswith(("hydra.run.dir=", "++hydra.run.dir=")):
            found = arg.split("=", 1)[1].strip("'\"")
    return found
