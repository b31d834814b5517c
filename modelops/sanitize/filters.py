"""Row filters: drop rows whose text is empty, or too short or too long (characters, words or tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from modelops.data.formats import FORMATS
from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step, present_fields, row_texts

_UNITS = ("chars", "words", "tokens")


@dataclass
class DropEmpty(SanitizeStep):
    """Drop rows where any required text field is empty or whitespace only (messages: every one empty)."""

    name: ClassVar[str] = "drop_empty"

    def __call__(self, table, ctx: StepContext):
        # Optional fields (an instruction's `input`, a pair's `prompt`) may be empty.
        optional = FORMATS[ctx.format].optional
        fields = [f for f in present_fields(table.column_names, ctx) if f not in optional]

        def batch_fn(batch):
            n = len(batch[fields[0]]) if fields else 0
            reasons = [""] * n
            for name in fields:
                for i, value in enumerate(batch[name]):
                    if reasons[i]:
                        continue
                    if isinstance(value, list):  # messages
                        if not any((m.get("content") or "").strip() for m in value):
                            reasons[i] = f"empty:{name}"
                    elif value is None or not str(value).strip():
                        reasons[i] = f"empty:{name}"
            return flags(n, reasons)

        return map_step(table, ctx, batch_fn, parallel=False)


@dataclass
class LengthFilter(SanitizeStep):
    """Drop rows whose joined text is shorter or longer than the bounds.

    Lengths are of all text fields joined (chat: every message's content), in characters,
    whitespace-separated words, or tokens of the sanitizer's tokenizer (without special tokens).

    Args:
        min_length: smallest length kept (inclusive).
        max_length: largest length kept (inclusive); null for no limit.
        unit: `chars`, `words` or `tokens` (needs `DatasetSanitizer(tokenizer=...)`).
    """

    min_length: int = 0
    max_length: int | None = None
    unit: str = "chars"
    name: ClassVar[str] = "length"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_length < 0:
            raise ConfigError(f"length.min_length: must be >= 0, got {self.min_length}")
        if self.max_length is not None and self.max_length < max(self.min_length, 1):
            raise ConfigError(f"length.max_length: must be >= max(min_length, 1), got {self.max_length}")
        if self.unit not in _UNITS:
            raise ConfigError(f"length.unit: {self.unit!r} is not one of {list(_UNITS)}")

    def check(self, ctx: StepContext) -> None:
        """A token length needs a tokenizer: fail before any data is read."""
        if self.unit == "tokens" and ctx.tokenizer is None:
            raise ConfigError(
                "length.unit: 'tokens' needs a tokenizer: DatasetSanitizer(tokenizer=<tokenizer or model path>)"
            )

    def _lengths(self, texts: list[str], tokenizer) -> list[int]:
        if self.unit == "chars":
            return [len(t) for t in texts]
        if self.unit == "words":
            return [len(t.split()) for t in texts]
        # One call per batch: fast tokenizers split the batch over their own threads.
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def __call__(self, table, ctx: StepContext):
        self.check(ctx)
        lo, hi, unit = self.min_length, self.max_length, self.unit
        tokenizer = ctx.tokenizer if unit == "tokens" else None

        def batch_fn(batch):
            lengths = self._lengths(row_texts(batch, ctx), tokenizer)
            reasons = [_reason(n, lo, hi, unit) for n in lengths]
            return flags(len(lengths), reasons)

        return map_step(table, ctx, batch_fn, parallel=unit == "tokens")


def _reason(n: int, lo: int, hi: int | None, unit: str) -> str:
    if n < lo:
        return f"too_short:{n}<{lo}{unit}"
    if hi is not None and n > hi:
        return f"too_long:{n}>{hi}{unit}"
    return ""
