"""`job.json`: a run's status, progress, timestamps, error, events and metrics, written atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from modelops.io import write_json

STATUSES = ("queued", "validating", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
_MAX_EVENTS = 500


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class JobRecord:
    """The writer of one run's `job.json`. Progress only ever rises; every write is atomic.

    Args:
        path: the `job.json` file.
        enabled: false on non-main processes, which must not write.
    """

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.data: dict[str, Any] = read_job(self.path) if self.path.exists() else {
            "status": "queued", "progress": 0.0, "created_at": now(), "started_at": None,
            "finished_at": None, "error": None, "events": [], "metrics": {},
        }  # fmt: skip

    def update(self, **fields: Any) -> None:
        if "progress" in fields:
            fields["progress"] = max(float(self.data.get("progress", 0.0)), min(1.0, float(fields["progress"])))
        status = fields.get("status")
        if status == "running" and not self.data.get("started_at"):
            fields["started_at"] = now()
        if status in FINAL:
            fields["finished_at"] = now()
        self.data.update(fields)
        self._write()

    def event(self, message: str, **data: Any) -> None:
        self.data["events"] = (self.data["events"] + [{"time": now(), "message": message, **data}])[-_MAX_EVENTS:]
        self._write()

    def _write(self) -> None:
        if self.enabled:
            write_json(self.path, self.data)


def read_job(path: str | Path) -> dict[str, Any]:
    """Read a `job.json` (always whole: writers rename complete files into place)."""
    return json.loads(Path(path).read_text())
