"""Check a composed config before anything heavy is imported: keys, types, targets, stages.

Every `_target_` must start with an allowed import prefix. For targets inside modelops (plain
dataclasses and functions whose modules import nothing heavy) each key is checked against the
target's parameters and their annotated types, with the key's full path and a did-you-mean in
the error. Library targets (`peft.LoraConfig`, `torch.optim.AdamW`) are checked when they are
instantiated, where a wrong argument is reported with the same full path.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import types
import typing
from typing import Any

from modelops.errors import ConfigError

DEFAULT_ALLOWED = ("modelops.", "torch.", "transformers.", "peft.", "datasets.", "accelerate.")
STAGES = ("sanitize", "preview", "train", "evaluate")
GROUPS = ("dataset", "sanitizer", "model", "trainer", "evaluator", "tracking", "registry")
TOP_LEVEL = (*GROUPS, "stages", "allowed_targets", "objective")
_SPECIAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def validate(cfg) -> None:
    """Raise `ConfigError` naming the key for the first problem found in the composed config."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key}: missing required value (???); set it, e.g. {exc.full_key}=...") from None
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{exc.full_key}: {exc.msg}") from None
    _check_keys("", data, TOP_LEVEL)
    allowed = DEFAULT_ALLOWED + tuple(data.get("allowed_targets") or ())
    for stage in data.get("stages") or []:
        if stage not in STAGES:
            raise ConfigError(f"stages: unknown stage {stage!r}{_suggest(stage, STAGES)}; stages are {list(STAGES)}")
    for group in GROUPS:
        if group in data and data[group] is not None:
            check_node(group, data[group], allowed)
    # A dotted metric name is an import path too: it must pass the same allowlist.
    for i, metric in enumerate((data.get("evaluator") or {}).get("metrics") or []):
        if isinstance(metric, str) and "." in metric:
            check_target(f"evaluator.metrics.{i}", metric, allowed)


def check_node(path: str, node: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_node(f"{path}.{i}", item, allowed)
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if target is not None:
        check_target(f"{path}._target_", target, allowed)
        if target.startswith("modelops."):
            _check_against_signature(path, node, _locate(f"{path}._target_", target))
    for key, value in node.items():
        if key not in _SPECIAL:
            check_node(f"{path}.{key}", value, allowed)


def check_target(key: str, target: str, allowed: tuple[str, ...]) -> None:
    """Refuse a `_target_` outside the allowed import prefixes (no arbitrary code from a recipe)."""
    if not isinstance(target, str) or not target.startswith(allowed):
        raise ConfigError(
            f"{key}: {target!r} is not an allowed target; allowed prefixes are {list(allowed)} "
            "(add one to `allowed_targets` in your config to trust it)"
        )


def _locate(key: str, target: str):
    module_name, _, attr = target.rpartition(".")
    parts = []
    while module_name:
        try:
            obj = importlib.import_module(module_name)
            break
        except ModuleNotFoundError:
            module_name, _, parent = module_name.rpartition(".")
            parts.insert(0, parent)
    else:
        raise ConfigError(f"{key}: cannot import {target!r}")
    for name in [*parts, attr]:
        if not hasattr(obj, name):
            raise ConfigError(f"{key}: {target!r} does not exist")
        obj = getattr(obj, name)
    return obj


def _parameters(obj) -> dict[str, Any]:
    """Parameter name -> annotation (or `Any`) of a dataclass, class or function."""
    func = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    hints = typing.get_type_hints(func) if not dataclasses.is_dataclass(obj) else typing.get_type_hints(obj)
    params = inspect.signature(obj).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {}
    return {name: hints.get(name, Any) for name in params if name not in ("self", "args")}


def _check_against_signature(path: str, node: dict, obj) -> None:
    params = _parameters(obj)
    if not params:
        return
    _check_keys(path, node, tuple(params))
    for key, value in node.items():
        if key in _SPECIAL or isinstance(value, dict | list) or value is None:
            continue
        if not _fits(value, params[key]):
            raise ConfigError(
                f"{path}.{key}: expected {_type_name(params[key])}, got {value!r} ({type(value).__name__})"
            )


def _check_keys(path: str, node: dict, known: tuple[str, ...]) -> None:
    for key in node:
        if key not in known and key not in _SPECIAL:
            full = f"{path}.{key}" if path else key
            raise ConfigError(f"{full}: unknown key{_suggest(key, known)}; valid keys: {sorted(known)}")


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fits(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is None:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is not None:
        return True  # containers and generics: checked by the target itself
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
