"""Decontamination: drop training rows that share a word n-gram with the evaluation texts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from modelops.errors import ConfigError
from modelops.sanitize.near_dedup import ngram_hashes, word_tokens
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step, mark, row_texts

_REASON_CHARS = 80  # the shared n-gram shown in REASON is cut to this many characters


def eval_ngram_hashes(eval_texts: list[str], n: int, batch_size: int = 1000, min_words: int = 0) -> np.ndarray:
    """Sorted, unique 64-bit hashes of every word n-gram of the evaluation texts of at least `min_words` words."""
    parts = []
    for i in range(0, len(eval_texts), batch_size):
        tokens = [t for t in (word_tokens(text) for text in eval_texts[i : i + batch_size]) if len(t) >= min_words]
        parts.append(ngram_hashes(tokens, n)[0])
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)


def contaminated_ngrams(texts: list[str], eval_hashes: np.ndarray, n: int, min_words: int = 0) -> list[str | None]:
    """For each text, its first word n-gram found in `eval_hashes` (as text), or None.

    Args:
        texts: the training texts.
        eval_hashes: sorted hashes from `eval_ngram_hashes` with the same `n`.
        n: words per n-gram.
        min_words: texts with fewer words are not checked (None for them).
    """
    tokens = [t if len(t) >= min_words else [] for t in (word_tokens(text) for text in texts)]
    hashes, row_of_gram, start_of_gram = ngram_hashes(tokens, n)
    found: list[str | None] = [None] * len(texts)
    if len(eval_hashes) == 0 or len(hashes) == 0:
        return found
    at = np.minimum(np.searchsorted(eval_hashes, hashes), len(eval_hashes) - 1)
    hits = np.flatnonzero(eval_hashes[at] == hashes)
    # Grams are ordered by row, then by position: the first hit of each row is its first shared gram.
    rows, first = np.unique(row_of_gram[hits], return_index=True)
    for row, gram in zip(rows.tolist(), hits[first].tolist(), strict=True):
        start = int(start_of_gram[gram])
        found[row] = b" ".join(tokens[row][start : start + n]).decode()
    return found


def _reason(ngram: str | None) -> str:
    if ngram is None:
        return ""
    shown = ngram if len(ngram) <= _REASON_CHARS else ngram[: _REASON_CHARS - 1] + "…"
    return f"contaminated:{shown}"


@dataclass
class Decontaminate(SanitizeStep):
    """Drop training rows that share any word n-gram with the evaluation texts (``ctx.eval_texts``).

    Words are lowercase with punctuation removed, split on whitespace, so ``"Don't stop."`` and
    ``"dont STOP"`` are the same two words. A text with fewer than `ngram` words is compared on its
    whole word sequence: it matches only a text whose entire word sequence is the same (a short
    eval text is not searched for inside longer training rows, so common short phrases do not
    drop half the data). The rejected row's REASON shows the first shared n-gram, truncated.

    Args:
        ngram: words per n-gram (13, as in the GPT-3 decontamination, by default).
        min_words: training rows and evaluation texts with fewer words are not compared at all:
            on one-line rows (short reviews, labels) a match is a stock phrase more often than a
            leaked test item. 0 compares everything.
    """

    ngram: int = 13
    min_words: int = 0
    name: ClassVar[str] = "decontaminate"
    uses_eval_texts: ClassVar[bool] = True  # the sanitizer collects the evaluation splits' texts only then

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.ngram, int) or self.ngram < 1:
            raise ConfigError(f"{self.name}.ngram: must be an integer of at least 1 word, got {self.ngram!r}")
        if not isinstance(self.min_words, int) or self.min_words < 0:
            raise ConfigError(f"{self.name}.min_words: must be an integer >= 0, got {self.min_words!r}")

    def __call__(self, table, ctx: StepContext):
        eval_hashes = eval_ngram_hashes(list(ctx.eval_texts), self.ngram, ctx.batch_size, self.min_words)
        self.notes = {"eval_ngrams": len(eval_hashes)}
        if len(eval_hashes) == 0:
            return mark(table, [""] * len(table))
        n, min_words = self.ngram, self.min_words

        def batch_fn(batch) -> dict[str, list]:
            found = contaminated_ngrams(row_texts(batch, ctx), eval_hashes, n, min_words)
            return flags(len(found), [_reason(g) for g in found])

        return map_step(table, ctx, batch_fn)
