"""The likely cause of a file that does not load, read from its first bytes, for the error message.

A loader error says what is wrong at which line; when the file shows a usual cause (an encoding other
than UTF-8, a delimiter other than the one assumed, spaces around header names, a JSON array in a
JSON Lines file) the message says that too, with the fix.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from modelops.data.compression import open_read

_SAMPLE_BYTES = 64 << 10
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def likely_cause(path: Path, kind: str, delimiter: str | None) -> str | None:
    """One sentence naming the likely cause and its fix, or None when the file shows none of them."""
    try:
        with open_read(path) as fh:
            sample = fh.read(_SAMPLE_BYTES)
    except Exception:  # the error being explained is the one to report; this is only a hint
        return None
    return _encoding(sample) or (
        _json_array(sample) if kind == "jsonl" else _csv(sample, delimiter) if kind == "csv" else None
    )


def _encoding(sample: bytes) -> str | None:
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
    try:
        sample.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        if len(sample) == _SAMPLE_BYTES and exc.start >= len(sample) - 4:
            return None  # a character cut by the sample's end
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "the file is not UTF-8; save it as UTF-8"
    return (
        "the file is not UTF-8; it reads as Windows-1252/Latin-1: convert it, e.g. "
        "iconv -f cp1252 -t utf-8 in > out, or save it as UTF-8"
    )


def _json_array(sample: bytes) -> str | None:
    if sample.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return (
            "the file holds a JSON array, not JSON Lines (one object per line): name it .json, or use Dataset.from_json"
        )
    return None


def _csv(sample: bytes, delimiter: str | None) -> str | None:
    text = sample.decode("utf-8", "replace").lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    assumed = delimiter or ","
    header = next(csv.reader(io.StringIO(first), delimiter=assumed), [])
    if len(header) <= 1:
        counts = {d: first.count(d) for d in _DELIMITERS if d != assumed}
        other = max(counts, key=counts.get) if counts else None
        if other and counts[other]:
            shown = "\\t" if other == "\t" else other
            return (
                f"the header has one column with {assumed!r} as delimiter but {counts[other]} {_DELIMITERS[other]}(s): "
                f"the file seems {_DELIMITERS[other]}-separated; set delimiter={shown!r} (dataset.delimiter='{shown}')"
            )
    spaced = [name for name in header if name != name.strip()]
    if spaced:
        return (
            f"header names with spaces around them {spaced}, which are read without the spaces: "
            f"name them so in columns, e.g. {spaced[0].strip()!r}"
        )
    return None
