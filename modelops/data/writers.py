"""Writing one split to JSON Lines, JSON, CSV/TSV or Parquet, chosen by extension, atomically.

A compression suffix after the type (``.jsonl.gz``, ``.csv.zst``; see `compression`) compresses the
file with that codec, so what the name says is what is written and read back.

Rows are read from Arrow in slices of `WRITE_ROWS`; JSON Lines is encoded by Arrow compute
(`arrow_json`), so a million-row split is written without a Python object per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelops.data import loaders
from modelops.data.arrow_json import encode_lines, write_lines
from modelops.data.compression import COMPRESSIONS, open_write, split_suffix
from modelops.errors import DataError
from modelops.io import atomic_path

WRITE_ROWS = 65_536
SAVE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
SAVE_KINDS.update({".csv": "csv", ".tsv": "csv"})


def write(part: Any, path: str | Path) -> Path:
    """Write a `datasets.Dataset` to `path`, the type from the extension, compressed if it ends in one.

    The file is written under a temporary name and renamed into place, so a failure leaves
    any earlier file at `path` untouched.

    Raises:
        DataError: an extension that names no file type (nothing is written), or a compressed Parquet name.
    """
    path = Path(path)
    suffix, codec = split_suffix(path)
    kind = SAVE_KINDS.get(suffix)
    if kind is None:
        raise DataError(
            f"save({str(path)!r}): {repr(suffix) if suffix else 'a name without an extension'} names no file type; "
            f"end the name in one of "
            f"{sorted(SAVE_KINDS)}, optionally followed by a compression suffix {sorted(COMPRESSIONS)}"
        )
    if codec and kind == "parquet":
        raise DataError(f"save({str(path)!r}): Parquet compresses its own columns; name the file .parquet")
    with atomic_path(path) as tmp:
        _WRITERS[kind](part, tmp, path, codec)
    return path


def _write_jsonl(part: Any, tmp: Path, path: Path, codec: str | None) -> None:
    with open_write(tmp, codec) as fh:
        for table in _arrow_batches(part):
            lines = encode_lines(table)
            if lines is not None:
                write_lines(fh, lines)
            else:  # a type Arrow cannot encode (dates, NaN, ...): json per row, for this batch only
                text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist())
                fh.write(text.encode("utf-8"))


def _write_json(part: Any, tmp: Path, path: Path, codec: str | None) -> None:
    with open_write(tmp, codec) as fh:
        fh.write(b"[")
        sep = b"\n"
        for rows in _row_batches(part):
            chunk = []
            for row in rows:
                chunk.append(sep + json.dumps(row, ensure_ascii=False).encode("utf-8"))
                sep = b",\n"
            fh.write(b"".join(chunk))
        fh.write(b"\n]\n")


def _write_parquet(part: Any, tmp: Path, path: Path, codec: str | None) -> None:
    import pyarrow.parquet as pq

    writer = None
    try:
        for table in _arrow_batches(part):
            writer = writer or pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _write_csv(part: Any, tmp: Path, path: Path, codec: str | None) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    nested = [f.name for f in part.data.schema if pa.types.is_nested(f.type)]
    if nested:
        raise DataError(f"{path}: CSV cannot hold the nested column(s) {nested}; save as .jsonl or .parquet")
    options = pcsv.WriteOptions(delimiter="\t" if split_suffix(path)[0] == ".tsv" else ",")
    writer = None
    with open_write(tmp, codec) as sink:
        try:
            for table in _arrow_batches(part):
                writer = writer or pcsv.CSVWriter(sink, table.schema, write_options=options)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()


def _arrow_batches(part: Any) -> Iterable[Any]:
    table = loaders.hf_table(part)  # one gather when `part` has an index mapping, then zero-copy slices
    for start in range(0, max(len(part), 1), WRITE_ROWS):
        yield table.slice(start, WRITE_ROWS)


def _row_batches(part: Any) -> Iterable[list[dict]]:
    for table in _arrow_batches(part):
        yield table.to_pylist()


_WRITERS = {"jsonl": _write_jsonl, "json": _write_json, "parquet": _write_parquet, "csv": _write_csv}
