"""Model references to registered versions, resolved to a local model directory.

Accepted: `NAME` (its newest version), `NAME@alias`, `NAME/3`, and MLflow's own `models:/NAME/3`,
`models:/NAME@alias`, `models:/NAME/latest`. MLflow reserves the alias `latest`: `NAME@latest`
means the newest version, as it does in MLflow.

A version resolves to its run's `model/` directory when that run directory is still on this
machine (the source of truth), else to a copy of its artifacts downloaded once into
`$MODELOPS_CACHE/registry/`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelops.config.paths import cache_root
from modelops.errors import ModelError, did_you_mean
from modelops.registry import store
from modelops.registry.settings import RUN_FILE, sqlite_path, store_uri

_PREFIX = "models:/"
_REFERENCE = re.compile(r"^(?P<name>[^@/:]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w.-]+))?$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `explicit`: only the registry can mean it (`models:/...` or `NAME@alias`)."""

    name: str
    version: int | None = None
    alias: str | None = None
    explicit: bool = False

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version else self.name


def parse_reference(ref: str) -> Reference | None:
    """The reference `ref` spells, or None when it cannot name a registered version."""
    explicit = ref.startswith(_PREFIX)
    match = _REFERENCE.match(ref[len(_PREFIX) :] if explicit else ref)
    if match is None:
        return None
    alias = None if match["alias"] == "latest" else match["alias"]
    version = int(match["version"]) if match["version"] not in (None, "latest") else None
    return Reference(match["name"], version, alias, explicit or match["alias"] is not None)


def registered_model_dir(ref: str, uri: str | None = None) -> str | None:
    """The local model directory of the version `ref` names in the store at `uri` (default: `store_uri()`).

    Returns None when `ref` does not name a registered model and could name something else: no
    store exists yet, or `NAME/3` where NAME is not registered (a hub id then).

    Raises:
        ModelError: `ref` names the registry (`models:/`, `@alias`, or a bare NAME while a store
            exists) but the name, version or alias is not there; the message lists what is.
    """
    uri = store_uri(uri)
    found = registered_version(ref, uri)
    return None if found is None else str(local_model_dir(store.client(uri), uri, found))


def registered_version(ref: str, uri: str | None = None):
    """The `ModelVersion` `ref` names (nothing downloaded), or None as for `registered_model_dir`."""
    parsed = parse_reference(ref)
    if parsed is None:
        return None
    uri = store_uri(uri)
    if not parsed.explicit and not _store_exists(uri):
        return None
    return find_version(store.client(uri), parsed, uri, quiet=parsed.version is not None and not parsed.explicit)


def find_version(client, ref: Reference, uri: str, quiet: bool = False):
    """The `ModelVersion` `ref` names; None for an unknown name when `quiet`, else a `ModelError`."""
    from mlflow.exceptions import MlflowException

    names = [m.name for m in client.search_registered_models()]
    if ref.name not in names:
        if quiet:
            return None
        hint = did_you_mean(ref.name, names)
        raise ModelError(f"model {str(ref)!r}: no registered model {ref.name!r} in {uri}{hint}; registered: {names}")
    if ref.alias:
        try:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        except MlflowException as exc:
            aliases = sorted(client.get_registered_model(ref.name).aliases)
            raise ModelError(
                f"model {str(ref)!r}: alias {ref.alias!r} points to no version of {ref.name!r}; its aliases: "
                f"{aliases} (set one with `python -m modelops.registry promote {ref.name} VERSION {ref.alias}`)"
            ) from exc
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{ref.name}'"))
    wanted = ref.version if ref.version is not None else (versions[-1] if versions else None)
    if wanted not in versions:
        raise ModelError(f"model {str(ref)!r}: {ref.name!r} has no version {wanted}; its versions: {versions}")
    return client.get_model_version(ref.name, str(wanted))


def local_model_dir(client, uri: str, version) -> Path:
    """The version's run `model/` when that run directory is here and still that run's, else a downloaded copy."""
    run_dir = Path(version.tags.get("run_dir", ""))
    run_file = run_dir / RUN_FILE
    here = run_file.is_file() and version.run_id in run_file.read_text()
    if here and (run_dir / "model" / "modelops.json").is_file():
        return run_dir / "model"
    return _download(uri, version)


def _download(uri: str, version) -> Path:
    import mlflow.artifacts

    store_key = hashlib.sha256(uri.encode()).hexdigest()[:12]
    target = cache_root() / "registry" / store_key / version.name / str(version.version)
    if (target / "modelops.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp), tracking_uri=uri)
        if not (Path(local) / "modelops.json").is_file():
            raise ModelError(f"registered model {version.name}/{version.version}: {version.source} holds no model")
        if not target.exists():  # else another process downloaded it meanwhile
            Path(local).replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _store_exists(uri: str) -> bool:
    path = sqlite_path(uri)
    return path.is_file() if path is not None else True
