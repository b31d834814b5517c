"""One table renderer, on `rich`: terminal tables for the registry CLI, evaluation comparisons, the
sanitize report and sweep summaries, and the same tables as Markdown for files.

Cells are what callers pass: a string is printed as it is, None is absent (an empty cell, or `-` where
a caller asks for a placeholder), a float is shown to 4 significant digits unless the caller formatted it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from modelops.flatten import is_number

# rich's SIMPLE_HEAD with an ASCII rule: the output stays plain text on any terminal and in log files.
_RULE_BOX = (
    "    \n"
    "    \n"
    " -- \n"
    "    \n"
    "    \n"
    "    \n"
    "    \n"
    "    \n"
)  # fmt: skip


def cell(value: Any, digits: int = 4, absent: str = "") -> str:
    """The text of one cell: None -> `absent`, a float to `digits` significant digits, else `str`."""
    if value is None:
        return absent
    if is_number(value) and isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[int] = (),
    title: str | None = None,
    markdown: bool = False,
    absent: str = "",
) -> str:
    """A table as plain text (columns separated by spaces, a rule under the header) or as Markdown.

    Args:
        header: column names.
        rows: the cells, one sequence per row (see `cell`).
        right: indexes of the columns aligned right (numbers).
        title: a line above the table.
        markdown: a Markdown table (for `.md` files) instead of the terminal layout.
        absent: what an absent (None) cell shows.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rule = box.MARKDOWN if markdown else box.Box(_RULE_BOX, ascii=True)
    table = Table(box=rule, show_edge=markdown, pad_edge=markdown, header_style="")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(cell(v, absent=absent) for v in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, force_terminal=False, legacy_windows=False).print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    text = "\n".join(line for line in lines if line)
    return f"{title}\n{text}" if title else text
