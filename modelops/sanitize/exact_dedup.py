"""Exact deduplication on normalised content, with label/completion conflicts flagged."""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from modelops.errors import ConfigError
from modelops.sanitize.step import StepContext, mark, row_texts

# The column that is the answer for the row's input: same input, different answer = a conflict.
_TARGETS = {"classification": "label", "completion": "completion", "instruction": "output"}
_ON_CONFLICT = ("keep", "drop", "report")


def _key(text: str) -> int:
    # Case and whitespace do not make two rows different examples.
    return xxhash.xxh3_64_intdigest(" ".join(text.lower().split()).encode())


@dataclass
class ExactDedup:
    """Keep the first row of each group with identical normalised content.

    Rows whose input matches another row's but whose label (or completion/output) differs are
    conflicts: `keep` them silently, `report` them (kept, counted in the report with examples),
    or `drop` every row of the conflicting input.

    Args:
        on_conflict: `keep`, `drop` or `report`.
    """

    on_conflict: str = "report"
    name: str = "exact_dedup"

    def __post_init__(self) -> None:
        if self.on_conflict not in _ON_CONFLICT:
            raise ConfigError(f"exact_dedup.on_conflict: {self.on_conflict!r} is not one of {list(_ON_CONFLICT)}")

    def __call__(self, table, ctx: StepContext):
        target = _TARGETS.get(ctx.format)
        input_fields = [f for f in ctx.text_fields if f != target]
        full_seen: dict[int, int] = {}
        input_answers: dict[int, set] = {}
        input_rows: dict[int, list[int]] = {}
        reasons: list[str] = []
        for start in range(0, len(table), ctx.batch_size):
            batch = table[start : start + ctx.batch_size]
            full = row_texts(batch, ctx)
            answers = batch[target] if target in batch else [None] * len(full)
            inputs = row_texts({k: batch[k] for k in input_fields if k in batch}, ctx) if target else full
            for i, (text, answer, inp) in enumerate(zip(full, answers, inputs, strict=True)):
                key = _key(f"{text}\x00{answer}")
                index = start + i
                if key in full_seen:
                    reasons.append(f"duplicate:of_row={full_seen[key]}")
                    continue
                full_seen[key] = index
                reasons.append("")
                ikey = _key(inp)
                input_answers.setdefault(ikey, set()).add(str(answer))
                input_rows.setdefault(ikey, []).append(index)
        conflicts = self._conflicts(input_answers, input_rows) if target else []
        if self.on_conflict == "drop":
            for index in conflicts:
                reasons[index] = "conflict:same_input_different_answer"
        # Row indices are positions in the table this step saw, i.e. after earlier steps.
        self.notes = {} if self.on_conflict == "keep" else {"conflicting_rows": len(conflicts), "rows": conflicts[:20]}
        return mark(table, reasons)

    @staticmethod
    def _conflicts(input_answers: dict[int, set], input_rows: dict[int, list[int]]) -> list[int]:
        return sorted(i for key, answers in input_answers.items() if len(answers) > 1 for i in input_rows[key])
