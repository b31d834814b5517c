"""Rows longer than `model.max_length`: the `trainer.too_long` policy, and the count of what it did.

Every tokenised row keeps two bookkeeping columns: `ROW`, its index in the split it came from,
and `CUT`, what truncation did to it (`WHOLE`, `PROMPT_CUT` or `END_CUT`). They ride along in
the tokenisation cache, so the report is the same on a cache hit, and the collators never see them.

Policies: `truncate` cuts the row to fit (for causal LMs the prompt first, from
`trainer.truncation_side`, so the answer survives; then the end), `skip` drops the row and counts
it, `reject` stops at the first such row with an error naming its file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.errors import DataError
from modelops.models.labels import IGNORE_INDEX

TOO_LONG = ("truncate", "skip", "reject")
SIDES = ("left", "right")
ROW, CUT = "_row", "_cut"
WHOLE, PROMPT_CUT, END_CUT = 0, 1, 2
_EXAMPLES = 5

Locate = Callable[[list[int]], list[str]]


class RowError(Exception):
    """A row that cannot be used, raised inside `datasets.map`; `row_error` names its place outside."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index, self.message = index, message


def row_error(exc: RowError, locate: Locate | None) -> DataError:
    """`exc` as a DataError naming the row's place (`locate`: file, line and split; default: its 1-based row)."""
    return DataError(f"{where(exc.index, locate)}: {exc.message}")


def too_long_message(n_tokens: int, max_length: int) -> str:
    return (
        f"{n_tokens} tokens exceed model.max_length={max_length} (trainer.too_long='reject'; "
        "'truncate' cuts the row to fit, 'skip' drops it, both counted in data/tokenize_report.json)"
    )


def cut_to_fit(input_ids: list[int], labels: list[int], max_length: int, side: str, keep_first: int) -> tuple:
    """Cut a causal-LM row to `max_length` tokens, keeping its answer where possible.

    The prompt (the tokens before the first one that carries loss) is cut first, from `side`
    ("left" drops its start and keeps the part next to the answer), always keeping its first
    `keep_first` tokens (the BOS) and at least one token before the answer, which predicts the
    answer's first token. What still does not fit is cut from the end.

    Returns:
        (input_ids, labels, cut) with cut one of WHOLE, PROMPT_CUT, END_CUT.
    """
    excess = len(input_ids) - max_length
    if excess <= 0:
        return input_ids, labels, WHOLE
    start = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    drop = min(excess, max(0, start - max(keep_first, 1)))
    if drop:
        # Positions [lo, hi) of the prompt are removed.
        lo = keep_first if side == "left" else start - drop
        input_ids = input_ids[:lo] + input_ids[lo + drop :]
        labels = labels[:lo] + labels[lo + drop :]
    if len(input_ids) <= max_length:
        return input_ids, labels, PROMPT_CUT
    return input_ids[:max_length], labels[:max_length], END_CUT


def summary(tokenized, rows_in: int, split: str, locate: Locate | None, settings: dict[str, Any]) -> dict[str, Any]:
    """What the too_long policy did to one split: counts, and the first few rows of each kind by file:line."""
    import numpy as np

    columns = tokenized.select_columns([ROW, CUT]).with_format("numpy")[:]
    rows, cuts = np.asarray(columns[ROW], dtype=np.int64), np.asarray(columns[CUT])
    counts = np.bincount(cuts, minlength=3)
    skipped = np.setdiff1d(np.arange(rows_in), rows)
    examples = {
        "prompt_cut": rows[cuts == PROMPT_CUT][:_EXAMPLES],
        "end_cut": rows[cuts == END_CUT][:_EXAMPLES],
        "skipped": skipped[:_EXAMPLES],
    }
    wanted = [int(i) for idx in examples.values() for i in idx]
    places = dict(zip(wanted, locate(wanted) if locate else [f"row {i + 1}" for i in wanted], strict=True))
    return {
        "split": split,
        **settings,
        "rows_in": int(rows_in),
        "rows_out": len(rows),
        "kept_whole": int(counts[WHOLE]),
        "prompt_cut": int(counts[PROMPT_CUT]),
        "end_cut": int(counts[END_CUT]),
        "skipped": len(skipped),
        "examples": {kind: [places[int(i)] for i in idx] for kind, idx in examples.items() if len(idx)},
    }


def summary_line(report: dict[str, Any]) -> str | None:
    """One line for the console when some row was too long, else None."""
    parts = []
    if report["prompt_cut"]:
        parts.append(f"{report['prompt_cut']} truncated (prompt cut from the {report['truncation_side']})")
    if report["end_cut"]:
        parts.append(f"{report['end_cut']} truncated at the end")
    if report["skipped"]:
        parts.append(f"{report['skipped']} skipped")
    if not parts:
        return None
    over = report["prompt_cut"] + report["end_cut"] + report["skipped"]
    first = next(iter(report["examples"].values()))[0]
    return (
        f"split {report['split']!r}: {over} of {report['rows_in']} rows are longer than "
        f"model.max_length={report['max_length']} (trainer.too_long={report['too_long']!r}): "
        f"{', '.join(parts)}; first: {first}"
    )


def where(index: int, locate: Locate | None) -> str:
    """The place of row `index`: `locate`'s answer, else ``row N`` (1-based)."""
    return locate([index])[0] if locate is not None else f"row {index + 1}"
