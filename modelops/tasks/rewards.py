"""Reward functions for GRPO, in TRL's calling convention, and their weighted sum per completion.

A reward function is called with keywords, as TRL's ``GRPOTrainer`` calls one::

    fn(prompts=prompts, completions=completions, **columns) -> list[float | None]

``prompts`` and ``completions`` are aligned lists (a prompt repeated once per completion; a prompt is text or a
list of chat messages; a completion is text, or for chat prompts TRL's ``[{"role": "assistant", "content": ...}]``,
which the shipped functions read through `completion_text`), ``columns`` the rows' other columns, each a list
aligned with the completions. A TRL reward function (``def f(completions, **kwargs)``) therefore works unchanged;
TRL's extra keywords (``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``) are not passed.

A function may return None (or NaN) for a row only when marked with `may_abstain`; that row's reward from that
function then counts 0 in the weighted sum (TRL's ``nansum``), and a row on which every function abstained has a
NaN total, which `modelops.tasks.grpo.group_advantages` leaves out of its group's baseline and gives advantage 0
(as TRL does).

Shipped: `correctness` (the evaluator's answer filters, `modelops.data.answers`), `format_match` (a regex) and
`length_penalty` (characters over a target).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

from modelops.data import answers
from modelops.errors import ConfigError, JobError, did_you_mean

#: Reward functions allowed to return None/NaN (see `may_abstain`).
_ABSTAINING: set[Callable] = set()


def may_abstain(fn: Callable) -> Callable:
    """Mark `fn` as allowed to return None/NaN for a row (it has no opinion there; it then adds 0 for that row)."""
    _ABSTAINING.add(fn)
    return fn


def abstains(fn: Callable) -> bool:
    """Whether `fn` (or the function a ``functools.partial`` wraps) is marked with `may_abstain`."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    try:
        return fn in _ABSTAINING
    except TypeError:  # unhashable callable: never marked
        return False


def completion_text(completion: Any) -> str:
    """A completion's text: a string as it is; a chat completion (TRL's ``[{"role": "assistant", "content": ...}]``)
    its messages' contents joined."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


# -- shipped reward functions -------------------------------------------------------------------------


def _reference_text(value: Any) -> str | None:
    """A reference as text: strings as they are, numbers written plainly (7, 2.5), None/empty as None."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    if isinstance(value, Real):
        return answers.numeric(str(value))
    text = str(value)
    return text if text.strip() else None


#: ``auto``'s three cases: a GSM8K reference, a number, anything else.
_AUTO = {"gsm8k": answers.GSM8K_FILTERS, "number": ["last_number", "numeric"], "text": []}


def _auto_kind(reference: str) -> str:
    """``auto``: GSM8K's filters when the reference carries ``####``; a numeric reference: the completion's last
    number, made canonical; anything else: no filter (the whole completion against the whole reference)."""
    if answers.GSM8K_MARKER in reference:
        return "gsm8k"
    return "number" if answers.last_number(reference) == reference.strip().rstrip(".") else "text"


@may_abstain
def correctness(
    prompts: list, completions: list[str], *, column: str = "answer", filters: Any = "auto", match: str = "exact",
    **columns: Any,
) -> list[float | None]:  # fmt: skip
    """1.0 when the completion's extracted answer equals the reference's (``columns[column]``), else 0.0.

    Extraction is the evaluator's (`modelops.data.answers`): ``filters`` is a filter list as in the evaluator's
    config (e.g. ``[{regex: "#### (\\\\-?[0-9]+)"}, numeric]``) or ``auto``, decided per row: GSM8K's filters when
    the reference carries ``####``; for a numeric reference (``7``, ``-2.5``, ``1,000``) the last number of the
    completion and of the reference, made canonical; otherwise the whole texts, whitespace squeezed. ``match`` is
    ``exact`` (string equality after the filters) or ``math`` (math-verify).

    A reference from which the filters extract nothing (or a missing/empty one) gives None: the function
    abstains on that row rather than punish every completion for a bad reference.
    """
    fixed = _correctness_options("correctness", column=column, filters=filters, match=match)
    if column not in columns:
        raise ConfigError(
            f"correctness: the data has no column {column!r} (columns: {sorted(columns)}); set column=<name>"
        )
    auto = {kind: answers.build_filters(spec) for kind, spec in _AUTO.items()} if fixed is None else {}
    out: list[float | None] = []
    for completion, raw in zip(completions, columns[column], strict=True):
        reference = _reference_text(raw)
        if reference is None:
            out.append(None)
            continue
        chain = fixed if fixed is not None else auto[_auto_kind(reference)]
        result = answers.extract_and_match(chain, completion_text(completion), reference, match=match)
        out.append(None if result.match is None else float(result.match))
    return out


def format_match(prompts: list, completions: list[str], *, pattern: str, **columns: Any) -> list[float]:
    """1.0 when ``re.search(pattern, completion, re.DOTALL)`` finds a match, else 0.0.

    ``re.DOTALL``: ``.`` also matches newlines, so ``^.*#### -?\\d+`` accepts a multi-line completion that ends its
    reasoning with ``#### 42``; anchor with ``^``/``$`` (``\\Z``) to ask for the whole completion.
    """
    compiled = _format_match_options("format_match", pattern=pattern)
    return [1.0 if compiled.search(completion_text(completion)) else 0.0 for completion in completions]


def length_penalty(prompts: list, completions: list[str], *, target: int, **columns: Any) -> list[float]:
    """``-max(0, len(completion) - target) / target`` (characters): 0 up to `target`, -1 at twice the target."""
    _length_penalty_options("length_penalty", target=target)
    return [-max(0, len(completion_text(completion)) - target) / target for completion in completions]


# -- their options, checked when the rewards are built (key: the config key) and when called ----------


def _correctness_options(key: str, *, column: Any = "answer", filters: Any = "auto", match: Any = "exact") -> Any:
    """The fixed filter list (None for ``auto``); ConfigError naming ``key.<option>`` for a bad option."""
    if not isinstance(column, str) or not column:
        raise ConfigError(f"{key}.column: expected a column name, got {column!r}")
    answers.check_match(match, key=f"{key}.match")
    return None if filters == "auto" else answers.build_filters(filters, key=f"{key}.filters")


def _format_match_options(key: str, *, pattern: Any) -> re.Pattern:
    try:
        return re.compile(pattern, re.DOTALL)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"{key}.pattern: {pattern!r} does not compile: {exc}") from exc


def _length_penalty_options(key: str, *, target: Any) -> None:
    if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
        raise ConfigError(f"{key}.target: expected a positive number of characters, got {target!r}")


_OPTION_CHECKS: dict[Callable, Callable] = {
    correctness: _correctness_options,
    format_match: _format_match_options,
    length_penalty: _length_penalty_options,
}


def _check_options(fn: Callable, key: str) -> None:
    """A shipped reward (or a partial of one): its options known, the required ones given, their values valid."""
    func, options = (fn.func, dict(fn.keywords)) if isinstance(fn, functools.partial) else (fn, {})
    check = _OPTION_CHECKS.get(func)
    if check is None:
        return
    params = {n: p for n, p in inspect.signature(func).parameters.items() if p.kind is p.KEYWORD_ONLY}
    for name in options:
        if name not in params:
            hint = did_you_mean(name, params)
            raise ConfigError(f"{key}.{name}: unknown option of {func.__name__}{hint}; options: {sorted(params)}")
    for name, param in params.items():
        if param.default is param.empty and name not in options:
            raise ConfigError(f"{key}.{name}: {func.__name__} needs it (with `_partial_: true`)")
    check(key, **options)


# -- building and scoring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reward:
    """One reward function with its name (for logs: ``rewards/<name>/mean``) and weight."""

    name: str
    fn: Callable
    weight: float = 1.0


def _name(fn: Callable) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", None) or type(fn).__name__


def build_rewards(
    functions: Sequence[Callable], weights: Sequence[float] | None, key: str = "trainer.rewards"
) -> list[Reward]:
    """Rewards from the configured functions and weights (None: all 1.0); a repeated name gets ``_2``, ``_3``...

    The shipped functions' options are checked here, before any generation: an unknown or missing option, a
    pattern that does not compile, a bad filter list, ``match`` or ``target``.

    Raises:
        ConfigError: naming `key` for no functions, a non-callable (by index), a shipped function's bad option
            (``key.<i>.<option>``), weights of another length or non-finite weights.
    """
    functions = list(functions or [])
    if not functions:
        raise ConfigError(f"{key}: GRPO needs at least one reward function, e.g. modelops.tasks.rewards.correctness")
    for i, fn in enumerate(functions):
        if not callable(fn):
            raise ConfigError(f"{key}.{i}: {fn!r} is not callable (a reward needs `_partial_: true` with options)")
        _check_options(fn, f"{key}.{i}")
    wkey = key.rsplit(".", 1)[0] + ".reward_weights" if "." in key else "reward_weights"
    weights = [1.0] * len(functions) if weights is None else list(weights)
    if len(weights) != len(functions):
        raise ConfigError(f"{wkey}: {len(weights)} weights for {len(functions)} reward functions in {key}")
    for i, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, Real) or not math.isfinite(weight):
            raise ConfigError(f"{wkey}.{i}: {weight!r} is not a finite number")
    names: dict[str, int] = {}
    rewards = []
    for fn, weight in zip(functions, weights, strict=True):
        base = _name(fn)
        names[base] = names.get(base, 0) + 1
        rewards.append(Reward(base if names[base] == 1 else f"{base}_{names[base]}", fn, float(weight)))
    return rewards


def _excerpt(prompt: Any, width: int = 60) -> str:
    """The prompt's start (a chat prompt: its last message's content), for error messages."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content", prompt[-1])
    text = prompt if isinstance(prompt, str) else str(prompt)
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _raise_at_row(reward: Reward, prompts: list, completions: list[str], columns: dict[str, list], exc: Exception):
    """Re-run the failed function row by row to name the first row it fails on; raise JobError chaining that."""
    for i in range(len(completions)):
        try:
            reward.fn(prompts=prompts[i : i + 1], completions=completions[i : i + 1],
                      **{k: v[i : i + 1] for k, v in columns.items()})  # fmt: skip
        except Exception as row_exc:
            raise JobError(
                f"reward {reward.name!r} failed on row {i} (prompt {_excerpt(prompts[i])}): "
                f"{type(row_exc).__name__}: {row_exc}"
            ) from row_exc
    raise JobError(
        f"reward {reward.name!r} failed on a batch of {len(completions)} completions (no single row fails alone): "
        f"{type(exc).__name__}: {exc}"
    ) from exc


def _call(reward: Reward, prompts: list, completions: list[str], columns: dict[str, list]) -> list[float]:
    """One function's values for every row, checked; NaN where it abstains."""
    try:
        values = reward.fn(prompts=prompts, completions=completions, **columns)
    except ConfigError:
        raise
    except Exception as exc:
        _raise_at_row(reward, prompts, completions, columns, exc)
    try:
        values = list(values)
    except TypeError:
        raise JobError(f"reward {reward.name!r} returned {type(values).__name__}, expected a list of numbers") from None
    if len(values) != len(completions):
        raise JobError(f"reward {reward.name!r} returned {len(values)} values for {len(completions)} completions")
    out = []
    for i, value in enumerate(values):
        where = f"row {i} (prompt {_excerpt(prompts[i])})"
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise JobError(f"reward {reward.name!r} returned {value!r} for {where}; expected a number")
        value = math.nan if value is None else float(value)
        if math.isnan(value) and not abstains(reward.fn):
            raise JobError(
                f"reward {reward.name!r} returned None/NaN for {where}; mark it with "
                "modelops.tasks.rewards.may_abstain if it may abstain"
            )
        if math.isinf(value):
            raise JobError(f"reward {reward.name!r} returned {value} for {where}")
        out.append(value)
    return out


def score(
    rewards: Sequence[Reward], prompts: list, completions: list[str], columns: dict[str, list]
) -> tuple[Any, dict[str, list[float]]]:
    """The weighted reward of every completion, and each function's raw values.

    Returns:
        (total, per_function): ``total`` a float32 tensor [N], ``sum_i weight_i * r_i`` with abstentions
        counting 0 (TRL's ``nansum``) and NaN where every function abstained; ``per_function`` maps each reward's
        name to its N values (NaN where it abstained).

    Raises:
        JobError: a function that raises (chained), returns the wrong number of values, a non-number, an
            infinity, or None/NaN without `may_abstain`; the message names the function and the row.
    """
    import torch

    per_function = {reward.name: _call(reward, prompts, completions, columns) for reward in rewards}
    table = torch.tensor([per_function[r.name] for r in rewards], dtype=torch.float32).reshape(len(rewards), -1)
    weights = torch.tensor([r.weight for r in rewards], dtype=torch.float32).unsqueeze(1)
    total = (table * weights).nansum(dim=0)
    total[torch.isnan(table).all(dim=0)] = math.nan
    return total, per_function
