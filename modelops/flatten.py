"""One dict flattener: nested mappings to dotted keys (config params, evaluation results, sweep rows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"trainer": {"epochs": 1}}` -> `{"trainer.epochs": 1}`; lists of mappings get index keys.

    Leaves (numbers, strings, None, lists of plain values) are kept as they are.
    """
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{path}.")
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            flat |= flatten({str(i): v for i, v in enumerate(value)}, f"{path}.")
        else:
            flat[path] = value
    return flat


def flatten_results(results: Mapping[str, Any]) -> dict[str, float]:
    """`{"fine_tuned": {"metrics": {"accuracy": 0.9}}}` -> `{"fine_tuned.accuracy": 0.9}` (numbers only)."""
    flat: dict[str, float] = {}
    for name, block in results.items():
        if not isinstance(block, Mapping):
            continue
        for key, value in block.get("metrics", block).items():
            if is_number(value):
                flat[f"{name}.{key}"] = float(value)
    return flat


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
