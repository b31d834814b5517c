"""Row formats: which fields each format holds, how a format is detected, and how rows are checked.

Seven formats, each a set of canonical fields:

==============  ==========================================  =================
format          required fields                             optional fields
==============  ==========================================  =================
preference      ``chosen``, ``rejected``                    ``prompt``
chat            ``messages: [{role, content}]``
instruction     ``instruction``, ``output``                 ``input``
completion      ``prompt``, ``completion``
classification  ``text``, ``label`` (str or int)
text            ``text``
prompt          ``prompt`` (text or ``[{role, content}]``)
==============  ==========================================  =================

`prompt` rows are prompts without answers (GRPO generates the answers): the prompt is a non-empty
string or a list of chat messages ending on a user or system turn (one form per dataset); the other
columns (``answer``, ...) are kept as they are for reward functions. It is detected last: a file
with a prompt and an ``answer`` column is completion data (``answer`` is a usual name of
``completion``), unless ``format=prompt`` says otherwise.

ShareGPT rows (``conversations: [{from, value}]``) are chat rows: ``from`` human/gpt/system becomes
role user/assistant/system. Preference rows are text or chat pairs; `preference` converts ShareGPT
and implicit-prompt rows into them (the prompt is then always there). A column mapping
``{"text": "sentence"}`` renames a source column to a canonical field. Columns outside the format
are kept as they are.

Two checkers agree on what is valid: `table_problem` looks at a whole Arrow table at once (the fast
path), `check_row` at one Python row (the path that names the bad line when the fast one says no).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops.data import preference
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
from modelops.errors import DataError

__all__ = ["ROLES", "SHAREGPT_FIELD", "SHAREGPT_ROLES", "RowProblem"]


@dataclass(frozen=True)
class Format:
    """A row format: its required and optional canonical fields."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional

    def describe(self) -> str:
        optional = f" [+ {', '.join(self.optional)}]" if self.optional else ""
        return f"{self.name} ({', '.join(self.required)}{optional})"


FORMATS: dict[str, Format] = {
    "preference": Format("preference", ("chosen", "rejected"), ("prompt",)),
    "chat": Format("chat", ("messages",)),
    "instruction": Format("instruction", ("instruction", "output"), ("input",)),
    "completion": Format("completion", ("prompt", "completion")),
    "classification": Format("classification", ("text", "label")),
    "text": Format("text", ("text",)),
    "prompt": Format("prompt", ("prompt",)),
}

#: Most specific first, so that a file with both `text` and `label` is classification, not text, and
#: one with `messages` (or `conversations`) beside `chosen` and `rejected` is preference, not chat.
DETECTION_ORDER = ("preference", "chat", "instruction", "completion", "classification", "text", "prompt")

#: Every name a column mapping may target.
CANONICAL_FIELDS = frozenset(f for spec in FORMATS.values() for f in spec.fields) | {SHAREGPT_FIELD}

STRING_FIELDS = ("text", "prompt", "completion", "instruction", "output", "input", "chosen", "rejected")

#: Canonical column order where it is not required-then-optional.
_COLUMN_ORDER = {"preference": ("prompt", "chosen", "rejected")}

#: Usual column names of a canonical field, recognised when the field itself is missing. `input` and
#: `output` are instruction fields; without an `instruction` column they are a prompt and its completion.
ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("sentence", "review", "content", "document"),
    "prompt": ("question", "input"),
    "completion": ("answer", "output"),
    "label": ("labels", "category", "sentiment"),
}


class FormatNotDetected(DataError):
    """No format's fields are among the columns (even under their usual names)."""


def get_format(name: str) -> Format:
    """The `Format` called `name`; DataError listing the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError as exc:
        raise DataError(f"unknown format {name!r}; known formats are {list(FORMATS)}") from exc


# -- column mapping ---------------------------------------------------------------------------


def resolve_mapping(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Turn a user's column mapping into ``{source: canonical}``.

    The documented form is ``{canonical: source}`` (``{"text": "sentence"}``); the reverse
    orientation is accepted when only its value is a canonical field, so both spellings work.
    """
    resolved: dict[str, str] = {}
    for key, value in (columns or {}).items():
        if key in CANONICAL_FIELDS:
            resolved[str(value)] = key
        elif value in CANONICAL_FIELDS:
            resolved[str(key)] = value
        else:
            raise DataError(
                f"columns: neither {key!r} nor {value!r} is a field of any format; "
                f"map a source column to one of {sorted(CANONICAL_FIELDS)}"
            )
    return resolved


def check_mapping(mapping: dict[str, str], found: list[str], source: str) -> None:
    """DataError when a mapped source column is not in the data, or its canonical name is taken already."""
    for src, canonical in mapping.items():
        if src not in found:
            raise DataError(
                f"{source}: columns maps {src!r} -> {canonical!r}, but there is no column {src!r}; found {found}"
            )
        if canonical in found and canonical != src:
            raise DataError(
                f"{source}: columns maps {src!r} -> {canonical!r}, but there is a column {canonical!r} already"
            )


def rename_row(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return row
    return {mapping.get(key, key): value for key, value in row.items()}


# -- detection --------------------------------------------------------------------------------


def detect_format(found: list[str] | set[str], source: str) -> str:
    """The first format (most specific first) whose required fields are all among `found`."""
    present = set(found)
    if SHAREGPT_FIELD in present:
        present.add("messages")
    for name in DETECTION_ORDER:
        if set(FORMATS[name].required) <= present:
            return name
    tried = "; ".join(FORMATS[name].describe() for name in DETECTION_ORDER)
    raise FormatNotDetected(
        f"{source}: cannot detect the format: found fields {sorted(found)}; tried {tried} "
        f"(pass format=... and columns={{canonical: source}} to say which)"
    )


def complete_mapping(
    mapping: dict[str, str], found: list[str], fmt: str | None, source: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The format, and the mapping completed with columns recognised by their usual names (`ALIASES`).

    Formats are tried most specific first (only `fmt` when given); the first whose required fields
    are all present, directly or under a usual name, wins: ``sentence, label`` is classification,
    ``question, answer`` completion. A field is only filled when it is missing.

    Returns:
        ``(format, {source: canonical}, recognised)``; `recognised` is every field of the format
        with its source column when some column was recognised (for the report), else empty.

    Raises:
        FormatNotDetected: no format fits (without `fmt`).
        DataError: two columns could both be the same field.
    """
    renamed = [mapping.get(name, name) for name in found]
    for name in [fmt] if fmt else DETECTION_ORDER:
        aliases = _aliases(name, renamed, source)
        if aliases is None:
            continue
        full = {**mapping, **aliases}
        return name, full, _field_sources(full, renamed, name) if aliases else {}
    if fmt:
        return fmt, mapping, {}  # the row checks name the missing field
    detect_format(renamed, source)
    raise AssertionError("detect_format found a format that complete_mapping did not")  # pragma: no cover


def _aliases(fmt: str, present: list[str], source: str) -> dict[str, str] | None:
    """``{column: field}`` filling `fmt`'s missing fields from usual names; None when a required one cannot be.

    An optional field is filled when a usual name of it is there (``question`` -> the prompt of a pair).
    """
    spec = FORMATS[fmt]
    have = set(present) | ({"messages"} if SHAREGPT_FIELD in present else set())
    if "instruction" in have:  # then `input` belongs to the instruction (see `ALIASES`)
        have = have - {"input"}
    options = {f: [a for a in ALIASES.get(f, ()) if a in have] for f in spec.fields if f not in have}
    if any(not options[f] for f in spec.required if f in options):
        return None
    options = {name: found for name, found in options.items() if found}
    for name, found in options.items():
        if len(found) > 1:
            raise DataError(
                f"{source}: columns {found} could each be the {name!r} field; say which with "
                f"columns: {{{name}: {found[0]}}}"
            )
    return {found[0]: name for name, found in options.items()}


def _field_sources(full: dict[str, str], present: list[str], fmt: str) -> dict[str, str]:
    inverse = {canonical: src for src, canonical in full.items()}
    return {inverse.get(f, f): f for f in FORMATS[fmt].fields if f in inverse or f in present}


# -- one row ----------------------------------------------------------------------------------


def check_row(row: Any, fmt: str, seen: dict[str, Any]) -> dict[str, Any]:
    """Check one row against `fmt` and return it canonical (ShareGPT turned into messages).

    Args:
        row: the parsed row, already renamed through the column mapping.
        fmt: the format name.
        seen: what the first rows were, filled as rows go by: ``seen["label"]`` the Python type of
            the first label, ``seen["preference"]`` the form of the first pair, so that a file
            mixing int and str labels (or text and chat pairs) fails on the first row that differs.

    Raises:
        RowProblem: naming the field and what is wrong with it.
    """
    if not isinstance(row, dict):
        raise RowProblem("not_object", f"expected a JSON object, got {type_name(row)}")
    if fmt == "preference":
        return preference.check_row(row, seen)
    if fmt == "prompt":
        return _check_prompt_row(row, seen)
    if fmt == "chat" and "messages" not in row and SHAREGPT_FIELD in row:
        row = {("messages" if k == SHAREGPT_FIELD else k): v for k, v in row.items()}
        row["messages"] = _sharegpt_messages(row["messages"])
    spec = FORMATS[fmt]
    for name in spec.required:
        if row.get(name) is None:
            raise RowProblem("missing_field", f"missing required field {name!r} for format {fmt}")
    for name in spec.fields:
        if name in row:
            _check_field(name, row[name], seen)
    return row


def _check_prompt_row(row: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    """A `prompt` row: a non-empty string, or chat messages ending on a user/system turn; one form per file."""
    prompt = row.get("prompt")
    if prompt is None:
        raise RowProblem("missing_field", "missing required field 'prompt' for format prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RowProblem("empty_field", "field 'prompt' is empty")
        form = "text"
    elif isinstance(prompt, list):
        try:
            _check_messages(prompt)
        except RowProblem as problem:
            raise RowProblem(problem.reason, problem.message.replace("'messages", "'prompt")) from None
        if prompt[-1]["role"] == "assistant":
            raise RowProblem(
                "not_user", "field 'prompt': the last turn is the assistant's; a prompt ends on the user's"
            )
        form = "chat"
    else:
        raise RowProblem(
            "wrong_type", f"field 'prompt': expected a string or a list of messages, got {type_name(prompt)}"
        )
    first = seen.setdefault("prompt", form)
    if form != first:
        raise RowProblem(
            "wrong_type",
            f"field 'prompt': a {form} prompt here, but {first} prompts in earlier rows; use one form for every row",
        )
    return row


def _check_field(name: str, value: Any, seen: dict[str, Any]) -> None:
    if name in STRING_FIELDS:
        if not (isinstance(value, str) or (name == "input" and value is None)):
            raise RowProblem("wrong_type", f"field {name!r}: expected a string, got {type_name(value)}")
    elif name == "label":
        _check_label(value, seen)
    elif name == "messages":
        _check_messages(value)


def _check_label(value: Any, seen: dict[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowProblem("wrong_type", f"field 'label': expected a string or an integer, got {type_name(value)}")
    first = seen.setdefault("label", type(value))
    if type(value) is not first:
        raise RowProblem(
            "wrong_type",
            f"field 'label': {type_name(value)} here, but {type_name(first())} in earlier rows; "
            "use one type for every label",
        )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise RowProblem("wrong_type", f"field 'messages': expected a list of messages, got {type_name(messages)}")
    if not messages:
        raise RowProblem("wrong_type", "field 'messages': the list is empty")
    for i, message in enumerate(messages):
        where = f"field 'messages[{i}]'"
        if not isinstance(message, dict):
            raise RowProblem(
                "wrong_type", f"{where}: expected an object with role and content, got {type_name(message)}"
            )
        role = message.get("role")
        if role not in ROLES:
            raise RowProblem("bad_role", f"{where}.role: {role!r} is not one of {list(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise RowProblem(
                "wrong_type", f"{where}.content: expected a string, got {type_name(message.get('content'))}"
            )


def _sharegpt_messages(turns: Any) -> Any:
    """ShareGPT turns as chat messages; anything malformed is left for `_check_messages` to name."""
    if not isinstance(turns, list):
        return turns
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return turns
        speaker = turn.get("from")
        if speaker not in SHAREGPT_ROLES:
            raise RowProblem(
                "bad_role", f"field 'conversations[{i}]'.from: {speaker!r} is not one of {list(SHAREGPT_ROLES)}"
            )
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")})
    return messages


# -- whole tables -----------------------------------------------------------------------------


def table_problem(table: Any, fmt: str) -> str | None:
    """Why `table` (renamed) does not fit `fmt`, or None when every row does; vectorised, no Python rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if fmt == "preference":
        return preference.table_problem(table)
    if fmt == "prompt":
        return _prompt_table_problem(table)
    spec = FORMATS[fmt]
    names = table.column_names
    for name in spec.required:
        column = name if name in names else (SHAREGPT_FIELD if name == "messages" else None)
        if column not in names:
            return f"no column {name!r}"
        if table.column(column).null_count:
            return f"nulls in {column!r}"
    for name in spec.fields:
        if name not in names:
            continue
        kind = table.schema.field(name).type
        if name in STRING_FIELDS and not (is_string(kind) or (name == "input" and pa.types.is_null(kind))):
            return f"{name!r} is {kind}"
        if name == "label" and not (is_string(kind) or pa.types.is_integer(kind)):
            return f"'label' is {kind}"
    if fmt == "chat":
        column = "messages" if "messages" in names else SHAREGPT_FIELD
        keys = ("role", "content") if column == "messages" else ("from", "value")
        allowed = ROLES if column == "messages" else tuple(SHAREGPT_ROLES)
        return messages_problem(table.column(column), keys, allowed, pc)
    return None


def _prompt_table_problem(table: Any) -> str | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if "prompt" not in table.column_names:
        return "no column 'prompt'"
    column = table.column("prompt")
    if column.null_count:
        return "nulls in 'prompt'"
    kind = table.schema.field("prompt").type
    if is_string(kind):
        return "an empty 'prompt'" if pc.any(pc.equal(pc.utf8_trim_whitespace(column), "")).as_py() else None
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return f"'prompt' is {kind}"
    problem = messages_problem(column, ("role", "content"), ROLES, pc)
    if problem:
        return f"'prompt': {problem}"
    column = column.combine_chunks()
    if not len(column):
        return None
    ends = pc.subtract(column.offsets[1:], column.offsets[0].as_py() + 1)  # each row's last message (non-empty)
    last_roles = pc.take(pc.struct_field(pc.list_flatten(column), "role"), ends)
    return "a 'prompt' ending on the assistant" if pc.any(pc.equal(last_roles, "assistant")).as_py() else None


def canonical_table(table: Any, fmt: str) -> Any:
    """`table` (already checked) with ShareGPT turned into messages, canonical types and fields first."""
    import pyarrow as pa

    if fmt == "preference":
        table = preference.canonical_table(table)
    if fmt == "chat":
        column = "messages" if "messages" in table.column_names else SHAREGPT_FIELD
        keys = ("role", "content") if column == "messages" else ("from", "value")
        messages = rebuild_messages(table.column(column), keys)
        index = table.column_names.index(column)
        table = table.set_column(index, "messages", messages)
    if fmt == "prompt" and not is_string(table.schema.field("prompt").type):
        index = table.column_names.index("prompt")
        table = table.set_column(index, "prompt", rebuild_messages(table.column("prompt"), ("role", "content")))
    for index, name in enumerate(table.column_names):
        kind = table.schema.field(name).type
        if pa.types.is_large_string(kind) or (name == "input" and pa.types.is_null(kind)):
            table = table.set_column(index, name, table.column(name).cast(pa.string()))
        elif name == "label" and pa.types.is_integer(kind) and kind != pa.int64():
            table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    first = [name for name in _COLUMN_ORDER.get(fmt, FORMATS[fmt].fields) if name in table.column_names]
    return table.select(first + [name for name in table.column_names if name not in first])
