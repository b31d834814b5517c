"""The step protocol: what every sanitizer step is, and helpers to read and rewrite a row's text.

A step is any callable ``step(table, ctx) -> table`` where ``table`` is a `datasets.Dataset`
holding only rows that earlier steps kept. It returns the same rows, in the same order, with
two extra columns:

- ``REASON`` (str): why the row is rejected (the empty string keeps it);
- ``MODIFIED`` (bool): whether the step changed the row's text.

The step may rewrite text columns in place. It carries a ``name`` attribute for the report.
The sanitizer counts, splits off the rejected rows and drops the two columns between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

REASON = "__reason"
MODIFIED = "__modified"

#: The text-bearing columns of each format; chat rows hold their text in each message's content.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text",),
    "text": ("text",),
    "completion": ("prompt", "completion"),
    "instruction": ("instruction", "input", "output"),
    "chat": ("messages",),
}


@dataclass
class StepContext:
    """What a step may use besides the table itself.

    Args:
        format: the dataset format; decides which columns hold text.
        num_proc: worker processes for `datasets.map` (1 keeps it in-process).
        batch_size: rows per batch handed to vectorised code.
        eval_texts: texts of the evaluation splits, for decontamination.
        tokenizer: an optional tokenizer, for token-length filters.
    """

    format: str = "classification"
    num_proc: int = 1
    batch_size: int = 1000
    eval_texts: list[str] = field(default_factory=list)
    tokenizer: Any = None

    @property
    def text_fields(self) -> tuple[str, ...]:
        return TEXT_FIELDS[self.format]


class Step(Protocol):
    name: str

    def __call__(self, table: Any, ctx: StepContext) -> Any: ...


def present_fields(columns: list[str], ctx: StepContext) -> list[str]:
    """The format's text fields that this table actually has (optional ones may be absent)."""
    return [name for name in ctx.text_fields if name in columns]


def row_texts(batch: dict[str, list], ctx: StepContext) -> list[str]:
    """One string per row: all its text fields (and every chat message) joined by newlines."""
    fields = [name for name in ctx.text_fields if name in batch]
    n = len(next(iter(batch.values()))) if batch else 0
    texts = []
    for i in range(n):
        parts = []
        for name in fields:
            value = batch[name][i]
            if name == "messages":
                parts.extend(m.get("content") or "" for m in value or [])
            elif value is not None:
                parts.append(value)
        texts.append("\n".join(parts))
    return texts


def map_texts(batch: dict[str, list], ctx: StepContext, fn: Callable[[str], str]) -> list[bool]:
    """Apply `fn` to every text of every row in place; return which rows changed."""
    fields = [name for name in ctx.text_fields if name in batch]
    n = len(next(iter(batch.values()))) if batch else 0
    changed = [False] * n
    for name in fields:
        column = batch[name]
        for i, value in enumerate(column):
            if name == "messages":
                new_messages = []
                for message in value or []:
                    content = message.get("content")
                    new = fn(content) if content else content
                    changed[i] |= new != content
                    new_messages.append({**message, "content": new})
                column[i] = new_messages
            elif value is not None:
                new = fn(value)
                changed[i] |= new != value
                column[i] = new
    return changed


def mark(table: Any, reasons: list[str], modified: list[bool] | None = None) -> Any:
    """Attach the REASON and MODIFIED columns to a table whose text is already final."""
    modified = modified if modified is not None else [False] * len(reasons)
    return table.add_column(REASON, reasons).add_column(MODIFIED, modified)


def map_step(table: Any, ctx: StepContext, batch_fn: Callable[[dict[str, list]], dict[str, list]]) -> Any:
    """Run a row-wise step as a batched `datasets.map`; `batch_fn` returns the batch plus REASON/MODIFIED."""
    if len(table) == 0:
        return mark(table, [])  # `map` never calls batch_fn on an empty table
    return table.map(
        batch_fn,
        batched=True,
        batch_size=ctx.batch_size,
        num_proc=ctx.num_proc if ctx.num_proc > 1 and len(table) >= 2 * ctx.batch_size else None,
        load_from_cache_file=False,
        desc=None,
    )
