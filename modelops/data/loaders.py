"""Reading files into Arrow tables of one format, with errors that name the file, line and field.

Every reader has two paths. The fast one lets pyarrow read the whole file (JSON Lines, CSV,
Parquet) and checks the table at once (`formats.table_problem`); no Python object is made per
row. When pyarrow refuses the file, or the check finds a bad row, the slow path reads it again
line by line, checks each row (`formats.check_row`) and builds Arrow in chunks of `CHUNK_ROWS`,
so it names the first bad line (``on_error="raise"``) or counts and drops the bad rows
(``on_error="skip"``) without ever holding every row as Python objects.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from modelops.data import formats
from modelops.data.compression import COMPRESSIONS, open_read, split_suffix
from modelops.data.fingerprint import fingerprint_table
from modelops.data.formats import RowProblem
from modelops.data.hints import likely_cause
from modelops.data.messages import type_name
from modelops.errors import ConfigError, DataError
from modelops.log import say

CHUNK_ROWS = 10_000
MAX_EXAMPLES = 5
ON_ERROR = ("raise", "skip")
SUFFIX_KINDS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_JSON_BLOCK_BYTES = 16 << 20  # pyarrow needs the longest line to fit in one block
_INT_PATTERN = r"^[+-]?[0-9]{1,18}$"


class Place(NamedTuple):
    """Where a row comes from: its file (or source) and its line (files with lines) or row number."""

    source: str
    line: int | None = None
    row: int | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source}: row {self.row}"


@dataclass
class LoadReport:
    """What loading one source kept and skipped.

    Attributes:
        source: the file (or description) the rows came from.
        rows: rows kept.
        skipped: reason -> rows skipped for it (``on_error="skip"``).
        examples: the first few skip messages, each naming its line or row and field.
        columns: source column -> canonical field, when columns were recognised by their usual
            names (``sentence`` -> ``text``) rather than given.
        skipped_rows: every skipped row: ``{"file", "line", "row", "reason", "message", "raw"}``
            (``raw``: the line or record as read). Not part of `as_dict`: it can be long.
        changed: what -> rows kept but changed while loading (``label_spaces_stripped``, ``label_lowercased``).
    """

    source: str
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    skipped_rows: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, place: Place, message: str, raw: str | None) -> None:
        """Count one skipped row under `reason` and keep it (where, why, what it was)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        text = f"{place}: {message}"
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)
        self.skipped_rows.append(
            {"file": place.source, "line": place.line, "row": place.row, "reason": reason, "message": text, "raw": raw}
        )

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "skipped": dict(self.skipped),
            "examples": list(self.examples),
            "columns": dict(self.columns),
            "changed": dict(self.changed),
        }


@dataclass
class Origin:
    """Where each row of a table came from, so a later error can name its file and line.

    Attributes:
        source: the file (or description) the rows came from.
        reread: re-reads the source as ``(place, row, raw)`` triples (``place`` prints as ``file:line``), or None
            when the source cannot be read again (then a row is named by its 1-based position).
        positions: per row, its index among the source's rows (numpy int64); None means row i is
            the source's row i.
    """

    source: str
    reread: Callable[[], Iterable[tuple[Place, Any, str | None]]] | None = None
    positions: Any = None

    def take(self, indices: Any) -> Origin:
        """The origin of the rows at `indices` (a subset or reordering of these rows)."""
        import numpy as np

        indices = np.asarray(indices, dtype=np.int64)
        return Origin(self.source, self.reread, indices if self.positions is None else self.positions[indices])

    def locate(self, rows: Iterable[int]) -> list[str]:
        """``file:line`` (or ``source: row N``) of each row, reading the source at most once."""
        wanted = [int(row if self.positions is None else self.positions[row]) for row in rows]
        if self.reread is None:
            return [f"{self.source}: row {p + 1}" for p in wanted]
        found: dict[int, str] = {}
        targets = set(wanted)
        for position, entry in enumerate(self.reread()):
            if position in targets:
                found[position] = str(entry[0])  # each entry starts with the row's place, `file:line`
                if len(found) == len(targets):
                    break
        return [found.get(p, f"{self.source}: row {p + 1}") for p in wanted]


@dataclass
class Loaded:
    """One source read into a canonical Arrow table."""

    table: Any
    format: str
    report: LoadReport
    origin: Origin | None = None


# -- public readers ---------------------------------------------------------------------------


def load_file(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    columns: Mapping[str, str | int] | None = None,
    on_error: str = "raise",
    delimiter: str | None = None,
    kind: str | None = None,
    header: bool = True,
) -> Loaded:
    """Read one file (kind from its extension unless given) into a canonical table.

    Args:
        path: a .jsonl/.ndjson, .json, .csv/.tsv or .parquet file.
        format: the row format; detected from the columns when None.
        columns: mapping from canonical field to source column, e.g. ``{"text": "sentence"}``; with
            ``header=False``, to column positions, e.g. ``{"text": 0, "label": 1}``.
        on_error: ``"raise"`` stops at the first bad row; ``"skip"`` drops and counts bad rows.
        delimiter: the CSV delimiter (default: tab for .tsv, else comma).
        kind: ``jsonl``, ``json``, ``csv`` or ``parquet``, overriding the extension.
        header: CSV/TSV only: whether the first row names the columns; False reads it as data
            and names the columns by position ("0", "1", ...).

    Raises:
        DataError: naming the file, the line or row, and the field.
    """
    path = _existing_file(path)
    suffix, codec = split_suffix(path)
    kind = kind or SUFFIX_KINDS.get(suffix)
    if kind is None:
        raise DataError(
            f"{path}: unknown file type {''.join(path.suffixes[-2:]) or path.name!r}; use one of "
            f"{sorted(SUFFIX_KINDS)}, compressed or not ({', '.join(sorted(COMPRESSIONS))})"
        )
    if codec and kind == "parquet":
        raise DataError(f"{path}: a Parquet file compresses its own columns; give the .parquet file itself")
    _check_header(path, kind, header, columns)
    options = {"format": format, "columns": columns, "on_error": on_error}
    try:
        return _load_kind(path, kind, suffix, delimiter, header, options)
    except DataError as exc:
        hint = likely_cause(path, kind, delimiter or ("\t" if suffix == ".tsv" else ","))
        if hint is None or hint in str(exc):
            raise
        raise DataError(f"{exc}. Likely cause: {hint}") from exc


def _load_kind(path: Path, kind: str, suffix: str, delimiter: str | None, header: bool, options: dict) -> Loaded:
    if kind == "jsonl":
        return _load(str(path), lambda: _jsonl_fast(path), lambda: _jsonl_rows(path), reread=True, **options)
    if kind == "json":
        return _load(str(path), None, lambda: _json_rows(path), **options)
    if kind == "csv":
        sep = delimiter or ("\t" if suffix == ".tsv" else ",")
        if header:
            _check_header_names(path, _csv_header(path, sep))
        rows = functools.partial(_csv_rows, path, sep, header)
        try:
            return _load(
                str(path), lambda: _csv_fast(path, sep, header), rows, post=_infer_ints, reread=True, **options,
            )  # fmt: skip
        except formats.FormatNotDetected as exc:
            if header and _looks_like_data(_csv_header(path, sep)):
                raise DataError(
                    f"{exc}. Its first row looks like data, not column names: if the file has no header row, "
                    "set header: false (dataset.header=false) and give the columns by position, "
                    "e.g. columns: {text: 0, label: 1}"
                ) from exc
            raise
    if kind == "parquet":
        return load_table(_parquet(path), source=str(path), **options)
    raise DataError(f"{path}: unknown file kind {kind!r}; use one of {sorted(set(SUFFIX_KINDS.values()))}")


def _check_header(path: Path, kind: str, header: bool, columns: Mapping[str, Any] | None) -> None:
    """Column positions go with ``header=False`` (CSV/TSV only), and names with a header row."""
    positions = {k: v for k, v in (columns or {}).items() if isinstance(v, int) and not isinstance(v, bool)}
    if not header and kind != "csv":
        raise DataError(f"{path}: header: false applies to CSV/TSV files only, not to a {kind} file")
    if header and positions:
        raise DataError(
            f"{path}: columns gives positions {positions}; positions need header: false "
            "(then the first row is read as data), or name the columns as the header row does"
        )
    names = {k: v for k, v in (columns or {}).items() if k not in positions and not str(v).isdigit()}
    if not header and (names or not columns):
        raise DataError(
            f"{path}: header: false leaves the columns without names; give each field's position, "
            f"e.g. columns: {{text: 0, label: 1}}" + (f" (got {names})" if names else "")
        )


def _check_header_names(path: Path, names: list[str]) -> None:
    """Say when spaces around header names are dropped (`_csv_names`); refuse a name given twice.

    A header that names a column twice leaves which value is the column's to chance, so it is refused.
    """
    spaced = [name for name in names if name != name.strip()]
    if spaced:
        say(f"{path}: spaces around header names dropped: {spaced} read as {[name.strip() for name in spaced]}")
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(_csv_names(names), start=1):
        seen.setdefault(name, []).append(i)
    twice = {name: at for name, at in seen.items() if len(at) > 1}
    if twice:
        named = "; ".join(f"{name!r} at columns {at}" for name, at in twice.items())
        raise DataError(f"{path}:1: the header names a column more than once ({named}); give each column its own name")


def _looks_like_data(names: list[str]) -> bool:
    """A header cell that is a number, or holds more than three words, is more likely a row of data."""
    import re

    return any(re.fullmatch(r"[+-]?\d+(\.\d+)?", name.strip()) or len(name.split()) > 3 for name in names)


def load_table(
    table: Any,
    *,
    source: str,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    on_error: str = "raise",
) -> Loaded:
    """Check and canonicalise an Arrow table already in memory (Parquet, a saved HF dataset)."""
    return _load(source, lambda: table, lambda: _table_rows(table, source), format, columns, on_error)


def load_records(
    records: Iterable[Any],
    *,
    source: str = "records",
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    on_error: str = "raise",
) -> Loaded:
    """Check Python rows (dicts) and build a canonical table; errors name the row (1-based)."""
    rows = ((Place(source, row=i), row, None) for i, row in enumerate(records, start=1))
    return _load(source, None, lambda: rows, format, columns, on_error)


def read_jsonl(path: str | os.PathLike, **options: Any) -> Any:
    """Read a JSON Lines file into a `datasets.Dataset` (options as for `load_file`).

    Raises:
        DataError: naming the file and line for a missing or empty file, undecodable bytes,
            a line that is not JSON, a value that is not an object, or a row that does not fit.
    """
    return to_hf(load_file(path, kind="jsonl", **options).table)


def to_hf(table: Any) -> Any:
    """Wrap an Arrow table as a `datasets.Dataset` without copying it."""
    import datasets
    from datasets.table import InMemoryTable

    # given a fingerprint, `datasets` skips making its own, which pickles the whole table (2x memory)
    return datasets.Dataset(InMemoryTable(table), fingerprint=fingerprint_table(table)[:16])


def hf_table(part: Any) -> Any:
    """The Arrow table behind a `datasets.Dataset`, with any index mapping applied."""
    return part.with_format("arrow")[:]


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error: {on_error!r} is not one of {list(ON_ERROR)}")
    return on_error


# -- the two paths ----------------------------------------------------------------------------


def _load(
    source: str,
    fast: Callable[[], Any] | None,
    rows: Callable[[], Iterable[tuple[Place, Any, str | None]]],
    format: str | None,
    columns: Mapping[str, str | int] | None,
    on_error: str,
    post: Callable[[Any], Any] | None = None,
    reread: bool = False,
) -> Loaded:
    import pyarrow as pa

    check_on_error(on_error)
    if format is not None:
        formats.get_format(format)
    mapping = formats.resolve_mapping(columns)
    table = None
    if fast is not None:
        try:
            table = fast()
        except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError):
            table = None  # the slow path will name the line (or the compressed file that cannot be read)
    if table is not None:
        if table.num_rows == 0:
            raise DataError(f"{source}: the file holds no rows")
        formats.check_mapping(mapping, table.column_names, source)
        fmt, full, recognised = formats.complete_mapping(mapping, table.column_names, format, source)
        table = table.rename_columns([full.get(name, name) for name in table.column_names])
        if formats.table_problem(table, fmt) is None:
            table = formats.canonical_table(table, fmt)
            table = post(table) if post else table
            report = LoadReport(source, rows=table.num_rows, columns=recognised)
            return Loaded(table, fmt, report, Origin(source, rows if reread else None))
    builder = _Builder(source, format, mapping, on_error)
    for place, item, raw in rows():
        builder.add(place, item, raw)
    loaded = builder.finish()
    if post:
        loaded.table = post(loaded.table)
    loaded.origin = Origin(source, rows if reread else None, builder.positions())
    return loaded


class _Builder:
    """Checks rows in order and turns the good ones into Arrow, one chunk at a time."""

    def __init__(self, source: str, fmt: str | None, mapping: dict[str, str], on_error: str):
        self.source, self.fmt, self.mapping, self.on_error = source, fmt, mapping, on_error
        self.report = LoadReport(source)
        self._pending: list[tuple[Place, Any, str | None]] = []
        self._tables: list[Any] = []
        self._seen: dict[str, Any] = {}
        self._mapping_checked = False
        self._read = 0  # rows read so far, good or bad
        self._kept: list[int] = []  # the position among the source's rows of each good row

    def positions(self) -> Any:
        import numpy as np

        return np.asarray(self._kept, dtype=np.int64)

    def add(self, place: Place, item: Any, raw: str | None = None) -> None:
        self._pending.append((place, item, raw))
        if len(self._pending) >= CHUNK_ROWS:
            self._flush()

    def finish(self) -> Loaded:
        import pyarrow as pa

        self._flush()
        if not self._tables:
            if self.report.total_skipped:
                raise DataError(f"{self.source}: every row was skipped: {self.report.skipped}")
            raise DataError(f"{self.source}: the file holds no rows")
        try:
            table = pa.concat_tables(self._tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{self.source}: a column holds different types in different rows ({exc})") from exc
        table = formats.canonical_table(table, self.fmt)
        self.report.rows = table.num_rows
        return Loaded(table, self.fmt, self.report)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._start([row for _, row, _ in pending if isinstance(row, dict)])
        good, first = [], None
        for position, (place, row, raw) in enumerate(pending, start=self._read):
            try:
                if isinstance(row, RowProblem):
                    raise row
                if self.fmt is None:  # nothing detectable yet: only non-objects so far
                    raise RowProblem("not_object", f"expected a JSON object, got {type_name(row)}")
                good.append(formats.check_row(_rename(row, self.mapping), self.fmt, self._seen))
                self._kept.append(position)
                first = first or place
            except RowProblem as problem:
                self._problem(place, problem, raw if raw is not None else _raw(row))
        self._read += len(pending)
        if good:
            self._tables.append(_rows_to_table(good, self.source, first))

    def _start(self, rows: list[dict]) -> None:
        """On the first chunk with objects: check the mapping, recognise columns, detect the format."""
        if self._mapping_checked or not rows:
            return
        keys = list(dict.fromkeys(key for row in rows for key in row))
        formats.check_mapping(self.mapping, keys, self.source)
        completed = formats.complete_mapping(self.mapping, keys, self.fmt, self.source)
        self.fmt, self.mapping, self.report.columns = completed
        self._mapping_checked = True

    def _problem(self, place: Place, problem: RowProblem, raw: str | None) -> None:
        if self.on_error == "raise":
            raise DataError(f"{place}: {problem.message}")
        self.report.skip(problem.reason, place, problem.message, raw)


def _raw(row: Any) -> str | None:
    """A skipped row as text, for rows that came parsed (JSON arrays, records, tables)."""
    if isinstance(row, RowProblem):
        return None
    return json.dumps(row, ensure_ascii=False, default=str)


def _rename(row: Any, mapping: dict[str, str]) -> Any:
    return formats.rename_row(row, mapping) if isinstance(row, dict) else row


def _rows_to_table(rows: list[dict], source: str, first: str | None) -> Any:
    """One Arrow table from checked rows; every key any row has becomes a column."""
    import pyarrow as pa

    keys = list(dict.fromkeys(key for row in rows for key in row))
    arrays = {}
    for key in keys:
        try:
            arrays[key] = pa.array([row.get(key) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise DataError(f"{source}: column {key!r} (in the rows from {first} on) cannot be stored: {exc}") from exc
    return pa.table(arrays)


# -- files ------------------------------------------------------------------------------------


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return path


def _jsonl_fast(path: Path) -> Any:
    import pyarrow.json as pj

    table = pj.read_json(path, read_options=pj.ReadOptions(block_size=_JSON_BLOCK_BYTES))
    table.validate(full=True)  # the JSON reader does not check that strings are UTF-8; this does
    return table


def _jsonl_rows(path: Path) -> Iterator[tuple[Place, Any, str]]:
    """(place, parsed object or RowProblem, the line as read) per non-blank line, streamed."""
    with open_read(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = Place(str(path), line=lineno)
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                message = f"bytes that are not UTF-8 at column {exc.start + 1} ({exc.reason})"
                yield where, RowProblem("undecodable", message), raw.decode("utf-8", "replace").rstrip("\r\n")
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line, object_pairs_hook=_unique_fields), line.rstrip("\r\n")
            except json.JSONDecodeError as exc:
                problem = RowProblem("not_json", f"not valid JSON ({exc.msg}, column {exc.colno})")
                yield where, problem, line.rstrip("\r\n")
            except _DuplicateField as exc:
                problem = RowProblem("duplicate_field", f"field {exc.args[0]!r} appears more than once; keep one")
                yield where, problem, line.rstrip("\r\n")


class _DuplicateField(Exception):
    """A JSON object naming a field twice (`json` keeps the last silently; which one was meant is unknown)."""


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateField(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return obj


def _json_rows(path: Path) -> Iterator[tuple[Place, Any, None]]:
    """Rows of a JSON document: an array of objects, or an object whose ``data`` is one."""
    with open_read(path) as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes that are not UTF-8 ({exc.reason})") from exc
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        document = json.loads(text, object_pairs_hook=_unique_fields)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
    except _DuplicateField as exc:
        raise DataError(f"{path}: an object names field {exc.args[0]!r} more than once; keep one") from exc
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        raise DataError(f"{path}: expected a JSON array of rows, or an object with a 'data' array")
    del raw, text
    for i, row in enumerate(document, start=1):
        yield Place(str(path), row=i), row, None


def _csv_header(path: Path, delimiter: str) -> list[str]:
    import io

    with open_read(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


def _csv_names(names: list[str]) -> list[str]:
    """Header names as the columns are called: without spaces around them (``text, label`` -> ``label``)."""
    return [name.strip() for name in names]


def _positions(n: int) -> list[str]:
    """Column names of a headerless file: the positions, as `columns: {text: 0}` refers to them."""
    return [str(i) for i in range(n)]


def _csv_fast(path: Path, delimiter: str, header: bool = True) -> Any:
    """Every column as strings (empty cells as null); `_infer_ints` turns int-only columns back into ints."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = _csv_header(path, delimiter)
    names = _csv_names(names) if header else _positions(len(names))
    return pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=_JSON_BLOCK_BYTES, column_names=names, skip_rows=int(header)),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        ),
    )


def _csv_rows(path: Path, delimiter: str, header: bool = True) -> Iterator[tuple[Place, Any, str]]:
    """(place, row dict or RowProblem, the record as read) per CSV record, streamed."""
    problems: list[tuple[Place, RowProblem, str]] = []
    with open_read(path) as fh:
        reader = csv.reader(_decoded_lines(fh, path, problems), delimiter=delimiter)
        first = next(reader, None)
        yield from problems
        problems.clear()
        if not first:
            raise DataError(f"{path}: no header row" if header else f"{path}: the file holds no rows")
        names = _csv_names(first) if header else _positions(len(first))
        records = reader if header else _chain_first(first, reader)
        for record in records:
            yield from problems
            problems.clear()
            where = Place(str(path), line=reader.line_num)
            if not record:
                continue
            raw = delimiter.join(record)
            if len(record) != len(names):
                what = f"{len(names)} fields {names}" if header else f"{len(names)} fields, as the first row has"
                yield where, RowProblem("wrong_columns", f"expected {what}, got {len(record)}"), raw
                continue
            row = {name: (value if value != "" else None) for name, value in zip(names, record, strict=True)}
            yield where, row, raw
        yield from problems


def _chain_first(first: list[str], reader: Any) -> Iterator[list[str]]:
    yield first
    yield from reader


def _decoded_lines(fh: Any, path: Path, problems: list) -> Iterator[str]:
    """Text lines for the csv module; an undecodable line is dropped and noted in `problems`."""
    for lineno, raw in enumerate(fh, start=1):
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problem = RowProblem("undecodable", f"bytes that are not UTF-8 ({exc.reason})")
            problems.append((Place(str(path), line=lineno), problem, raw.decode("utf-8", "replace").rstrip("\r\n")))


def _infer_ints(table: Any) -> Any:
    """CSV holds only text: a non-text column whose every value is an integer becomes int64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, name in enumerate(table.column_names):
        column = table.column(name)
        if name in formats.STRING_FIELDS or not pa.types.is_string(column.type):
            continue
        if column.null_count == len(column):
            continue
        matches = pc.match_substring_regex(column, _INT_PATTERN)
        if pc.all(matches).as_py():
            table = table.set_column(index, name, column.cast(pa.int64()))
    return table


def _parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _table_rows(table: Any, source: str) -> Iterator[tuple[Place, Any, None]]:
    """Rows of an Arrow table as Python dicts, one batch at a time."""
    row = 0
    for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
        for values in batch.to_pylist():
            row += 1
            yield Place(source, row=row), values, None


def load_hf(path: str | os.PathLike, *, config_name: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """Split name -> Arrow table from a directory written by `datasets` ``save_to_disk``.

    A path that does not exist locally is tried as a Hugging Face Hub dataset name (this needs
    the network, so nothing in the project's own runs or tests takes this branch).
    """
    import datasets

    local = Path(path)
    if local.exists():
        try:
            loaded = datasets.load_from_disk(str(local))
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"{local}: not a dataset saved with datasets' save_to_disk ({exc})") from exc
    else:
        try:
            loaded = datasets.load_dataset(str(path), name=config_name, revision=revision)
        except Exception as exc:  # the hub raises many types; all mean "could not get it"
            raise DataError(
                f"{path}: no such local path, and loading it from the Hugging Face Hub failed: {exc}"
            ) from exc
    if isinstance(loaded, datasets.Dataset):
        return {"train": hf_table(loaded)}
    return {name: hf_table(part) for name, part in loaded.items()}
