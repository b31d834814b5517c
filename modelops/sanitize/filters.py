"""Row filters: drop rows whose text is empty, or too short or too long."""

from __future__ import annotations

from dataclasses import dataclass

from modelops.errors import ConfigError
from modelops.sanitize.step import MODIFIED, REASON, StepContext, map_step, present_fields


@dataclass
class DropEmpty:
    """Drop rows where any required text field is empty or whitespace only."""

    name: str = "drop_empty"

    def __call__(self, table, ctx: StepContext):
        # `input` of the instruction format is optional: empty is fine there.
        fields = [f for f in present_fields(table.column_names, ctx) if f != "input"]

        def batch_fn(batch):
            n = len(batch[fields[0]])
            reasons = [""] * n
            for name in fields:
                for i, value in enumerate(batch[name]):
                    if reasons[i]:
                        continue
                    if name == "messages":
                        if not value or not any((m.get("content") or "").strip() for m in value):
                            reasons[i] = "empty:messages"
                    elif value is None or not str(value).strip():
                        reasons[i] = f"empty:{name}"
            return {**batch, REASON: reasons, MODIFIED: [False] * n}

        return map_step(table, ctx, batch_fn)


@dataclass
class LengthFilter:
    """Drop rows whose joined text is shorter or longer than the bounds, in characters or words.

    Args:
        min_length: smallest length kept (inclusive).
        max_length: largest length kept (inclusive); null for no limit.
        unit: `chars` or `words`.
    """

    min_length: int = 0
    max_length: int | None = None
    unit: str = "chars"
    name: str = "length"

    def __post_init__(self) -> None:
        if self.min_length < 0:
            raise ConfigError(f"length.min_length: must be >= 0, got {self.min_length}")
        if self.max_length is not None and self.max_length < max(self.min_length, 1):
            raise ConfigError(f"length.max_length: must be >= max(min_length, 1), got {self.max_length}")
        if self.unit not in ("chars", "words"):
            raise ConfigError(f"length.unit: {self.unit!r} is not one of ['chars', 'words']")

    def __call__(self, table, ctx: StepContext):
        from modelops.sanitize.step import row_texts

        def measure(text: str) -> int:
            return len(text) if self.unit == "chars" else len(text.split())

        def batch_fn(batch):
            lengths = [measure(t) for t in row_texts(batch, ctx)]
            reasons = [
                f"too_short:{n}<{self.min_length}{self.unit}" if n < self.min_length else
                f"too_long:{n}>{self.max_length}{self.unit}" if self.max_length is not None and n > self.max_length else
                ""
                for n in lengths
            ]  # fmt: skip
            return {**batch, REASON: reasons, MODIFIED: [False] * len(lengths)}

        return map_step(table, ctx, batch_fn)
