"""Gopher/C4-style quality heuristics: reject text that is mostly symbols, numbers or repetition.

The rules and default thresholds follow Rae et al. 2021 (Gopher, appendix A.1.1). Words are
whitespace-separated tokens. Gopher tuned its thresholds on web documents of 50+ words; on a
one-line classification example the same ratios are noise (two words of four that are numbers
is not garbage), so each rule applies only from a minimum number of words:

- word statistics (alphabetic-word ratio, symbol ratio, mean word length) from `min_words`
  words (default 5), so short sentences and labels pass untouched;
- repetition (duplicate lines, top n-gram share) from `min_words_repetition` words (default
  50): a 12-word review that says "the movie" twice is not boilerplate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step, mark, row_texts

_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u00ab\u00bb\u201c\u201d\u2018\u2019\u2026\u2014\u2013"


def _fmt(value: float) -> str:
    return f"{round(value, 3):g}"


@dataclass
class QualityFilter(SanitizeStep):
    """Sanitizer step: reject rows whose joined text fails a Gopher quality heuristic.

    The reason names the first failing heuristic with its value and threshold, e.g.
    "quality:alpha_ratio=0.41<0.8".

    Args:
        min_alpha_ratio: least fraction of words holding an alphabetic character.
        max_symbol_ratio: most "#" and ellipses ("...", "…") per word.
        min_mean_word_length: least mean word length in characters (punctuation stripped).
        max_mean_word_length: most mean word length in characters.
        max_duplicate_line_fraction: most fraction of non-empty lines that repeat an earlier line.
        max_top_ngram_fraction: for n-gram size n, the most fraction of word characters covered
            by the most frequent n-gram that occurs more than once (see `top_ngram_fraction`).
        min_words: word statistics apply to texts of at least this many words.
        min_words_repetition: repetition rules apply to texts of at least this many words.
    """

    min_alpha_ratio: float = 0.8
    max_symbol_ratio: float = 0.1
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_duplicate_line_fraction: float = 0.3
    max_top_ngram_fraction: dict[int, float] = field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    min_words: int = 5
    min_words_repetition: int = 50
    name: ClassVar[str] = "quality"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_ratio("min_alpha_ratio", self.min_alpha_ratio)
        _check_ratio("max_symbol_ratio", self.max_symbol_ratio)
        _check_ratio("max_duplicate_line_fraction", self.max_duplicate_line_fraction)
        sizes = {"min_mean_word_length": self.min_mean_word_length, "max_mean_word_length": self.max_mean_word_length,
                 "min_words": self.min_words, "min_words_repetition": self.min_words_repetition}  # fmt: skip
        for key, value in sizes.items():
            if value < 0:
                raise ConfigError(f"quality.{key}: must be >= 0, got {value}")
        if self.max_mean_word_length < self.min_mean_word_length:
            raise ConfigError(
                f"quality.max_mean_word_length: {self.max_mean_word_length} is below "
                f"min_mean_word_length {self.min_mean_word_length}"
            )
        ngrams = {}
        for key, ratio in dict(self.max_top_ngram_fraction).items():
            n = int(key) if isinstance(key, str) and key.isdigit() else key  # YAML/JSON may give "2"
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"quality.max_top_ngram_fraction: n-gram size {n!r} must be an integer >= 1")
            _check_ratio(f"max_top_ngram_fraction.{n}", ratio)
            ngrams[n] = ratio
        self.max_top_ngram_fraction = dict(sorted(ngrams.items()))

    def reason(self, text: str) -> str:
        """Why `text` fails the heuristics ("" when it passes)."""
        words = text.split()
        if len(words) >= self.min_words:
            failure = self._word_stats(words)
            if failure:
                return f"quality:{failure}"
        if len(words) >= self.min_words_repetition:
            failure = self._repetition(text, words)
            if failure:
                return f"quality:{failure}"
        return ""

    def __call__(self, table, ctx: StepContext):
        if len(table) == 0:
            return mark(table, [])  # `datasets.map` skips empty tables, so the columns must be added here

        def batch_fn(batch):
            reasons = [self.reason(text) for text in row_texts(batch, ctx)]
            return flags(len(reasons), reasons)

        return map_step(table, ctx, batch_fn)

    def _word_stats(self, words: list[str]) -> str:
        alpha = alpha_ratio(words)
        if alpha < self.min_alpha_ratio:
            return f"alpha_ratio={_fmt(alpha)}<{_fmt(self.min_alpha_ratio)}"
        symbols = symbol_ratio(words)
        if symbols > self.max_symbol_ratio:
            return f"symbol_ratio={_fmt(symbols)}>{_fmt(self.max_symbol_ratio)}"
        mean = mean_word_length(words)
        if mean < self.min_mean_word_length:
            return f"mean_word_length={_fmt(mean)}<{_fmt(self.min_mean_word_length)}"
        if mean > self.max_mean_word_length:
            return f"mean_word_length={_fmt(mean)}>{_fmt(self.max_mean_word_length)}"
        return ""

    def _repetition(self, text: str, words: list[str]) -> str:
        duplicates = duplicate_line_fraction(text)
        if duplicates > self.max_duplicate_line_fraction:
            return f"duplicate_line_fraction={_fmt(duplicates)}>{_fmt(self.max_duplicate_line_fraction)}"
        for n, limit in self.max_top_ngram_fraction.items():
            share = top_ngram_fraction(words, n)
            if share > limit:
                return f"top_{n}gram_fraction={_fmt(share)}>{_fmt(limit)}"
        return ""


def _check_ratio(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"quality.{key}: must be a ratio in [0, 1], got {value}")


def alpha_ratio(words: list[str]) -> float:
    """Fraction of words holding at least one alphabetic character."""
    return sum(any(ch.isalpha() for ch in w) for w in words) / len(words) if words else 1.0


def symbol_ratio(words: list[str]) -> float:
    """Hash signs and ellipses ("..." or "…") per word."""
    if not words:
        return 0.0
    text = " ".join(words)
    return (text.count("#") + text.count("...") + text.count("…")) / len(words)


def mean_word_length(words: list[str]) -> float:
    """Mean length of the words with surrounding punctuation stripped; words of punctuation only are skipped."""
    stripped = [s for s in (w.strip(_PUNCTUATION) for w in words) if s]
    return sum(map(len, stripped)) / len(stripped) if stripped else 0.0


def duplicate_line_fraction(text: str) -> float:
    """Fraction of non-empty lines that repeat an earlier line (compared after trimming whitespace)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def top_ngram_fraction(words: list[str], n: int) -> float:
    """Share of word characters covered by the occurrences of the most frequent word n-gram.

    Characters are those of the words (whitespace not counted); overlapping occurrences cover a word
    once, so the share stays in [0, 1]. Matching is case-insensitive; among equally frequent n-grams
    the longest counts. An n-gram seen only once is not repetition, so the share is then 0.
    """
    lowered = [w.lower() for w in words]
    grams = [tuple(lowered[i : i + n]) for i in range(len(lowered) - n + 1)]
    counts = Counter(grams)
    if not counts:
        return 0.0
    top, count = max(counts.items(), key=lambda item: (item[1], sum(map(len, item[0]))))
    total = sum(map(len, lowered))
    if count < 2 or not total:
        return 0.0
    covered = [False] * len(lowered)
    for i, gram in enumerate(grams):
        if gram == top:
            covered[i : i + n] = [True] * n
    return sum(len(w) for w, hit in zip(lowered, covered, strict=True) if hit) / total
