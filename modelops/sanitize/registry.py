"""Steps by short name, and building steps from config entries with errors that name the config key.

A config entry is a step object, a short name (``"near_dedup"``), or a mapping with either
``name: <short name>`` or ``_target_: <import path>`` plus the step's parameters, including those
every step has (`modelops.sanitize.step.SanitizeStep`): ``only_for: [<format>, ...]`` and
``splits: [<split>, ...]``. Every problem
(an unknown name or target, an unknown or mistyped key, a value the step refuses) is a
`ConfigError` naming ``<where>.<index>.<key>``, e.g. ``sanitizer.steps.2.threshold``.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from typing import Any

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep

#: Short name -> the step class's import path (imported only when used).
STEPS: dict[str, str] = {
    "normalize": "modelops.sanitize.normalize.Normalize",
    "drop_empty": "modelops.sanitize.filters.DropEmpty",
    "length": "modelops.sanitize.filters.LengthFilter",
    "chat_structure": "modelops.sanitize.chat.ChatStructure",
    "exact_dedup": "modelops.sanitize.exact_dedup.ExactDedup",
    "near_dedup": "modelops.sanitize.near_dedup.NearDedup",
    "pii": "modelops.sanitize.pii.PiiScrub",
    "quality": "modelops.sanitize.quality.QualityFilter",
    "decontaminate": "modelops.sanitize.decontaminate.Decontaminate",
}
_HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_")
# A step's own messages start "<its name>.<field>: ..."; the field path is kept, the name re-rooted.
_LEADING_KEY = re.compile(r"^[A-Za-z_][\w-]*((?:\.[\w-]+)+):\s")


def build_steps(entries: list[Any], where: str = "sanitizer.steps") -> list[Any]:
    """Step objects for config entries (see the module docstring); step objects pass through."""
    return [build_step(entry, f"{where}.{i}") for i, entry in enumerate(entries)]


def build_step(entry: Any, where: str) -> Any:
    """One step object from one config entry; `where` is its config key (``sanitizer.steps.2``)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping):
        if isinstance(entry, SanitizeStep):
            return entry
        raise ConfigError(
            f"{where}: expected a step name, a mapping or a step object (a SanitizeStep), got {type(entry).__name__}"
        )
    params = {k: v for k, v in entry.items() if k not in _HYDRA_KEYS}
    if "_target_" in entry:
        cls = _import(entry["_target_"], f"{where}._target_")
    else:
        short = params.pop("name", None)
        if short not in STEPS:
            raise ConfigError(
                f"{where}.name: unknown step {short!r}{_suggest(short)}; known steps: {sorted(STEPS)} "
                "(or give `_target_: <import path>` of your own step)"
            )
        cls = _import(STEPS[short], f"{where}.name")
    _check_keys(cls, params, where)
    step = _construct(cls, params, where)
    if not isinstance(step, SanitizeStep):
        raise ConfigError(f"{where}: {cls.__qualname__} is not a step: subclass modelops.sanitize.step.SanitizeStep")
    return step


def rekey(exc: ConfigError, where: str) -> ConfigError:
    """The same error with its leading ``<step>.<field>`` re-rooted at `where` (``sanitizer.steps.2.<field>``)."""
    message = str(exc)
    match = _LEADING_KEY.match(message)
    if match:
        return ConfigError(f"{where}{match.group(1)}: {message[match.end() :]}")
    return ConfigError(f"{where}: {message}")


def _import(target: Any, key: str):
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{key}: {target!r} is not an import path like 'package.module.Class'")
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {target!r} ({exc}); known steps: {sorted(STEPS)}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{key}: {target!r} does not exist; known steps: {sorted(STEPS)}")
    return getattr(module, attr)


def _check_keys(cls, params: dict[str, Any], where: str) -> None:
    """Unknown keys and wrong scalar types, with the config's own checker, for modelops steps."""
    if not cls.__module__.startswith("modelops."):
        return  # a user's step: its constructor's TypeError is reported below
    from modelops.config.validate import check_node

    target = f"{cls.__module__}.{cls.__qualname__}"
    check_node(where, {"_target_": target, **params}, (target,))


def _construct(cls, params: dict[str, Any], where: str):
    try:
        return cls(**params)
    except ConfigError as exc:
        raise rekey(exc, where) from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _suggest(word: Any) -> str:
    close = difflib.get_close_matches(str(word), list(STEPS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
