"""Check a composed config before anything is built: keys, types, targets, stages.

Every `_target_` and dotted metric name goes through `modelops.config.targets.check_target`,
which judges what it resolves to. Each node's keys are checked against its target's signature
(with the key's full path and a did-you-mean); for targets inside modelops (plain dataclasses and
functions) the annotated types of scalar values too. Targets inside modelops are checked first,
so that a mistyped key is reported before a library (torch, peft) is imported to resolve its target.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

from modelops.config.construct import construct
from modelops.config.targets import DEFAULT_ALLOWED, check_target
from modelops.errors import ConfigError, did_you_mean

__all__ = ["DEFAULT_ALLOWED", "GROUPS", "STAGES", "check_node", "check_target", "validate"]

STAGES = ("sanitize", "preview", "train", "evaluate")
GROUPS = ("dataset", "sanitizer", "model", "trainer", "evaluator", "tracking", "registry")
TOP_LEVEL = (*GROUPS, "stages", "allowed_targets", "objective", "overwrite")
_SPECIAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def check(cfg) -> None:
    """Every check of a composed config that needs no model, data or store: `validate`, then the model reference,
    the model directory, the resume path and the training data's presence.

    Raises:
        ConfigError: naming the key of the first problem found.
    """
    validate(cfg)
    check_model_reference(cfg)
    check_model_directory(cfg)
    check_resume_path(cfg)
    check_train_data(cfg)


def validate(cfg) -> None:
    """Check the composed config `cfg` before anything is built or loaded.

    Raises:
        ConfigError: naming the full key of the first problem found (an unknown key, a wrong type,
            a missing value, an unknown stage, a refused target).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key}: missing required value (???); set it, e.g. {exc.full_key}=...") from exc
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{exc.full_key}: {exc.msg}") from exc
    _check_keys("", data, TOP_LEVEL)
    allowed = _allowed_targets(data.get("allowed_targets"))
    for stage in data.get("stages") or []:
        if stage not in STAGES:
            hint = did_you_mean(stage, STAGES)
            raise ConfigError(f"stages: unknown stage {stage!r}{hint}; stages are {list(STAGES)}")
    groups = [(group, data[group]) for group in GROUPS if data.get(group) is not None]
    # Cheap checks first (modelops's own targets and values), so that a typo or a negative learning rate is
    # reported before a library (torch, peft) is imported to resolve a target of its own.
    for group, node in groups:
        _walk(group, node, allowed, libraries=False)
    _check_trainer_values(data.get("trainer"))
    for group, node in groups:
        _walk(group, node, allowed, libraries=True)
    # A dotted metric name is an import path too: it must pass the same check.
    for i, metric in enumerate((data.get("evaluator") or {}).get("metrics") or []):
        if isinstance(metric, str) and "." in metric:
            check_target(f"evaluator.metrics.{i}", metric, allowed)


def _check_trainer_values(node: Any) -> None:
    """Build the trainer settings (their range checks) without the optimizer factory, which imports torch.

    Only a target inside modelops, already checked by the first pass: anything else is built by nothing here.
    """
    target = node.get("_target_") if isinstance(node, dict) else None
    if isinstance(target, str) and target.startswith("modelops."):
        construct({**node, "optimizer": None} if "optimizer" in node else node, "trainer")


def check_model_reference(cfg) -> None:
    """Fail before any data work, naming `model.name_or_path`, when it names a local directory that is missing.

    Only references written as paths (`/models/x`, `./x`, `~/x`, `a/b/c`) are checked here; aliases,
    hub ids and registry references (`NAME@alias`, `NAME/3`, `models:/NAME/3`) are resolved when the model loads.
    """
    from pathlib import Path

    ref = cfg.get("model", {}).get("name_or_path") if cfg.get("model") is not None else None
    looks_like_path = isinstance(ref, str) and (ref.startswith(("/", ".", "~")) or ref.count("/") >= 2)
    if not looks_like_path or ref.startswith("models:/"):  # models:/NAME/3 is the registry's
        return
    path = Path(ref).expanduser()
    if not path.is_dir():
        what = "a file, not a model directory" if path.exists() else "no such local directory"
        raise ConfigError(f"model.name_or_path: {ref!r}: {what}; give a model directory, a hub id or a model alias")


def check_model_directory(cfg) -> None:
    """Fail before any data work, naming `model.name_or_path`, when it names a local directory that holds no model.

    (Run after `check_model_reference`, which reports a path that does not exist.)
    """
    from pathlib import Path

    ref = cfg.get("model", {}).get("name_or_path") if cfg.get("model") is not None else None
    looks_like_path = isinstance(ref, str) and (ref.startswith(("/", ".", "~")) or ref.count("/") >= 2)
    path = Path(ref).expanduser() if looks_like_path and not ref.startswith("models:/") else None
    if path is None or not path.is_dir():
        return
    if not any((path / marker).is_file() for marker in _MODEL_MARKERS):
        raise ConfigError(
            f"model.name_or_path: {ref!r} is a directory but not a model (none of {list(_MODEL_MARKERS)}); give a "
            "transformers model or PEFT adapter directory, a modelops run directory, a hub id or a model alias"
        )


# What makes a local directory a model modelops can load (see modelops.models.resolve).
_MODEL_MARKERS = ("config.json", "adapter_config.json", "modelops.json", "model/modelops.json")


def check_train_data(cfg) -> None:
    """Fail before any work, naming `dataset.train`, when the train stage is asked for and its file is left empty.

    (A dataset of only a test file is fine for `stages=[sanitize, evaluate]`.)
    """
    dataset = cfg.get("dataset")
    if "train" not in list(cfg.get("stages") or []) or dataset is None or "train" not in dataset:
        return
    if dataset.get("train") in (None, ""):
        given = [name for name in ("validation", "test") if dataset.get(name)]
        raise ConfigError(
            f"dataset.train: empty, but stages include train{f' (given: {given})' if given else ''}; set "
            "dataset.train=PATH, or leave train out of stages (e.g. stages=[sanitize,evaluate]) to evaluate only"
        )


def check_resume_path(cfg) -> None:
    """Fail before any work, naming `trainer.resume`, when it gives a checkpoint path that does not exist.

    `auto` and null need nothing; a path must be a directory (whether it is a complete checkpoint of
    this run is checked when training restores it).
    """
    from pathlib import Path

    resume = cfg.get("trainer", {}).get("resume") if cfg.get("trainer") is not None else None
    if not isinstance(resume, str) or resume == "auto":
        return
    path = Path(resume).expanduser()
    if not path.exists():
        raise ConfigError(
            f"trainer.resume: {resume!r} does not exist; give a checkpoint directory (<run dir>/checkpoints/step-N), "
            "auto (the run directory's latest complete checkpoint) or null (start fresh)"
        )
    if not path.is_dir():
        raise ConfigError(f"trainer.resume: {resume!r} is a file, not a checkpoint directory")


def _allowed_targets(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"allowed_targets: expected a list, e.g. allowed_targets=[mypkg], got {value!r}")
    for i, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip("."):
            raise ConfigError(f"allowed_targets.{i}: expected an import prefix or a dotted name, got {entry!r}")
    return tuple(value)


def check_node(path: str, node: Any, allowed: tuple[str, ...] = ()) -> None:
    """Check every `_target_` in `node` (a plain container at config key `path`) and its keys.

    Raises:
        ConfigError: naming the full key of the first problem.
    """
    _walk(path, node, allowed, libraries=False)
    _walk(path, node, allowed, libraries=True)


def _walk(path: str, node: Any, allowed: tuple[str, ...], libraries: bool) -> None:
    """Check the targets inside modelops (`libraries` False) or the others (True) under `node`."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(f"{path}.{i}", item, allowed, libraries)
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    ours = not isinstance(target, str) or target.startswith("modelops.")
    if target is not None and libraries != ours:
        # A target given as an object (from Python, not from a config file) is the caller's own code.
        obj = check_target(f"{path}._target_", target, allowed) if isinstance(target, str) else target
        _check_against_signature(path, node, obj)
    for key, value in node.items():
        if key not in _SPECIAL:
            _walk(f"{path}.{key}", value, allowed, libraries)


def _parameters(obj) -> dict[str, Any] | None:
    """Keyword name -> annotation of what `obj` takes; None when it takes any (``**kwargs``) or cannot say."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # some builtins have no signature: checked when called
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    names = [n for n, p in params.items() if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) and n != "self"]
    return {name: _hints(obj).get(name, Any) for name in names}


def _hints(obj) -> dict[str, Any]:
    """Annotations of a modelops target, resolved; a library's are not read (its own code checks them)."""
    if not getattr(obj, "__module__", "").startswith("modelops."):
        return {}
    func = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    return typing.get_type_hints(func)


def _check_against_signature(path: str, node: dict, obj) -> None:
    params = _parameters(obj)
    if params is None:
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
            raise ConfigError(f"{full}: unknown key{did_you_mean(key, known)}; valid keys: {sorted(known)}")


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
