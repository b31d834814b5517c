"""Steps by short name, and building steps from config entries with errors that name the config key.

A config entry is a step object, a short name (``"near_dedup"``), or a mapping with either
``name: <short name>`` or ``_target_: <import path>`` plus the step's parameters, including those
every step has (`modelops.sanitize.step.SanitizeStep`): ``only_for: [<format>, ...]`` and
``splits: [<split>, ...]``. Every problem
(an unknown name or target, an unknown or mistyped key, a value the step refuses) is a
`ConfigError` naming ``<where>.<index>.<key>``, e.g. ``sanitizer.steps.2.threshold``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.config.build import construct
from modelops.config.validate import check_node
from modelops.errors import ConfigError, did_you_mean
from modelops.sanitize.step import SanitizeStep

#: Short name -> the step class's import path (imported only when used).
STEPS: dict[str, str] = {
    "normalize": "modelops.sanitize.normalize.Normalize",
    "drop_empty": "modelops.sanitize.filters.DropEmpty",
    "length": "modelops.sanitize.filters.LengthFilter",
    "chat_structure": "modelops.sanitize.chat.ChatStructure",
    "drop_ties": "modelops.sanitize.ties.DropTies",
    "exact_dedup": "modelops.sanitize.exact_dedup.ExactDedup",
    "near_dedup": "modelops.sanitize.near_dedup.NearDedup",
    "pii": "modelops.sanitize.pii.PiiScrub",
    "quality": "modelops.sanitize.quality.QualityFilter",
    "decontaminate": "modelops.sanitize.decontaminate.Decontaminate",
}
_HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_")
# A step's own messages start "<its name>.<field>: ..."; the field path is kept, the name re-rooted.
_LEADING_KEY = re.compile(r"^[A-Za-z_][\w-]*((?:\.[\w-]+)+):\s")


def build_steps(entries: list[Any], where: str = "sanitizer.steps", allowed: Sequence[str] = ()) -> list[Any]:
    """Step objects for config entries (see the module docstring); step objects pass through.

    `allowed`: import prefixes or exact names trusted for ``_target_`` besides the defaults
    (see `modelops.config.targets`).
    """
    return [build_step(entry, f"{where}.{i}", allowed) for i, entry in enumerate(entries)]


def build_step(entry: Any, where: str, allowed: Sequence[str] = ()) -> Any:
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
    node = {"_target_": entry.get("_target_") or _short_name(params.pop("name", None), where), **params}
    check_node(where, node, tuple(allowed))
    try:
        step = construct(node, where, allowed)
    except ConfigError as exc:
        if str(exc).startswith(f"{where}:"):
            raise  # already named by its key here (a failure the step did not raise itself)
        raise rekey(exc, where) from exc
    if not isinstance(step, SanitizeStep):
        raise ConfigError(
            f"{where}: {type(step).__qualname__} is not a step: subclass modelops.sanitize.step.SanitizeStep"
        )
    return step


def _short_name(short: Any, where: str) -> str:
    if short not in STEPS:
        raise ConfigError(
            f"{where}.name: unknown step {short!r}{did_you_mean(short, STEPS)}; known steps: {sorted(STEPS)} "
            "(or give `_target_: <import path>` of your own step)"
        )
    return STEPS[short]


def rekey(exc: ConfigError, where: str) -> ConfigError:
    """The same error with its leading ``<step>.<field>`` re-rooted at `where` (``sanitizer.steps.2.<field>``)."""
    message = str(exc)
    match = _LEADING_KEY.match(message)
    if match:
        return ConfigError(f"{where}{match.group(1)}: {message[match.end() :]}")
    return ConfigError(f"{where}: {message}")
