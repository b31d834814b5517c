"""Where modelops keeps what it builds or downloads once: `$MODELOPS_CACHE`, else `~/.cache/modelops`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: tiny models, tokenised data, registered models downloaded from a store."""
    return Path(os.environ.get("MODELOPS_CACHE", Path.home() / ".cache" / "modelops"))
