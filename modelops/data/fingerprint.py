"""Content fingerprints of Arrow tables: the same rows give the same hash on any run or machine.

Algorithm (``mo-fp-2``): the table is read in fixed slices of `SLICE_ROWS` rows, so the hash does
not depend on how Arrow happened to chunk it. Per slice, each column in sorted name order feeds
SHA-256 with its name and a canonical encoding of its values:

- every value: a type tag, then the validity of each row as one byte;
- strings and binary: each length as little-endian int64, then the bytes;
- integers as little-endian int64, floats as float64, booleans as one byte (nulls as zero);
- lists: each length as int64 (nulls 0), then the flattened items, encoded the same way;
- structs: their fields in sorted name order, each encoded the same way;
- anything else: its values cast to strings.

So the hash sees logical values only: column order, string vs large_string, int32 vs int64,
Arrow chunking and `datasets` index mappings do not change it; a changed character does.
"""

from __future__ import annotations

import hashlib
from typing import Any

VERSION = "mo-fp-2"
SLICE_ROWS = 65_536


def fingerprint_dataset(part: Any) -> str:
    """SHA-256 hex digest of a `datasets.Dataset`'s rows (see the module docstring)."""
    return fingerprint_table(part.with_format("arrow")[:])  # one gather when `part` has an index mapping


def fingerprint_table(table: Any) -> str:
    """SHA-256 hex digest of an Arrow table's rows (see the module docstring)."""
    digest = hashlib.sha256(VERSION.encode())
    for start in range(0, table.num_rows, SLICE_ROWS):
        feed_table(digest, table.slice(start, SLICE_ROWS))
    return digest.hexdigest()


def feed_table(digest: Any, table: Any) -> None:
    """Feed one slice of rows, column by column in sorted name order."""
    digest.update(len(table).to_bytes(8, "little"))
    for name in sorted(table.column_names):
        digest.update(f"\x00col:{name}\x00".encode())
        _feed(digest, table.column(name).combine_chunks())


def _feed(digest: Any, array: Any) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    digest.update(_tag(kind, pa).encode())
    digest.update(pc.is_valid(array).to_numpy(zero_copy_only=False).astype("u1").tobytes())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        _feed_bytes(digest, array, pa, pc)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        numeric = "<f8" if pa.types.is_floating(kind) else "<i8"
        target = pa.float64() if numeric == "<f8" else pa.int64()
        values = pc.fill_null(array.cast(target), 0).to_numpy(zero_copy_only=False)
        digest.update(values.astype(numeric).tobytes())
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        digest.update(lengths.astype("<i8").tobytes())
        _feed(digest, pc.list_flatten(array))
    elif pa.types.is_struct(kind):
        children = dict(zip([kind.field(i).name for i in range(kind.num_fields)], array.flatten(), strict=True))
        for name in sorted(children):
            digest.update(f"\x00field:{name}\x00".encode())
            _feed(digest, children[name])
    elif pa.types.is_null(kind):
        return
    else:
        _feed_bytes(digest, array.cast(pa.large_string()), pa, pc)


def _feed_bytes(digest: Any, array: Any, pa: Any, pc: Any) -> None:
    """Lengths then the concatenated bytes, read from the buffers without Python strings."""
    array = pc.fill_null(array.cast(pa.large_binary()), b"")
    offsets_buffer, data_buffer = array.buffers()[1:3]
    import numpy as np

    offsets = np.frombuffer(offsets_buffer, dtype="<i8")[array.offset : array.offset + len(array) + 1]
    digest.update(np.diff(offsets).astype("<i8").tobytes())
    if len(array) and data_buffer is not None:
        digest.update(memoryview(data_buffer)[int(offsets[0]) : int(offsets[-1])])


def _tag(kind: Any, pa: Any) -> str:
    """A type tag that treats widths (int32/int64, string/large_string) alike."""
    for test, tag in (
        (pa.types.is_boolean, "b"),
        (pa.types.is_integer, "i"),
        (pa.types.is_floating, "f"),
        (pa.types.is_string, "s"),
        (pa.types.is_large_string, "s"),
        (pa.types.is_binary, "y"),
        (pa.types.is_large_binary, "y"),
        (pa.types.is_list, "l"),
        (pa.types.is_large_list, "l"),
        (pa.types.is_struct, "t"),
        (pa.types.is_null, "n"),
    ):
        if test(kind):
            return tag
    return f"o:{kind}"
