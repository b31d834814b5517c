"""Exact deduplication on normalised content, with label/completion conflicts flagged.

Each row gets two 64-bit keys in a batched pass: one of its
whole content with its answer, one of its input alone. The grouping is then numpy over the
key arrays, so no per-row Python object outlives the pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xxhash

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, map_batches, mark, present_fields, row_texts

# The column that is the answer for the row's input: same input, different answer = a conflict.
# A prompt row's `answer` column (kept beside the prompt for reward functions) is its answer when it has one.
_TARGETS = {"classification": "label", "completion": "completion", "instruction": "output", "prompt": "answer"}
_ON_CONFLICT = ("keep", "drop", "report")
_FULL, _INPUT = "__full_key", "__input_key"
PAIR_FIELDS = ("prompt", "chosen", "rejected")
_FIELD = "\x00"  # between the fields of a pair's key: not whitespace, so normalising keeps it
#: Formats whose rows can conflict, and the reason a conflicting row is dropped with.
_CONFLICTS = {
    **{fmt: "conflict:same_input_different_answer" for fmt in _TARGETS},
    "preference": "conflict:reversed_pair",
}


def _key(text: str) -> int:
    # Case and whitespace do not make two rows different examples.
    return xxhash.xxh3_64_intdigest(" ".join(text.lower().split()).encode())


def _hashes(texts) -> np.ndarray:
    return np.fromiter(map(_key, texts), dtype=np.uint64, count=len(texts))


def _pair_keys(batch, ctx: StepContext) -> dict[str, np.ndarray]:
    """Preference pairs: the full key is the whole pair; the input key the prompt and the two answers unordered.

    So two rows share an input key but not a full key exactly when one is the other reversed.
    """
    prompts, chosen, rejected = (
        [" ".join(text.lower().split()) for text in row_texts({name: batch[name]}, ctx)] for name in PAIR_FIELDS
    )
    rows = list(zip(prompts, chosen, rejected, strict=True))
    full = [_FIELD.join(row) for row in rows]
    unordered = [_FIELD.join([prompt, *sorted(sides)]) for prompt, *sides in rows]
    return {_FULL: _hashes(full), _INPUT: _hashes(unordered)}


def _keys(table, ctx: StepContext, target: str | None):
    """The (full, input) key of every row, computed batch by batch."""
    input_fields = [f for f in ctx.text_fields if f != target]

    def batch_fn(batch):
        if ctx.format == "preference":
            return _pair_keys(batch, ctx)
        full = row_texts(batch, ctx)
        answers = batch[target] if target in batch else [None] * len(full)
        inputs = row_texts({k: batch[k] for k in input_fields if k in batch}, ctx) if target else full
        keyed = [f"{text}\x00{answer}" for text, answer in zip(full, answers, strict=True)]
        return {_FULL: _hashes(keyed), _INPUT: _hashes(inputs)}

    columns = [*present_fields(table.column_names, ctx), *([target] if target in table.column_names else [])]
    # Hashing a row costs less than shipping it to a worker: in-process.
    parts = map_batches(table, ctx, batch_fn, columns, parallel=False)
    return (np.concatenate(parts[name]).astype(np.uint64) for name in (_FULL, _INPUT))


def first_of_group(keys: np.ndarray) -> np.ndarray:
    """For each position, the first position holding the same key."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def conflicting_rows(input_keys: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Kept rows whose input key is shared with another kept row (so their answers differ), sorted."""
    rows = np.flatnonzero(kept)
    _, inverse, counts = np.unique(input_keys[rows], return_inverse=True, return_counts=True)
    return rows[counts[inverse.reshape(-1)] > 1]


@dataclass
class ExactDedup(SanitizeStep):
    """Keep the first row of each group with identical normalised content.

    Rows whose input matches another row's but whose label (or completion/output) differs are
    conflicts: `keep` them silently, `report` them (kept, counted in the report with examples),
    or `drop` every row of the conflicting input. Formats without an answer (text, chat) have
    no conflicts. Preference pairs are keyed on the whole pair (prompt, chosen and rejected: the
    same prompt with other answers is another pair); a pair and its reverse (chosen and rejected
    swapped) are a conflict, ``conflict:reversed_pair``.

    On a split other than train, a row identical to a train row (as train entered this step) is
    ``copy_of_train:row=<i>``: by default reported, not removed (see `SanitizeStep.splits`), so a
    test set stays comparable while its overlap with train is counted and shown.

    Args:
        on_conflict: `keep`, `drop` or `report`.
    """

    on_conflict: str = "report"
    name: ClassVar[str] = "exact_dedup"
    reads_train: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.on_conflict not in _ON_CONFLICT:
            raise ConfigError(f"exact_dedup.on_conflict: {self.on_conflict!r} is not one of {list(_ON_CONFLICT)}")

    def __call__(self, table, ctx: StepContext):
        target = _TARGETS.get(ctx.format)
        if len(table) == 0:
            self.notes = {}
            return mark(table, [])
        full, inputs = _keys(table, ctx, target)
        of_row = first_of_group(full)
        duplicate = of_row != np.arange(len(full))
        reasons = np.full(len(full), "", dtype=object)
        reasons[duplicate] = [f"duplicate:of_row={i}" for i in of_row[duplicate].tolist()]
        has_conflicts = ctx.format in _CONFLICTS
        conflicts = conflicting_rows(inputs, ~duplicate) if has_conflicts else np.empty(0, dtype=np.int64)
        if self.on_conflict == "drop" and has_conflicts:
            reasons[conflicts] = _CONFLICTS[ctx.format]
        # Row indices are positions in the table this step saw, i.e. after earlier steps.
        rows = conflicts[:20].tolist()
        self.notes = {} if self.on_conflict == "keep" else {"conflicting_rows": len(conflicts), "rows": rows}
        if ctx.train is not None:
            copies, train_rows = rows_in(full, next(_keys(ctx.train, ctx, target)))
            reasons[copies] = [f"copy_of_train:row={i}" for i in train_rows.tolist()]
            self.notes["copies_of_train"] = len(copies)
        return mark(table, _string_array(reasons))


def rows_in(keys: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of `keys` found in `reference`, and the first position of each in `reference`."""
    order = np.argsort(reference, kind="stable")
    ordered = reference[order]
    at = np.minimum(np.searchsorted(ordered, keys), max(len(ordered) - 1, 0))
    found = np.flatnonzero(ordered[at] == keys) if len(ordered) else np.empty(0, dtype=np.int64)
    return found, order[at[found]]


def _string_array(values: np.ndarray):
    import pyarrow as pa

    return pa.array(values, type=pa.string())
