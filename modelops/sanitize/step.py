"""The step base class: what every sanitizer step is, and helpers to read and rewrite a row's text.

A step is a `SanitizeStep`: a dataclass whose fields are its parameters, called as
``step(table, ctx) -> table`` where ``table`` is a `datasets.Dataset` holding only rows that
earlier steps kept. It returns the same rows, in the same order, with two extra columns:

- ``REASON`` (str): why the row is rejected (the empty string keeps it), ``kind:detail``;
- ``MODIFIED`` (bool): whether the step changed the row's text.

The step may rewrite text columns in place. The sanitizer counts, splits off the rejected rows
(or, on a split the step does not remove from, keeps them and reports them as flagged) and drops
the two columns between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelops.data.formats import FORMATS
from modelops.errors import ConfigError

REASON = "__reason"
MODIFIED = "__modified"

#: The text-bearing columns of each format. A column of messages (chat rows, chat-form preference
#: pairs) holds its text in each message's content.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text",),
    "text": ("text",),
    "completion": ("prompt", "completion"),
    "instruction": ("instruction", "input", "output"),
    "chat": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt",),
}

#: The fields of an evaluation row that decontamination looks for in training rows, where not all its
#: text fields: a held-out pair leaks through its prompt, whatever answers a training pair gives to it.
EVAL_TEXT_FIELDS: dict[str, tuple[str, ...]] = {"preference": ("prompt",)}

#: Splits that hold evaluation data: by default no step removes rows from them (it reports them).
EVAL_SPLITS: tuple[str, ...] = ("validation", "test")


@dataclass
class StepContext:
    """What a step may use besides the table itself.

    Args:
        format: the dataset format; decides which columns hold text.
        num_proc: worker processes for `datasets.map` (1 keeps it in-process).
        batch_size: rows per batch handed to vectorised code.
        eval_texts: texts of the evaluation splits, for decontamination (train only).
        tokenizer: an optional tokenizer, for token-length filters.
        train: on a split other than train, the train rows as they entered this same step, for
            steps that compare with them (``reads_train``); None otherwise.
    """

    format: str = "classification"
    num_proc: int = 1
    batch_size: int = 1000
    eval_texts: list[str] = field(default_factory=list)
    tokenizer: Any = None
    train: Any = None

    @property
    def text_fields(self) -> tuple[str, ...]:
        return TEXT_FIELDS[self.format]


@dataclass
class SanitizeStep:
    """Base of every sanitizer step: the attributes the sanitizer reads, with their defaults.

    Subclasses are dataclasses whose fields are their parameters; they set `name` and implement
    `__call__` (see the module docstring), and may override the class attributes and `check`.
    A subclass with a ``__post_init__`` calls ``super().__post_init__()``.

    Args:
        only_for: the formats this entry runs on; on other formats it is skipped. None: every
            format it supports (a format outside `formats` is then an error).
        splits: the splits this step removes rows from. On the others it still runs (its rewrites
            apply) but the rows it rejects are kept and reported as flagged. None: every split
            except validation and test, so evaluation data stays comparable.

    Attributes:
        name: the step's name in the report.
        formats: the dataset formats it works on (None: every format).
        uses_eval_texts: it reads ``ctx.eval_texts`` (collected only then).
        reads_train: on other splits it reads ``ctx.train`` (kept only then).
        notes: what the last call wants added to its entry of the report.
    """

    name: ClassVar[str] = "step"
    formats: ClassVar[tuple[str, ...] | None] = None
    uses_eval_texts: ClassVar[bool] = False
    reads_train: ClassVar[bool] = False

    only_for: list[str] | None = field(default=None, kw_only=True)
    splits: list[str] | None = field(default=None, kw_only=True)
    notes: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.only_for = _names(self.only_for, f"{self.name}.only_for", FORMATS)
        self.splits = _names(self.splits, f"{self.name}.splits", None)

    def __call__(self, table: Any, ctx: StepContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(table, ctx)")

    def check(self, ctx: StepContext) -> None:
        """Raise `ConfigError` ("<name>.<field>: why") when the step cannot run in `ctx`; before any row is read."""

    def runs_on(self, format: str) -> bool:
        """Whether this entry runs on `format` data (`only_for`)."""
        return self.only_for is None or format in self.only_for

    def removes_from(self, split: str) -> bool:
        """Whether rows this step rejects in `split` are removed (else kept and reported as flagged)."""
        return split in self.splits if self.splits is not None else split not in EVAL_SPLITS


def _names(value: Any, key: str, allowed: tuple[str, ...] | None) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    bad = [v for v in values if not isinstance(v, str) or (allowed is not None and v not in allowed)]
    if bad or not values:
        what = f"formats from {list(allowed)}" if allowed is not None else "split names"
        raise ConfigError(f"{key}: {values!r} must be a non-empty list of {what}")
    return values


def arrow_table(table: Any) -> Any:
    """The `pyarrow.Table` of a `datasets.Dataset`, with any row selection applied (zero-copy without one)."""
    return table.with_format("arrow")[:]


def present_fields(columns: Any, ctx: StepContext) -> list[str]:
    """The format's text fields that this table (or batch) actually has (optional ones may be absent)."""
    return [name for name in ctx.text_fields if name in columns]


def _batch_len(batch: Any, fields: list[str]) -> int:
    if fields:
        return len(batch[fields[0]])
    return len(next(iter(batch.values()))) if batch else 0


def row_texts(batch: Any, ctx: StepContext) -> list[str]:
    """One string per row: all its text fields (and every chat message) joined by newlines.

    Only the text columns are read, so a lazily formatted batch converts nothing else.
    """
    fields = present_fields(batch, ctx)
    if fields == ["text"]:
        return [value or "" for value in batch["text"]]  # the common case, without the per-row join
    columns = [batch[name] for name in fields]
    texts = []
    for i in range(_batch_len(batch, fields)):
        parts = []
        for column in columns:
            value = column[i]
            if isinstance(value, list):  # messages
                parts.extend(m.get("content") or "" for m in value)
            elif value is not None:
                parts.append(value)
        texts.append("\n".join(parts))
    return texts


def eval_row_texts(batch: Any, ctx: StepContext) -> list[str]:
    """One string per evaluation row, of the fields decontamination compares (`EVAL_TEXT_FIELDS`)."""
    fields = EVAL_TEXT_FIELDS.get(ctx.format)
    return row_texts({name: batch[name] for name in fields if name in batch} if fields else batch, ctx)


def map_texts(batch: Any, ctx: StepContext, fn: Callable[[str], str]) -> tuple[dict[str, list], list[bool]]:
    """Apply `fn` to every text of every row.

    Returns:
        The rewritten text columns (new lists; `batch` is not changed) and which rows changed.
    """
    fields = present_fields(batch, ctx)
    changed = [False] * _batch_len(batch, fields)
    out: dict[str, list] = {}
    for name in fields:
        column = list(batch[name])
        for i, value in enumerate(column):
            if isinstance(value, list):  # messages
                new_messages = []
                for message in value:
                    content = message.get("content")
                    new = fn(content) if content else content
                    changed[i] |= new != content
                    new_messages.append({**message, "content": new})
                column[i] = new_messages
            elif value is not None:
                new = fn(value)
                changed[i] |= new != value
                column[i] = new
        out[name] = column
    return out, changed


def mark(table: Any, reasons: Any, modified: Any = None) -> Any:
    """Attach the REASON and MODIFIED columns to a table whose text is already final."""
    import numpy as np

    modified = modified if modified is not None else np.zeros(len(reasons), dtype=bool)
    # A fingerprint of our own: by default `datasets` hashes the new column, i.e. pickles all of it.
    table = table.add_column(REASON, reasons, new_fingerprint=new_fingerprint())
    return table.add_column(MODIFIED, modified, new_fingerprint=new_fingerprint())


def new_fingerprint() -> str:
    """A fresh fingerprint for a table the sanitizer made (nothing here is cached by fingerprint)."""
    from datasets.fingerprint import generate_random_fingerprint

    return generate_random_fingerprint()


def arrow_dataset(table: Any, features: Any) -> Any:
    """A `datasets.Dataset` over a `pyarrow.Table`, without hashing its data for a fingerprint."""
    import datasets

    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=new_fingerprint())


_WORK: Callable[[dict[str, list]], dict[str, Any]] | None = None  # what forked workers run (inherited)


def _call_work(batch: dict[str, list]) -> dict[str, Any]:
    return _WORK(batch)


def map_batches(
    table: Any, ctx: StepContext, fn: Callable[[dict[str, list]], dict[str, Any]], columns: list[str], parallel: bool
) -> dict[str, list]:
    """Call `fn` on every batch of `table` (only `columns`, as Python lists); return each output key's parts.

    With `ctx.num_proc > 1` and `parallel`, batches go to forked worker processes, at most a few
    per worker in flight, so the Python objects alive at any time stay a few batches' worth.
    Workers inherit `fn` through the fork: closures need not pickle, only the batches do.

    Returns:
        Output key -> the values `fn` returned for it, one entry per batch, in order.
    """
    import multiprocessing
    import threading

    global _WORK
    data = arrow_table(table)
    n, size = len(data), ctx.batch_size
    procs = ctx.num_proc if parallel and ctx.num_proc > 1 and n >= 2 * size else 1
    if procs > 1 and "fork" not in multiprocessing.get_all_start_methods():
        procs = 1  # spawn would have to pickle `fn`; stay in-process rather than fail
    in_flight = threading.BoundedSemaphore(4 * procs)

    def batches():
        for start in range(0, n, size):
            if procs > 1:
                in_flight.acquire()
            part = data.slice(start, size)
            yield {name: part.column(name).to_pylist() for name in columns}

    parts: dict[str, list] = {}
    if procs == 1:
        for out in map(fn, batches()):
            for key, value in out.items():
                parts.setdefault(key, []).append(value)
        return parts
    _WORK = fn
    try:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            for out in pool.imap(_call_work, batches()):
                in_flight.release()
                for key, value in out.items():
                    parts.setdefault(key, []).append(value)
    finally:
        _WORK = None
    return parts


def map_step(table: Any, ctx: StepContext, batch_fn: Callable[[Any], dict[str, list]], parallel: bool = True) -> Any:
    """Run a row-wise step over batches of its text columns; return the table with REASON and MODIFIED.

    `batch_fn` gets a batch of the format's text columns (Python lists) and returns REASON,
    MODIFIED and only the columns it rewrites. The other columns are the input's Arrow columns,
    reused as they are, so a filter step neither converts nor copies what it does not read.

    Args:
        parallel: use `ctx.num_proc` workers; pass False for work cheaper than shipping the
            rows to a worker process (an emptiness or length check).
    """
    import datasets
    import pyarrow as pa

    data = arrow_table(table)
    fields = present_fields(table.column_names, ctx)
    parts = map_batches(table, ctx, batch_fn, fields, parallel)
    types = {name: data.schema.field(name).type for name in table.column_names}
    types.update({REASON: pa.string(), MODIFIED: pa.bool_()})
    names = [*table.column_names, REASON, MODIFIED]
    columns = [
        pa.chunked_array([pa.array(p, type=types[name]) for p in parts.get(name, [])], type=types[name])
        if name in parts or name in (REASON, MODIFIED)
        else data.column(name)
        for name in names
    ]
    features = datasets.Features({**table.features, REASON: datasets.Value("string"), MODIFIED: datasets.Value("bool")})
    return arrow_dataset(pa.table(columns, names=names), features)


def flags(n: int, reasons: list[str] | None = None, modified: list[bool] | None = None) -> dict[str, list]:
    """The REASON and MODIFIED columns of a batch of `n` rows (defaults: kept, unchanged)."""
    return {REASON: reasons if reasons is not None else [""] * n, MODIFIED: modified or [False] * n}
