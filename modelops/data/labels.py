"""Label strings as classes: spaces around a label stripped, empty labels refused, case variants named.

`positive`, `positive ` and `Positive` would otherwise be three classes. Spaces never mean anything
in a label, so they are stripped (and counted in the load report). Case may mean something, so it is
kept unless asked (``lowercase_labels=True``), but two labels that differ only by case are named in a
warning, with a line of each. All of it is Arrow compute over the label column: no Python row loop.
"""

from __future__ import annotations

import warnings
from typing import Any

from modelops.data import loaders
from modelops.errors import DataError


def normalize_labels(part: Any, report: loaders.LoadReport, origin: loaders.Origin | None, lowercase: bool,
                     on_error: str, split: str) -> tuple[Any, loaders.Origin | None]:  # fmt: skip
    """`part` (a `datasets.Dataset`) with its string labels stripped (and lower-cased with `lowercase`).

    Changed labels are counted in `report.changed`; an empty label is an error naming its line
    (``on_error="raise"``) or a skipped row (``"skip"``).

    Returns:
        The new part and the origin of its rows.

    Raises:
        DataError: an empty (or blank) label, naming the file and line.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if "label" not in part.column_names or len(part) == 0:
        return part, origin
    table = loaders.hf_table(part)
    column = table.column("label")
    if not pa.types.is_string(column.type):
        return part, origin
    new = pc.utf8_trim_whitespace(column)
    _count(report, "label_spaces_stripped", column, new)
    if lowercase:
        lowered = pc.utf8_lower(new)
        _count(report, "label_lowercased", new, lowered)
        new = lowered
    table = table.set_column(table.column_names.index("label"), "label", new)
    empty = pc.fill_null(pc.equal(new, ""), False).to_numpy(zero_copy_only=False)
    if empty.any():
        rows = np.flatnonzero(empty)
        where = _locate(origin, split, rows[:1])[0]
        if on_error != "skip":
            raise DataError(
                f"{where}: field 'label' is empty{' (only spaces)' if column[int(rows[0])].as_py() else ''}; "
                f"every row needs a label ({len(rows)} row(s) of {report.source} have none)"
            )
        for row, place in zip(rows.tolist(), _locate(origin, split, rows), strict=True):
            report.skip("empty_label", _place(place, report.source, row), "field 'label' is empty", None)
        kept = np.flatnonzero(~empty)
        table = table.take(kept)
        origin = origin.take(kept) if origin is not None else None
        report.rows = table.num_rows
    return loaders.to_hf(table), origin


def _count(report: loaders.LoadReport, what: str, before: Any, after: Any) -> None:
    import pyarrow.compute as pc

    changed = pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0
    if changed:
        report.changed[what] = report.changed.get(what, 0) + changed


def _place(text: str, source: str, row: int) -> loaders.Place:
    """A `Place` back from ``file:line`` (as `Origin.locate` names a row), else the row's number."""
    head, _, tail = text.rpartition(":")
    return loaders.Place(head, line=int(tail)) if tail.isdigit() else loaders.Place(source, row=row + 1)


def _locate(origin: loaders.Origin | None, split: str, rows: Any) -> list[str]:
    rows = [int(r) for r in rows]
    return origin.locate(rows) if origin is not None else [f"split {split!r}, row {r + 1}" for r in rows]


def case_variants(part: Any, origin: loaders.Origin | None, split: str) -> list[str]:
    """One line per group of labels of `part` that differ only by case, naming a line of each."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "label" not in part.column_names or len(part) == 0:
        return []
    column = loaders.hf_table(part).column("label").combine_chunks()
    if not pa.types.is_string(column.type):
        return []
    distinct = [v for v in pc.unique(column).to_pylist() if v is not None]
    groups: dict[str, list[str]] = {}
    for value in distinct:
        groups.setdefault(value.lower(), []).append(value)
    lines = []
    for variants in (sorted(g) for g in groups.values() if len(g) > 1):
        firsts = [pc.index(column, v).as_py() for v in variants]
        places = _locate(origin, split, firsts)
        named = ", ".join(f"{v!r} ({p})" for v, p in zip(variants, places, strict=True))
        lines.append(f"labels {named} differ only by case")
    return lines


def warn_case_variants(lines: list[str]) -> None:
    """Warn once for every group of case variants found, with how to merge them."""
    if lines:
        warnings.warn(
            "; ".join(lines) + ": they are separate classes. If they mean the same, set lowercase_labels=True "
            "(dataset.lowercase_labels=true on the command line) to merge them",
            UserWarning,
            stacklevel=5,  # the user's call of Dataset.from_*
        )
