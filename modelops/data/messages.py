"""Chat messages and row problems: what `formats` and `preference` both check rows and columns with."""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant", "tool")

#: ShareGPT speaker -> chat role; the plain role names are accepted as themselves.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", **{r: r for r in ROLES}}

SHAREGPT_FIELD = "conversations"


class RowProblem(Exception):
    """One row that does not fit; `reason` is the short key it is counted under when skipped."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def messages_problem(column: Any, keys: tuple[str, str], allowed: tuple[str, ...], pc: Any) -> str | None:
    import pyarrow as pa

    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_struct(kind.value_type):
        return f"messages are {kind}"
    struct = kind.value_type
    if any(struct.get_field_index(key) < 0 for key in keys):
        return f"messages lack {keys}"
    if not all(is_string(struct.field(key).type) for key in keys):
        return "message fields are not strings"
    if pc.min(pc.list_value_length(column)).as_py() == 0:
        return "an empty message list"
    flat = pc.list_flatten(column)
    if flat.null_count:
        return "a null message"
    role, content = (pc.struct_field(flat, key) for key in keys)
    if role.null_count or content.null_count:
        return "a null role or content"
    if not pc.all(pc.is_in(role, value_set=pa.array(allowed))).as_py():
        return "a role outside the allowed ones"
    return None


def rebuild_messages(column: Any, keys: tuple[str, str]) -> Any:
    """A list<struct<role, content>> column from any list of structs holding `keys` (role and content first)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = []
    for chunk in column.chunks:
        flat = pc.list_flatten(chunk)
        role, content = (pc.struct_field(flat, key).cast(pa.string()) for key in keys)
        if keys[0] == "from":
            speakers = pa.array(list(SHAREGPT_ROLES))
            role = pc.take(pa.array(list(SHAREGPT_ROLES.values())), pc.index_in(role, value_set=speakers))
        offsets = pc.subtract(chunk.offsets, chunk.offsets[0]).cast(pa.int32())
        messages = pa.StructArray.from_arrays([role, content], names=["role", "content"])
        chunks.append(pa.ListArray.from_arrays(offsets, messages))
    return pa.chunked_array(chunks, type=pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))


def is_string(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
