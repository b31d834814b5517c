"""Writing one split to JSON Lines, JSON, CSV/TSV or Parquet, chosen by extension, atomically.

Rows are read from Arrow in slices of `WRITE_ROWS`; JSON Lines is encoded by Arrow compute
(`arrow_json`), so a million-row split is written without a Python object per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelops.data import loaders
from modelops.errors import DataError

WRITE_ROWS = 65_536
SAVE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
SAVE_KINDS.update({".csv": "csv", ".tsv": "csv"})


def write(part: Any, path: str | Path) -> Path:
    """Write a `datasets.Dataset` to `path`, the type from the extension (JSON Lines when unknown).

    The file is written under a temporary name and renamed into place, so a failure leaves
    any earlier file at `path` untouched.
    """
    from modelops.io import atomic_path

    path = Path(path)
    kind = SAVE_KINDS.get(path.suffix.lower(), "jsonl")
    with atomic_path(path) as tmp:
        _WRITERS[kind](part, tmp, path)
    return path


def _write_jsonl(part: Any, tmp: Path, path: Path) -> None:
    from modelops.data.arrow_json import encode_lines, write_lines

    with tmp.open("wb") as fh:
        for table in _arrow_batches(part):
            lines = encode_lines(table)
            if lines is not None:
                write_lines(fh, lines)
            else:  # a type Arrow cannot encode (dates, NaN, ...): json per row, for this batch only
                text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist())
                fh.write(text.encode("utf-8"))


def _write_json(part: Any, tmp: Path, path: Path) -> None:
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("[")
        first = True
        for rows in _row_batches(part):
            for row in rows:
                fh.write(("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False))
                first = False
        fh.write("\n]\n")


def _write_parquet(part: Any, tmp: Path, path: Path) -> None:
    import pyarrow.parquet as pq

    writer = None
    try:
        for table in _arrow_batches(part):
            writer = writer or pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _write_csv(part: Any, tmp: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    nested = [f.name for f in part.data.schema if pa.types.is_nested(f.type)]
    if nested:
        raise DataError(f"{path}: CSV cannot hold the nested column(s) {nested}; save as .jsonl or .parquet")
    options = pcsv.WriteOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    writer = None
    try:
        for table in _arrow_batches(part):
            writer = writer or pcsv.CSVWriter(str(tmp), table.schema, write_options=options)
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
