"""What a run shows in MLflow as params, name and description: resolved values that matter, readable keys.

The whole composed config is kept as the run's `config.yaml` artifact; the params are the values a
reader compares runs by: no Hydra internals (`_target_` of a group, `_recursive_`, `_partial_`), no
keys of objectives the run does not use, no null where a value was resolved (the store, the
experiment, the registered model), sanitizer steps by name (`sanitizer.near_dedup.threshold`), and
nothing that is absent (null, empty lists).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.flatten import flatten

MAX_PARAM = 6000  # MLflow's limit on a param value
#: Trainer keys that only some objectives read: dropped from the params of runs with other objectives.
OBJECTIVE_KEYS = {
    "beta": {"dpo", "ipo", "simpo", "orpo"},
    "label_smoothing": {"dpo", "simpo"},
    "simpo_gamma": {"simpo"},
}
_HYDRA_KEYS = ("_recursive_", "_partial_", "_convert_", "_args_")


def run_params(config: Mapping[str, Any], resolved: Mapping[str, str] | None = None) -> dict[str, str]:
    """The params of a run: `config` flattened to readable dotted keys, with `resolved` values in place of nulls.

    Args:
        config: the composed config as plain data.
        resolved: dotted key -> the value actually used where the config says null
            (`tracking.uri`, `tracking.experiment`, `registry.name`).
    """
    config = _named_steps(dict(config))
    objective = str((config.get("trainer") or {}).get("objective", "sft"))
    params: dict[str, str] = {}
    for key, value in flatten(config).items():
        parts = key.split(".")
        if parts[-1] in _HYDRA_KEYS:
            continue
        if parts[-1] == "_target_":
            if len(parts) == 2:  # a group's own class: the group's option names it better
                continue
            key = ".".join(parts[:-1])  # trainer.optimizer._target_ -> trainer.optimizer
        if parts[0] == "trainer" and len(parts) == 2 and objective not in OBJECTIVE_KEYS.get(parts[1], {objective}):
            continue
        if value is None or value == []:
            continue
        params[key] = _text(value)
    for key, value in (resolved or {}).items():
        if value is not None:
            params[key] = str(value)[:MAX_PARAM]
    return dict(sorted(params.items()))


def _named_steps(config: dict[str, Any]) -> dict[str, Any]:
    """`sanitizer.steps: [{name: pii, action: replace}]` -> `sanitizer.steps: "pii"`, `sanitizer.pii.action`."""
    sanitizer = config.get("sanitizer")
    steps = sanitizer.get("steps") if isinstance(sanitizer, Mapping) else None
    if not isinstance(steps, list) or not all(isinstance(s, Mapping) and "name" in s for s in steps):
        return config
    named = {str(s["name"]): {k: v for k, v in s.items() if k != "name"} for s in steps}
    config["sanitizer"] = {**sanitizer, "steps": ", ".join(named), **{k: v for k, v in named.items() if v}}
    return config


def _text(value: Any) -> str:
    return (json.dumps(value) if isinstance(value, list) else str(value))[:MAX_PARAM]


def changed_overrides(overrides: Sequence[str]) -> list[str]:
    """The command-line overrides that say what this run changed (not Hydra's own, not the recipe choice)."""
    return [o for o in overrides if "=" in o and not o.lstrip("+~").startswith(("hydra.", "hydra/", "recipe="))]


def run_name(recipe: str | None, overrides: Sequence[str], fallback: str, limit: int = 90) -> str:
    """`lora_small learning_rate=3e-4`: the recipe and what changed (last key part), else `fallback`."""
    changed = [_short(o) for o in changed_overrides(overrides)]  # in the order they were typed
    name = " ".join(filter(None, [recipe, *changed])) or fallback
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _short(override: str) -> str:
    key, value = override.lstrip("+~").split("=", 1)
    return f"{key.rsplit('.', 1)[-1]}={value}"


def run_description(config: Mapping[str, Any], recipe: str | None, overrides: Sequence[str]) -> str:
    """A sentence or two for the run's page: what is fine-tuned on what, and what this run changed."""
    model = config.get("model") or {}
    trainer = config.get("trainer") or {}
    dataset = config.get("dataset") or {}
    peft = model.get("peft") or {}
    how = f"LoRA r={peft['r']}" if "r" in peft else ("PEFT" if peft else "full fine-tuning")
    data = str(dataset.get("_target_", "files")).rsplit(".", 1)[-1] if dataset else None
    parts = [f"Fine-tunes {model.get('name_or_path', '?')} ({model.get('task', '?')}, {how}, "
             f"objective {trainer.get('objective', 'sft')})"]  # fmt: skip
    if data:
        parts[0] += f" on {data} data"
    if recipe:
        parts[0] += f", recipe {recipe}"
    changed = changed_overrides(overrides)
    parts.append(f"Changed: {', '.join(changed)}" if changed else "No overrides")
    return ". ".join(parts) + "."
