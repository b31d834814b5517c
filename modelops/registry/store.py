"""The MLflow client for a tracking URI, checked before a run depends on it."""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from modelops.errors import ConfigError
from modelops.registry.settings import sqlite_path

_LOCKS: dict[str, object] = {}
HINT = "fix tracking.uri or MLFLOW_TRACKING_URI, or run with tracking=none"
_SCHEMELESS = ("databricks", "databricks-uc", "uc")  # MLflow's URIs that name no scheme


def client(uri: str):
    """An `MlflowClient` for tracking and registry at `uri`, with MLflow's usage telemetry off."""
    # MLflow reads this when it is imported and when it would send: set before either happens.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines about its tables in the run's output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in the run's output
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_store(uri: str) -> None:
    """Raise `ConfigError` naming `uri` when runs cannot be written there (unreachable server, read-only file).

    Called before training, so a bad store fails in seconds, not after the run.
    """
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
        return
    if ":" not in uri and uri not in _SCHEMELESS:  # a bare path: MLflow would take it for its retired file store
        local = Path(uri).expanduser().resolve()
        db = local if local.suffix == ".db" else local / "mlflow.db"
        raise ConfigError(
            f"tracking store {uri!r}: a path, not a tracking URI; give sqlite:///{db} for a local store (or a "
            "server's http://host:5000) in tracking.uri or MLFLOW_TRACKING_URI, or run with tracking=none"
        )
    path = sqlite_path(uri)
    if path is None:
        return  # another backend (postgresql://, databricks, ...): MLflow reports its own errors
    folder = path.parent
    # No write bit counts even for root, whom the OS (and SQLite) would let write anyway.
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise ConfigError(f"tracking store {path}: the database file is read-only; make it writable or {HINT}")
    if folder.exists() and not os.access(folder, os.W_OK):
        raise ConfigError(f"tracking store {path}: its folder {folder} cannot be written; {HINT}")


def _check_server(uri: str, timeout: float = 5.0) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise ConfigError(f"tracking server {uri} answers HTTP {exc.code}; {HINT}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"tracking server {uri} is unreachable ({reason}); start it, or {HINT}") from exc


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise writes of several processes to one SQLite file (table creation races, `database is locked`)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    # One lock object per file: taking it again inside (a tracker method called from `finish`) only counts up.
    lock = _LOCKS.setdefault(str(path), FileLock(str(path) + ".lock", timeout=600))
    with lock:
        yield


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of the embedded store live beside its database (`outputs/mlartifacts/`), not in the cwd."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts" / experiment).resolve().as_uri() if path else None


def experiment_id(mlflow_client, uri: str, name: str) -> str:
    """The id of experiment `name`, created when missing (by this or, at the same moment, another process)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location(uri, name))
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
