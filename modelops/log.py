"""The run's progress lines: printed for the user and logged under `modelops`.

Under the CLI, Hydra's job logging writes the `modelops` log to `<run dir>/__main__.log`
(conf/config.yaml sends log records to that file only, so the console shows each line once).
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("modelops")


def say(message: str, *, err: bool = False, level: int = logging.INFO) -> None:
    """Print `message` (to stderr with `err`) and log it at `level`."""
    print(message, file=sys.stderr if err else sys.stdout, flush=True)
    LOGGER.log(level, message)
