"""The `tracking` and `registry` config nodes, and where the store is (no mlflow import here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The embedded store used when neither config nor `MLFLOW_TRACKING_URI` names one (relative to the cwd).
DEFAULT_DB = Path("outputs") / "mlflow.db"
DEFAULT_EXPERIMENT = "modelops"
#: The file in a run directory that names its MLflow run (a resumed run continues it).
RUN_FILE = "mlflow_run.json"


@dataclass
class TrackingConfig:
    """Where and whether runs are recorded.

    Args:
        enabled: record the run in MLflow (`tracking=none` turns it off).
        uri: an MLflow tracking URI (`http://host:5000`, `sqlite:///path.db`); null means
            `$MLFLOW_TRACKING_URI`, else the embedded `sqlite:///outputs/mlflow.db`.
        experiment: the MLflow experiment; null means the recipe's name, else `modelops`.
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None


@dataclass
class RegistryConfig:
    """The registered model a successful training becomes the next version of.

    Args:
        name: the registered model's name; null means the experiment's name.
    """

    name: str | None = None


def store_uri(uri: str | None = None) -> str:
    """The tracking URI to use: `uri`, else `$MLFLOW_TRACKING_URI`, else the embedded SQLite file (absolute)."""
    if uri:
        return uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB.resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None
