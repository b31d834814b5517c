"""JSON Lines from Arrow tables with Arrow compute: one string kernel per column, no Python row objects.

Supported column types: strings, integers, finite floats, booleans, null, and lists and structs
of those (chat messages). `encode_lines` returns None for anything else (dates, non-finite
floats, ...) and the caller falls back to ``json.dumps`` per row. The output is standard JSON
with non-ASCII characters written as UTF-8, which ``json.loads`` reads back to the same values.
"""

from __future__ import annotations

import json
from typing import Any


class _Unsupported(Exception):
    pass


def encode_lines(table: Any) -> Any | None:
    """One JSON object per row plus a newline, as an Arrow string array; None when a type is unsupported."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_columns == 0:
        return None
    pieces: list[Any] = []
    try:
        for i, name in enumerate(table.column_names):
            pieces.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
            pieces.append(_encode(table.column(name).combine_chunks(), pa, pc))
    except _Unsupported:
        return None
    return pc.binary_join_element_wise(*pieces, "}\n", "")


def write_lines(fh: Any, lines: Any) -> None:
    """Write an Arrow string array's bytes (already newline-terminated) straight from its buffer."""
    import numpy as np
    import pyarrow as pa

    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype="<i8")[lines.offset : lines.offset + len(lines) + 1]
    if len(lines):
        fh.write(memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])])


def _encode(array: Any, pa: Any, pc: Any) -> Any:
    """Each value of `array` as JSON text (a string array without nulls)."""
    kind = array.type
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out = pc.binary_join_element_wise('"', _escape(array.cast(pa.string()), pc), '"', "")
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        out = array.cast(pa.string())
    elif pa.types.is_floating(kind):
        out = _floats(array, pa, pc)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        items = _encode(array.values, pa, pc)
        joined = pc.binary_join(type(array).from_arrays(array.offsets, items), ",")
        out = pc.binary_join_element_wise("[", joined, "]", "")
    elif pa.types.is_struct(kind):
        pieces: list[Any] = []
        for i, child in enumerate(array.flatten()):
            pieces.append(("{" if i == 0 else ",") + json.dumps(kind.field(i).name, ensure_ascii=False) + ":")
            pieces.append(_encode(child, pa, pc))
        out = pc.binary_join_element_wise(*pieces, "}", "") if pieces else pa.array(["{}"] * len(array))
    else:
        raise _Unsupported(str(kind))
    return pc.if_else(pc.is_null(array), "null", out) if array.null_count else out


def _escape(array: Any, pc: Any) -> Any:
    """Backslash, quote and control characters escaped as JSON requires."""
    array = pc.replace_substring(array, "\\", "\\\\")
    array = pc.replace_substring(array, '"', '\\"')
    if pc.any(pc.match_substring_regex(array, r"[\x00-\x1f]")).as_py():
        for code in range(32):
            array = pc.replace_substring(array, chr(code), json.dumps(chr(code))[1:-1])
    return array


def _floats(array: Any, pa: Any, pc: Any) -> Any:
    """Shortest round-trip text; ``.0`` added so that 2.0 reads back as a float, not an int."""
    if not pc.all(pc.fill_null(pc.is_finite(array), True)).as_py():
        raise _Unsupported("non-finite float")
    text = array.cast(pa.float64()).cast(pa.string())
    return pc.if_else(pc.match_substring_regex(text, r"[.eE]"), text, pc.binary_join_element_wise(text, ".0", ""))
