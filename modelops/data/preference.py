"""The preference format: a prompt and two answers to it, `chosen` (preferred) and `rejected`.

Canonical rows follow TRL's convention, in one of two forms (one form per dataset):

- text: ``{"prompt": str, "chosen": str, "rejected": str}``;
- chat: ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``, where the
  prompt is the shared conversation (system, user, ... turns) and each side holds the answer's
  turns, ending on the assistant.

Rows in other shapes are converted, one row at a time:

- ShareGPT: ``conversations: [{from, value}]`` is the prompt; each side is a ``{from, value}``
  turn or a list of them (LLaMA-Factory's preference layout);
- Alpaca-style: ``instruction`` and an optional ``input`` are the prompt, joined by a newline;
- implicit prompt: no prompt, each side a whole conversation: the longest common message prefix
  becomes the prompt (TRL's ``extract_prompt``). A string prompt beside whole conversations (as in
  UltraFeedback) is replaced in the same way: it repeats the conversation's first turn;
- Anthropic HH text (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``): parsed into messages, then as above;
- text without a prompt: the common prefix, cut at its last whitespace, so words stay whole;
- a string prompt with message answers becomes a user message; string answers after a message
  prompt become assistant messages.

A row is refused (`messages.RowProblem`) when a side is missing or empty, both sides are the same,
a side's last turn is not the assistant's, or no prompt can be found.
"""

from __future__ import annotations

import re
from typing import Any

from modelops.data.messages import (
    ROLES,
    SHAREGPT_FIELD,
    SHAREGPT_ROLES,
    RowProblem,
    is_string,
    messages_problem,
    rebuild_messages,
    type_name,
)

FORMAT = "preference"
FIELDS = ("prompt", "chosen", "rejected")
SIDES = ("chosen", "rejected")

_HH_START = re.compile(r"\s*Human:")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_IDENTICAL = "fields 'chosen' and 'rejected' are identical: the pair prefers neither"


def check_row(row: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    """`row` as a canonical preference row (see the module docstring); other columns are kept.

    Args:
        row: one parsed row, already renamed through the column mapping.
        seen: facts about earlier rows; ``seen["preference"]`` is the form (text or chat) of the
            first row, so that a file mixing the two fails on the first row that differs.

    Raises:
        RowProblem: naming the field and what is wrong with it.
    """
    row = dict(row)
    if row.get("prompt") is None and SHAREGPT_FIELD in row:
        row["prompt"] = row.pop(SHAREGPT_FIELD)
    if row.get("prompt") is None and isinstance(row.get("instruction"), str):
        # Alpaca-style pairs (LLaMA-Factory): the instruction, then its input when there is one.
        row["prompt"] = "\n".join(part for part in (row.pop("instruction"), row.pop("input", None)) if part)
    for side in SIDES:
        if row.get(side) is None:
            raise RowProblem("missing_field", f"missing required field {side!r} for format {FORMAT}")
    values = {name: _value(row[name], name) for name in FIELDS if row.get(name) is not None}
    prompt, chosen, rejected = _canonical(values.get("prompt"), values["chosen"], values["rejected"])
    for side, value in zip(SIDES, (chosen, rejected), strict=True):
        _check_side(side, value)
    if chosen == rejected:  # the same answer once the prompt is split off (or a string wrapped as a message)
        raise RowProblem("identical", _IDENTICAL)
    if prompt == []:
        raise RowProblem("wrong_type", "field 'prompt': the message list is empty")
    _check_form("chat" if isinstance(chosen, list) else "text", seen)
    return {**row, "prompt": prompt, "chosen": chosen, "rejected": rejected}


# -- values -----------------------------------------------------------------------------------


def _value(value: Any, name: str) -> str | list[dict[str, str]]:
    """A field as a string, or as a list of canonical messages (a single turn becomes a list of one)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return [_message(value, name)]
    if isinstance(value, list):
        return [_message(turn, f"{name}[{i}]") for i, turn in enumerate(value)]
    raise RowProblem(
        "wrong_type", f"field {name!r}: expected a string, a message or a list of messages, got {type_name(value)}"
    )


def _message(turn: Any, where: str) -> dict[str, str]:
    """``{role, content}`` from a chat message or a ShareGPT ``{from, value}`` turn (other keys dropped)."""
    if not isinstance(turn, dict) or not ({"role", "from"} & set(turn)):
        raise RowProblem(
            "wrong_type", f"field {where!r}: expected an object with role and content, got {type_name(turn)}"
        )
    if "role" in turn:
        role, content = turn["role"], turn.get("content")
        if role not in ROLES:
            raise RowProblem("bad_role", f"field {where!r}.role: {role!r} is not one of {list(ROLES)}")
    else:
        role, content = SHAREGPT_ROLES.get(turn["from"]), turn.get("value")
        if role is None:
            raise RowProblem("bad_role", f"field {where!r}.from: {turn['from']!r} is not one of {list(SHAREGPT_ROLES)}")
    if not isinstance(content, str):
        raise RowProblem("wrong_type", f"field {where!r}.content: expected a string, got {type_name(content)}")
    return {"role": role, "content": content}


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# -- the prompt -------------------------------------------------------------------------------


def _canonical(prompt: Any, chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) in one form, the prompt split off the sides where they hold it."""
    if chosen == rejected:
        raise RowProblem("identical", _IDENTICAL)
    if isinstance(chosen, str) and isinstance(rejected, str):
        if isinstance(prompt, list):
            return prompt, _assistant(chosen), _assistant(rejected)
        if prompt is not None:
            return prompt, chosen, rejected
        if _HH_START.match(chosen) and _HH_START.match(rejected):
            return _split_messages(None, _hh_messages(chosen), _hh_messages(rejected))
        return _split_text(chosen, rejected)
    chosen, rejected = (_assistant(side) if isinstance(side, str) else side for side in (chosen, rejected))
    if isinstance(prompt, list):
        return prompt, chosen, rejected
    return _split_messages(prompt, chosen, rejected)


def _split_messages(prompt: str | None, chosen: list, rejected: list) -> tuple[list, list, list]:
    """The longest common message prefix of the sides as the prompt; a string prompt when they share none."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared:
        return chosen[:shared], chosen[shared:], rejected[shared:]
    if prompt is None:
        raise RowProblem(
            "no_prompt", "no 'prompt' field, and 'chosen' and 'rejected' share no leading message to take it from"
        )
    return [{"role": "user", "content": prompt}], chosen, rejected


def _split_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """The common prefix of two texts up to its last whitespace as the prompt (the space starts the answers)."""
    shared = next(
        (i for i, (a, b) in enumerate(zip(chosen, rejected, strict=False)) if a != b),
        len(min(chosen, rejected, key=len)),
    )
    cut = max((i for i, char in enumerate(chosen[:shared]) if char.isspace()), default=0)
    if cut == 0:
        raise RowProblem(
            "no_prompt", "no 'prompt' field, and 'chosen' and 'rejected' share no leading words to take it from"
        )
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _hh_messages(text: str) -> list[dict[str, str]]:
    """Anthropic HH text (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages."""
    parts = _HH_TURN.split("\n\n" + text.lstrip())
    turns = zip(parts[1::2], parts[2::2], strict=True)
    return [{"role": _HH_ROLES[role], "content": content.strip()} for role, content in turns]


# -- checks -----------------------------------------------------------------------------------


def _check_side(side: str, value: Any) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise RowProblem("empty_field", f"field {side!r} is empty")
        return
    if not value or not any(message["content"].strip() for message in value):
        raise RowProblem("empty_field", f"field {side!r} is empty: no turn with text after the prompt")
    if value[-1]["role"] != "assistant":
        raise RowProblem(
            "not_assistant", f"field {side!r}: the last turn is from the {value[-1]['role']}, not the assistant"
        )


def _check_form(form: str, seen: dict[str, Any]) -> None:
    first = seen.setdefault(FORMAT, form)
    if form != first:
        raise RowProblem(
            "wrong_type",
            f"a {form}-form pair here, but {first}-form pairs in earlier rows; use one form for every row "
            "(strings for prompt, chosen and rejected, or messages for each)",
        )


# -- whole tables -----------------------------------------------------------------------------


def table_problem(table: Any) -> str | None:
    """Why `table` is not canonical pairs already (then it is read row by row), or None; vectorised.

    Canonical is every field a string (text form) or every field a list of ``{role, content}``
    messages (chat form), with no row that `check_row` would refuse or change.
    """
    for name in FIELDS:
        if name not in table.column_names:
            return f"no column {name!r}"
        if table.column(name).null_count:
            return f"nulls in {name!r}"
    strings = [is_string(table.schema.field(name).type) for name in FIELDS]
    if all(strings):
        return _text_problem(table)
    return _chat_problem(table) if not any(strings) else "text and messages mixed"


def _text_problem(table: Any) -> str | None:
    import pyarrow.compute as pc

    for side in SIDES:
        if pc.any(pc.equal(pc.utf8_trim_whitespace(table.column(side)), "")).as_py():
            return f"an empty {side!r}"
    if pc.any(pc.equal(table.column("chosen"), table.column("rejected"))).as_py():
        return "'chosen' equal to 'rejected'"
    return None


def _chat_problem(table: Any) -> str | None:
    import pyarrow.compute as pc

    for name in FIELDS:
        problem = messages_problem(table.column(name), ("role", "content"), ROLES, pc)
        if problem:
            return f"{name!r}: {problem}"
    joined = []
    for side in SIDES:
        problem, text = _side_problem(table.column(side).combine_chunks(), side)
        if problem:
            return problem
        joined.append(text)
    if pc.any(pc.equal(*joined)).as_py():
        return "'chosen' equal to 'rejected'"
    return None


def _side_problem(column: Any, side: str) -> tuple[str | None, Any]:
    """(why this side's messages are not canonical, or None; each row's turns joined into one string to compare)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = np.asarray(column.offsets) - column.offsets[0].as_py()  # lists are non-empty (checked)
    flat = pc.list_flatten(column)
    role, content = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
    if not pc.all(pc.equal(pc.take(role, pa.array(offsets[1:] - 1)), "assistant")).as_py():
        return f"a {side!r} not ending on the assistant", None
    has_text = pc.not_equal(pc.utf8_trim_whitespace(content), "").to_numpy(zero_copy_only=False)
    if not np.add.reduceat(has_text.astype(np.int64), offsets[:-1]).all():
        return f"an empty {side!r}", None
    turns = pc.binary_join_element_wise(role, content, "\x00")
    return None, pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), turns), "\x01")


def canonical_table(table: Any) -> Any:
    """`table` (canonical pairs) with every message column holding only ``{role, content}``, in that order."""
    import pyarrow as pa

    for name in FIELDS:
        kind = table.schema.field(name).type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            rebuilt = rebuild_messages(table.column(name), ("role", "content"))
            table = table.set_column(table.column_names.index(name), name, rebuilt)
    return table
